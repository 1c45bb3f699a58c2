"""Engines: how a workflow simulates many systems. ``"ase"`` runs them one after another (``relax``,
``run_md``); ``"torchsim"`` runs them as one TorchSim batch (needs TorchSim and an ``MFCalculator``). The
hull (relaxations) and the diffusion workflow (NVT runs) call an engine and never ask which one it is."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from mf_calc.workflows.md import MDOutput, MDSettings, run_md
from mf_calc.workflows.relax import RelaxSettings, relax, relax_summary

ENGINES = ("ase", "torchsim")


@dataclass(frozen=True)
class NVTRun:
    """NVT runs at several temperatures: ``equil_steps`` (not recorded) then ``steps`` recorded every
    ``loginterval`` steps (fs time step). method: the ASE thermostat (``run_md``'s NVT methods); TorchSim
    always uses its Langevin integrator (friction 1/100 fs, the same thermostat as ``method="langevin"``)."""

    temperatures_K: Sequence[float] = (800.0, 1000.0, 1200.0)
    steps: int = 5000
    equil_steps: int = 1000
    timestep_fs: float = 1.0
    loginterval: int = 10
    method: str | None = "bussi"
    tdamp_fs: float = 100.0
    seed: int = 0

    def md_settings(self, temperature_K: float, steps: int, seed: int) -> MDSettings:
        """The ASE settings of one run of ``steps`` at ``temperature_K`` (velocities drawn only when the atoms
        have none: a production run continues its equilibration's)."""
        return MDSettings("nvt", float(temperature_K), timestep_fs=self.timestep_fs, steps=steps,
                          method=self.method, tdamp_fs=self.tdamp_fs, seed=seed)


class AseEngine:
    """One system after another with ASE."""

    name = "ase"

    def relax_each(self, systems: Sequence[Atoms], calc, settings: RelaxSettings) -> Iterator[tuple[Atoms, dict, float]]:
        """(relaxed Atoms with ``calc``, relax summary, seconds) per system, as each finishes."""
        for atoms in systems:
            t0 = time.perf_counter()
            relaxed, summary = relax(atoms, calc, settings)
            yield relaxed, summary, time.perf_counter() - t0

    def nvt(self, atoms: Atoms, calc, run: NVTRun, paths: Sequence[Path], progress: bool = True) -> None:
        """Equilibrate, then record one trajectory (and a CSV log beside it) per temperature at ``paths``."""
        for k, (T, path) in enumerate(zip(run.temperatures_K, paths)):
            start = atoms
            if run.equil_steps > 0:
                quiet = MDOutput(None, None, max(run.equil_steps, 1), progress=progress)
                start, _ = run_md(atoms, calc, run.md_settings(T, run.equil_steps, run.seed + k), quiet)
                start.info.pop("md_time_ps", None)
                start.info.pop("md_step", None)
            output = MDOutput(path, Path(path).with_suffix(".csv"), run.loginterval, progress=progress)
            run_md(start, calc, run.md_settings(T, run.steps, run.seed + 100 + k), output)


class TorchSimEngine:
    """Every system in one TorchSim batch on the calculator's model and device."""

    name = "torchsim"

    def relax_each(self, systems: Sequence[Atoms], calc, settings: RelaxSettings) -> Iterator[tuple[Atoms, dict, float]]:
        """(relaxed Atoms with ``calc``, relax summary, seconds per system) per system, after the batch."""
        from mf_calc.torchsim import MFTorchSimModel

        if not settings.relax_cell or settings.optimizer.upper() != "FIRE" or settings.fix_symmetry:
            raise ValueError("the torchsim engine relaxes cell and positions with FIRE only")
        systems = list(systems)
        t0 = time.perf_counter()
        relaxed = batched_relax(systems, MFTorchSimModel.from_calculator(calc), fmax=settings.fmax,
                                steps=settings.steps)
        seconds = (time.perf_counter() - t0) / max(len(systems), 1)
        for atoms, converged in relaxed:
            atoms.calc = calc
            yield atoms, relax_summary(atoms, converged=converged, engine="torchsim"), seconds

    def nvt(self, atoms: Atoms, calc, run: NVTRun, paths: Sequence[Path], progress: bool = True) -> None:
        """Every temperature as one replica of a batch; one trajectory per temperature at ``paths``."""
        from mf_calc.torchsim import MFTorchSimModel

        model = MFTorchSimModel.from_calculator(calc, compute_stress=False)  # NVT needs no stress
        frames = batched_nvt([atoms] * len(run.temperatures_K), model, run, progress=progress)
        for path, replica in zip(paths, frames):
            ase.io.write(path, replica)


def batched_nvt(systems: Sequence[Atoms], model, run: NVTRun, progress: bool = False) -> list[list[Atoms]]:
    """Langevin NVT (TorchSim's BAOAB integrator, friction 1 / ``run.tdamp_fs``) of every system at its own
    temperature (``run.temperatures_K``: one per system), all in one batch on an ``MFTorchSimModel``. After
    ``run.equil_steps`` (not recorded) the run of ``run.steps`` is sampled every ``run.loginterval`` steps
    (step 0 included). Returns per system a list of Atoms frames (positions wrapped into the cell, energy and
    forces attached; ``info``: md_step, md_time_ps, temperature_K of the frame)."""
    import torch
    import torch_sim as ts
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.units import kB
    from torch_sim.integrators import nvt_langevin
    from torch_sim.units import MetalUnits
    from tqdm.auto import tqdm

    temperatures = np.asarray(run.temperatures_K, dtype=float)
    steps, timestep_fs, loginterval, equil_steps = run.steps, run.timestep_fs, run.loginterval, run.equil_steps
    if len(temperatures) != len(systems):
        raise ValueError(f"{len(temperatures)} temperatures for {len(systems)} systems: give one per system")
    state = ts.io.atoms_to_state(list(systems), model.device, torch.float64)
    on = {"dtype": torch.float64, "device": model.device}
    dt = torch.tensor(timestep_fs * 1e-3 * MetalUnits.time, **on)
    kT = torch.tensor(temperatures * MetalUnits.temperature, **on)
    gamma = torch.tensor(1.0 / (run.tdamp_fs * 1e-3 * MetalUnits.time), **on)
    init_fn, update_fn = nvt_langevin(model=model, dt=dt, kT=kT, gamma=gamma, seed=run.seed)
    state = init_fn(state)
    frames: list[list] = [[] for _ in systems]
    n_atoms = np.bincount(state.system_idx.cpu().numpy())
    dof = 3 * n_atoms - 3

    def record(step):
        kinetic = 0.5 * (state.momenta ** 2 / state.masses.unsqueeze(-1)).sum(-1)
        ke = kinetic.new_zeros(len(systems)).index_add_(0, state.system_idx, kinetic).cpu().numpy()
        energies, forces = state.energy.detach().cpu().numpy(), state.forces.detach().cpu().numpy()
        for b, atoms in enumerate(state.to_atoms()):
            start = n_atoms[:b].sum()
            atoms.calc = SinglePointCalculator(atoms, energy=float(energies[b]),
                                               forces=forces[start:start + n_atoms[b]])
            atoms.info.update(md_step=step, md_time_ps=step * timestep_fs * 1e-3,
                              temperature_K=float(2 * ke[b] / (dof[b] * kB)))
            frames[b].append(atoms)

    for step in tqdm(range(-equil_steps, steps + 1), desc="batched NVT", disable=not progress, mininterval=1.0):
        if step > -equil_steps:
            state = update_fn(state, dt=dt, kT=kT, gamma=gamma)
        if step >= 0 and step % loginterval == 0:
            record(step)
    return frames


def batched_relax(systems: Sequence[Atoms], model, fmax: float = 0.05, steps: int = 300) -> list[tuple[Atoms, bool]]:
    """Relax cell and positions of every system in one batch (TorchSim's FIRE with the Fréchet cell
    parameterisation, as ASE's ``FrechetCellFilter``; ``fmax`` eV/Å on atoms and on the cell forces).
    Returns per system (relaxed Atoms, converged)."""
    import torch
    import torch_sim as ts
    from torch_sim.optimizers import frechet_cell_fire
    from torch_sim.runners import generate_force_convergence_fn

    if not model.compute_stress:
        raise ValueError("a cell relaxation needs the stress: use MFTorchSimModel(..., compute_stress=True)")
    state = ts.io.atoms_to_state(list(systems), model.device, torch.float64)
    converge = generate_force_convergence_fn(force_tol=fmax)
    final = ts.optimize(system=state, model=model, optimizer=frechet_cell_fire, convergence_fn=converge,
                        max_steps=steps)
    done = converge(final).cpu().numpy()
    return list(zip(final.to_atoms(), (bool(d) for d in done)))


def engine_for(name: str) -> AseEngine | TorchSimEngine:
    """The engine called ``name`` ("ase" or "torchsim")."""
    if name == "ase":
        return AseEngine()
    if name == "torchsim":
        return TorchSimEngine()
    raise ValueError(f"unknown engine {name!r}: choose from {list(ENGINES)}")
