"""Observers ``run_md`` attaches to an ASE dynamics: one job each.

- :class:`Recorder` builds one log row per logged step (thermodynamics, lattice and, when the calculator
  gives magmoms, the Fe/Mn oxidation record of :func:`mf_calc.workflows.oxidation.oxidation_record`) and
  hands it to its sinks, each called as ``sink(atoms, row)``:
  :class:`CsvLog`, :class:`FrameWriter`, :class:`StatusLine` or any user callback.
- :class:`StabilityCheck` runs every step and stops a run that has blown up (non-finite energy or
  positions, or a runaway temperature) with :class:`MDInstabilityError`.

Sinks flush what they write at once, so an interrupted or failed run keeps every finished frame and row.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from mf_calc.constants import EV_A3_TO_GPA as GPA
from mf_calc.workflows.io import lattice_dict
from mf_calc.workflows.oxidation import format_oxidation_record, oxidation_columns, oxidation_record

#: Log columns every run has; oxidation columns follow when the calculator gives magmoms.
THERMO_COLUMNS = ("step", "time_ps", "T_K", "P_GPa", "volume_A3", "a", "b", "c", "alpha", "beta", "gamma",
                  "epot_eV", "ekin_eV", "etot_eV", "conserved_eV")


class MDInstabilityError(RuntimeError):
    """An MD run stopped because the system blew up; the frames written so far are kept."""


def thermo_row(atoms, dyn, step: int, time_ps: float) -> dict:
    """Temperature (K), pressure with the kinetic term (GPa), lattice (Å, deg, Å³) and energies (eV).

    ``conserved_eV`` is the integrator's conserved quantity where it has one (E_pot + E_kin for plain
    Verlet, NaN for stochastic integrators without one).
    """
    epot = float(atoms.get_potential_energy())
    ekin = float(atoms.get_kinetic_energy())
    try:
        p = float(-np.trace(atoms.get_stress(voigt=False, include_ideal_gas=True)) / 3 * GPA)
    except Exception:  # a calculator without stress
        p = math.nan
    try:
        cons = float(dyn.get_conserved_energy())
    except AttributeError:
        from ase.md.verlet import VelocityVerlet

        cons = epot + ekin if type(dyn) is VelocityVerlet else math.nan
    lat = lattice_dict(atoms)
    return {"step": step, "time_ps": time_ps, "T_K": float(atoms.get_temperature()), "P_GPa": p,
            "volume_A3": lat["volume"], **{k: lat[k] for k in ("a", "b", "c", "alpha", "beta", "gamma")},
            "epot_eV": epot, "ekin_eV": ekin, "etot_eV": epot + ekin, "conserved_eV": cons}


class Recorder:
    """Build a row at each logged step of ``dyn`` and pass it to the sinks; keeps the rows for the summary.

    step0 / time0_ps: step and time (ps) of the starting frame (non-zero on restart); skip_first: the
    starting frame is already logged (a restart appending to its own files).
    """

    def __init__(self, atoms, dyn, timestep_fs: float, sinks, step0: int = 0, time0_ps: float = 0.0,
                 skip_first: bool = False, with_oxidation: bool = False):
        self.atoms, self.dyn, self.timestep_fs = atoms, dyn, timestep_fs
        self.sinks = [s for s in sinks if s is not None]
        self.step0, self.time0_ps, self.skip_first = step0, time0_ps, skip_first
        self.oxidation_columns = oxidation_columns(atoms.get_chemical_symbols()) if with_oxidation else []
        self.columns = list(THERMO_COLUMNS) + self.oxidation_columns
        self.rows: list[dict] = []

    def __call__(self):
        if self.skip_first and self.dyn.nsteps == 0:
            return
        step = self.step0 + self.dyn.nsteps
        if self.rows and self.rows[-1]["step"] == step:
            return  # already logged (the final call after the run lands on the log grid)
        row = thermo_row(self.atoms, self.dyn, step, self.time0_ps + self.dyn.nsteps * self.timestep_fs / 1000.0)
        if self.oxidation_columns:
            row.update(oxidation_record(self.atoms))
        self.rows.append(row)
        self.atoms.info["md_time_ps"] = row["time_ps"]
        self.atoms.info["md_step"] = step
        for sink in self.sinks:
            sink(self.atoms, row)


class CsvLog:
    """Rows to a CSV file (header written once; appends when continuing a run), flushed per row."""

    def __init__(self, path, columns, append: bool):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cont = append and path.is_file() and path.stat().st_size > 0
        self.columns = list(columns)
        self.fh = open(path, "a" if cont else "w", newline="")
        self.writer = csv.writer(self.fh)
        if not cont:
            self.writer.writerow(self.columns)
            self.fh.flush()

    def __call__(self, atoms, row):
        self.writer.writerow([_csv_cell(row[c]) for c in self.columns])
        self.fh.flush()

    def close(self):
        self.fh.close()


def _csv_cell(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.10g}"
    return "" if v is None else v


class FrameWriter:
    """Frames to .traj (ASE) or .extxyz, flushed per frame; appends when continuing a run."""

    def __init__(self, path, append: bool):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.traj = None
        if self.path.suffix == ".traj":
            from ase.io.trajectory import Trajectory

            self.traj = Trajectory(str(self.path), "a" if append else "w")
        elif not append and self.path.exists():
            self.path.unlink()

    def __call__(self, atoms, row=None):
        if self.traj is not None:
            self.traj.write(atoms)
        else:
            from ase.io import write

            write(str(self.path), atoms, format="extxyz", append=True)

    def close(self):
        if self.traj is not None:
            self.traj.close()


class StatusLine:
    """Print :func:`format_row` every ``interval`` steps (and at the last step) through ``tqdm.write``,
    which keeps a progress bar intact."""

    def __init__(self, interval: int, last_step: int):
        self.interval, self.last_step = interval, last_step

    def __call__(self, atoms, row):
        if row["step"] % self.interval == 0 or row["step"] == self.last_step:
            from tqdm.auto import tqdm

            tqdm.write(format_row(row))


def format_row(row: dict) -> str:
    """A one-line status from a log row."""

    s = (f"t={row['time_ps']:7.3f} ps T={row['T_K']:6.1f} K P={row['P_GPa']:+6.2f} GPa "
         f"a={row['a']:.3f} b={row['b']:.3f} c={row['c']:.3f} Å V={row['volume_A3']:.1f} Å³ "
         f"Epot={row['epot_eV']:.3f} eV")
    ox = format_oxidation_record(row)
    return f"{s} | {ox}" if ox else s


class StabilityCheck:
    """Stop a run that has blown up, naming the step and where the frames so far are.

    Checked every step from what the last force call already holds (no extra model call): non-finite
    potential energy or positions, and a kinetic temperature above ``max_temperature_K`` (atoms flying
    apart: the integrator has become unstable — too long a time step, or the model is extrapolating).
    """

    def __init__(self, atoms, dyn, step0: int, max_temperature_K: float, saved_to: str | None):
        self.atoms, self.dyn, self.step0 = atoms, dyn, step0
        self.max_temperature_K, self.saved_to = max_temperature_K, saved_to

    def fail(self, problem: str) -> MDInstabilityError:
        where = f"; the frames written so far are in {self.saved_to}" if self.saved_to else ""
        return MDInstabilityError(f"MD stopped at step {self.step0 + self.dyn.nsteps}: {problem}{where}")

    def __call__(self):
        if not np.isfinite(self.atoms.positions).all():
            raise self.fail("non-finite atomic positions")
        energy = (self.atoms.calc.results or {}).get("energy") if self.atoms.calc is not None else None
        if energy is not None and not np.isfinite(energy):
            raise self.fail(f"non-finite potential energy ({energy})")
        t = float(self.atoms.get_temperature())
        if not t <= self.max_temperature_K:
            raise self.fail(f"the temperature reached {t:.0f} K (limit {self.max_temperature_K:.0f} K): the atoms "
                            "are flying apart; use a shorter time step or check that the model covers this structure")
