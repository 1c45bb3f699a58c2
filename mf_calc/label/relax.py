"""Relaxation with a label spec's calculator (DFT), resumable: positions at fixed cell by ASE's BFGS.

A DFT relaxation costs hours, so every step is kept: the trajectory (``relax.traj``, each step's energy,
forces and magnetic moments) and BFGS's Hessian (``bfgs.json``, ASE's restart file) are written as it goes, and
a rerun continues from the trajectory's last frame with the saved Hessian: the same path as an uninterrupted run.
The first SCF of every (re)start is the spec's Hubbard-U ramp where it has one (later steps continue from the
previous SCF at the full U, on the solution the ramp chose); the magnetic start is the spec's, from the input.
When that SCF fails, the spec's ``retry`` settings take over for the rest of the relaxation, as in ``mf-calc label``.
``progress.json`` counts the optimizer steps and seconds over all (re)starts; ``result.json`` (written once, at the
end) holds the relaxed energy, forces, moments, steps and seconds.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from mf_calc.atomic import write_json
from mf_calc.label.kpoints import frame_supercell
from mf_calc.label.spec import LabelSpec
from mf_calc.label.store import claim

RESULT, TRAJECTORY, HESSIAN, PROGRESS = "result.json", "relax.traj", "bfgs.json", "progress.json"
RUNNING = "running"  # holds the id of the process relaxing in the folder


@dataclass(frozen=True)
class DFTRelaxSettings:
    """Force threshold (eV/Å), most optimizer steps over all (re)starts, BFGS maximum step (Å); ``retry``: start
    with the spec's retry settings (e.g. those a label of the start structure converged with)."""

    fmax: float = 0.05
    steps: int = 100
    maxstep: float = 0.1
    retry: bool = False

    def __post_init__(self):
        if self.fmax <= 0 or self.steps < 1 or self.maxstep <= 0:
            raise ValueError(f"DFT relaxation needs fmax > 0, steps >= 1 and maxstep > 0, got {self}")


def _steps_so_far(path: Path) -> list[Atoms]:
    """The readable frames of a trajectory (a run killed while writing may leave a broken last one)."""
    from ase.io.trajectory import Trajectory

    if not path.is_file():
        return []
    frames = []
    try:
        with Trajectory(path) as traj:
            for k in range(len(traj)):
                frames.append(traj[k])
    except Exception:  # noqa: BLE001 -- a truncated last frame: keep the ones before it
        pass
    return frames


def relax_with_spec(atoms: Atoms, spec: LabelSpec | str, folder, settings: DFTRelaxSettings = DFTRelaxSettings(),
                    deadline: float | None = None) -> dict | None:
    """Relax the positions of ``atoms`` (fixed cell) with ``spec``'s calculator in ``folder``; return the result
    (also ``folder/result.json``), or None when ``deadline`` (a ``time.time()`` value) stopped it first or another
    live process is relaxing in ``folder`` (runs on other cores may share the folders of several relaxations)."""
    spec = spec if isinstance(spec, LabelSpec) else LabelSpec.load(spec)
    folder = Path(folder)
    if (folder / RESULT).is_file():
        return json.loads((folder / RESULT).read_text())
    folder.mkdir(parents=True, exist_ok=True)
    if not claim(folder / RUNNING, folder / RESULT):
        return None
    try:
        return _relax(atoms, spec, folder, settings, deadline)
    finally:
        (folder / RUNNING).unlink(missing_ok=True)


def _relax(atoms: Atoms, spec: LabelSpec, folder: Path, settings: DFTRelaxSettings, deadline: float | None) -> dict | None:
    from ase.io.trajectory import Trajectory
    from ase.optimize import BFGS

    done = _steps_so_far(folder / TRAJECTORY)
    before = json.loads((folder / PROGRESS).read_text()) if done and (folder / PROGRESS).is_file() else \
        {"steps": 0, "seconds": 0.0}
    start = atoms.copy()
    if done:
        start.positions = done[-1].positions
    began = time.perf_counter()
    prepared, retry = _converged_start(start, spec, folder, settings.retry or before.get("retry", False))
    with Trajectory(folder / TRAJECTORY, "a" if done else "w") as traj:
        opt = BFGS(prepared, restart=str(folder / HESSIAN), logfile=str(folder / "bfgs.log"),
                   maxstep=settings.maxstep)
        progress = {}

        def note():
            progress.update(steps=before["steps"] + opt.nsteps, seconds=before["seconds"] + time.perf_counter() - began,
                            retry=retry)
            write_json(folder / PROGRESS, progress)

        opt.attach(traj.write, interval=1, atoms=prepared)
        opt.attach(note, interval=1)
        converged = False
        for converged in opt.irun(fmax=settings.fmax, steps=max(settings.steps - before["steps"], 0)):
            if deadline is not None and time.time() >= deadline and not converged:
                return None
    forces = prepared.get_forces()
    result = {"converged": bool(converged), **progress,
              "energy": float(prepared.get_potential_energy(force_consistent=True)),
              "fmax_eV_A": float(np.linalg.norm(forces, axis=1).max()), "forces": forces.tolist(),
              "positions": prepared.positions.tolist(), "settings": asdict(settings), "spec_hash": spec.hash}
    if spec.spin_polarized:
        result["magmoms"] = prepared.get_magnetic_moments().tolist()
    write_json(folder / RESULT, result)
    return result


def _converged_start(start: Atoms, spec: LabelSpec, folder: Path, retry_first: bool) -> tuple[Atoms, bool]:
    """``start`` prepared with a calculator whose first SCF converged: with the spec's settings or, when that SCF
    fails, its ``retry`` settings, as ``mf-calc label`` tries them; a run that went on with the retry settings
    resumes with them (``retry_first``). Returns (atoms, whether the retry settings are used)."""
    *earlier, last = (True,) if retry_first else ((False, True) if spec.retry else (False,))
    for retry in earlier:
        try:
            return _first_scf(start, spec, folder, retry), retry
        except Exception:  # noqa: BLE001 -- the calculator's failure (SCF not converged): the retry follows
            pass
    return _first_scf(start, spec, folder, last), last


def _first_scf(start: Atoms, spec: LabelSpec, folder: Path, retry: bool) -> Atoms:
    """``start`` with a fresh calculator (its log ``calculator.txt``, or ``calculator_retry.txt``) after the first
    SCF: the spec's U ramp where it has one."""
    from mf_calc.label.u_ramp import ramp_scf

    prepared = spec.prepare(start)
    prepared.calc = spec.build(log=folder / ("calculator_retry.txt" if retry else "calculator.txt"), retry=retry,
                               supercell=frame_supercell(start))
    if spec.u_ramp is not None:
        ramp_scf(prepared, spec.calculator_settings(retry), spec.u_ramp)
    prepared.get_potential_energy()
    return prepared
