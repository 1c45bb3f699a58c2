"""Candidate frames for active learning: what the workflows visit, driven by the current model.

NPT MD of delithiated LMFP cells at several temperatures, the optimisation paths of relaxed Li orderings and the
relaxed bands of Li-vacancy hops along [010] (climbing-image NEB), in supercells other than the DFT benchmark's
28-atom cell. Each round draws its own compositions, cells, site
arrangements and temperatures (seeded), so rounds explore different configurations. A run that blows up keeps
the frames it wrote (the trust window of the selection drops unphysical ones).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from mf_calc.calculator import MFCalculator
from mf_calc.structures import lmfp
from mf_calc.workflows.md import MDOutput, MDSettings, run_md
from mf_calc.workflows.md_observers import MDInstabilityError
from mf_calc.workflows.neb import NEBSettings, hop_endpoints, neb
from mf_calc.workflows.relax import RelaxSettings, relax

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExploreSettings:
    """What one round explores: ``trajectories`` MD runs (temperatures K, MD steps of 1 fs, ``interval`` steps
    between kept frames), ``relaxations`` relaxed orderings and ``hops`` NEB bands of a [010] vacancy hop."""

    cells: tuple[tuple[int, int, int], ...] = ((1, 2, 1), (1, 1, 2), (2, 1, 1))
    x_li: tuple[float, ...] = (0.25, 0.5, 0.75)
    y_mn: tuple[float, ...] = (0.0, 0.5, 1.0)
    temperatures_K: tuple[float, ...] = (300.0, 600.0, 900.0)
    trajectories: int = 6
    md_steps: int = 1000
    interval: int = 20
    relaxations: int = 3
    hops: int = 0

    def __post_init__(self):
        object.__setattr__(self, "cells", tuple(tuple(int(n) for n in c) for c in self.cells))
        for name in ("x_li", "y_mn", "temperatures_K"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if self.interval < 1 or min(self.md_steps, self.trajectories, self.relaxations, self.hops) < 0:
            raise ValueError("explore: interval >= 1 and non-negative md_steps, trajectories, relaxations, hops")


def _cases(settings: ExploreSettings, n: int, rng) -> list[dict]:
    """``n`` (cell, x, y, T, site seed) draws whose x and y the cell can hold exactly, with site arrangements that
    do not repeat a smaller cell."""
    cases = []
    for _ in range(100 * max(n, 1)):
        if len(cases) == n:
            break
        cell = settings.cells[rng.integers(len(settings.cells))]
        x, y = rng.choice(settings.x_li), rng.choice(settings.y_mn)
        sites = 4 * int(np.prod(cell))
        if abs(x * sites - round(x * sites)) > 1e-9 or abs(y * sites - round(y * sites)) > 1e-9:
            continue
        case = {"cell": cell, "x_li": float(x), "y_mn": float(y),
                "temperature_K": float(rng.choice(settings.temperatures_K)), "site_seed": int(rng.integers(1 << 30))}
        if not repeats_a_smaller_cell(lmfp(x, y, supercell=cell, seed=case["site_seed"]), cell):
            cases.append(case)
    return cases


def repeats_a_smaller_cell(atoms: Atoms, supercell) -> bool:
    """Whether the arrangement is periodic in one olivine cell along an axis the supercell repeats: then it is an
    ordering of a smaller cell (e.g. one of the benchmark's 28-atom orderings, which training must not see) and
    not a configuration of its own."""
    frac = atoms.get_scaled_positions(wrap=True)
    keys = {(z, *np.round(f, 4) % 1.0) for z, f in zip(atoms.numbers, frac)}
    for axis, n in enumerate(supercell):
        if n > 1:
            shifted = frac.copy()
            shifted[:, axis] += 1.0 / n
            if {(z, *np.round(f % 1.0, 4) % 1.0) for z, f in zip(atoms.numbers, shifted)} == keys:
                return True
    return False


def _md_frames(case: dict, calc, settings: ExploreSettings, folder: Path, name: str) -> list[Atoms]:
    start = lmfp(case["x_li"], case["y_mn"], supercell=case["cell"], seed=case["site_seed"])
    start, _ = relax(start, calc, RelaxSettings(fmax=0.1, steps=200))
    trajectory = folder / f"{name}.traj"
    try:
        run_md(start, calc, MDSettings("npt", case["temperature_K"], steps=settings.md_steps, seed=case["site_seed"]),
               MDOutput(trajectory, None, settings.interval, progress=False))
    except MDInstabilityError as err:  # keep what it wrote
        log.warning("explore %s stopped: %s", name, err)
    return ase.io.read(trajectory, ":")


def _relax_frames(case: dict, calc, folder: Path, name: str) -> list[Atoms]:
    trajectory = folder / f"{name}.traj"
    relax(lmfp(case["x_li"], case["y_mn"], supercell=case["cell"], seed=case["site_seed"]), calc,
          RelaxSettings(fmax=0.05, steps=300), trajectory=trajectory)
    return ase.io.read(trajectory, ":")


def _hop_frames(case: dict, calc: MFCalculator, folder: Path, name: str) -> list[Atoms]:
    """The relaxed band (end points and images) of a [010] hop of a Li whose neighbour site along [010] is
    occupied, the Li chosen by the case's seed; no frames where the arrangement has no such pair. Each image
    gets its own calculator on ``calc``'s model (ASE's NEB refuses a shared one)."""
    atoms = lmfp(case["x_li"], case["y_mn"], supercell=case["cell"], seed=case["site_seed"])
    atoms, _ = relax(atoms, calc, RelaxSettings(fmax=0.1, steps=200))
    li = np.flatnonzero(atoms.numbers == 3)
    for vacancy in np.random.default_rng(case["site_seed"]).permutation(li):
        try:
            initial, final, _ = hop_endpoints(atoms, "010", vacancy=int(vacancy))
        except ValueError:  # the neighbour site along [010] is empty
            continue
        trajectory = folder / f"{name}.extxyz"
        neb(initial, final, lambda: MFCalculator(calc.model, calc.fidelity, device=str(calc.model.device)),
            NEBSettings(n_images=3, fmax=0.1, steps=200, endpoint_fmax=0.05),
            direction="010", trajectory=trajectory)
        return ase.io.read(trajectory, ":")
    log.warning("explore %s: no Li pair along [010] in this arrangement", name)
    return []


def explore(calc: MFCalculator, settings: ExploreSettings, seed: int, folder) -> list[Atoms]:
    """Candidate frames (structures only, with ``info``: kind (md, relax, neb), source, x_li, y_mn, supercell,
    temperature_K) from MD, relaxations and NEB bands with ``calc``; trajectories go to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frames = []
    jobs = [("md", c) for c in _cases(settings, settings.trajectories, rng)]
    jobs += [("relax", c) for c in _cases(settings, settings.relaxations, rng)]
    jobs += [("neb", c) for c in _cases(settings, settings.hops, rng)]
    for k, (kind, case) in enumerate(jobs):
        name = f"{kind}{k:02d}"
        if kind == "md":
            path = _md_frames(case, calc, settings, folder, name)
        else:
            path = (_relax_frames if kind == "relax" else _hop_frames)(case, calc, folder, name)
        for step, atoms in enumerate(path):
            bare = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
            bare.info.update(kind=kind, source=name, frame=step, x_li=case["x_li"], y_mn=case["y_mn"],
                             supercell=list(case["cell"]),
                             temperature_K=case["temperature_K"] if kind == "md" else 0.0)
            frames.append(bare)
    return frames
