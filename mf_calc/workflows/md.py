"""Molecular dynamics (NVE / NVT / NPT) with ASE integrators, a CSV log and a trajectory written as it goes.

Integrators (ASE 3.29; every one needs a single model call per step — ``MFCalculator`` returns forces
and stress from the same call once stress has been asked for):

=========  ===================  =================================================================
ensemble   ``thermostat`` /     ASE class
           ``barostat``
=========  ===================  =================================================================
nve        —                    ``VelocityVerlet``
nvt        "nose-hoover" (def)  ``NoseHooverChainNVT`` (tdamp)
nvt        "bussi"              ``Bussi`` (stochastic velocity rescaling, taut = tdamp)
nvt        "langevin"           ``Langevin`` (friction = 1/tdamp)
npt        "mtk" (default)      ``MTKNPT``: Nose-Hoover chains + MTK barostat on the full 3×3 cell —
                                anisotropic: a, b, c (and angles) move independently
npt        "langevin"           ``LangevinBAOAB(hydrostatic=False)``: anisotropic, stochastic cell
npt        "mtk-isotropic"      ``IsotropicMTKNPT``: volume only, the cell shape is kept
=========  ===================  =================================================================

Trajectory: ``.traj`` (ASE) or ``.extxyz`` (OVITO reads both extxyz and, via ASE, traj). Each frame
stores positions (never wrapped by these integrators: usable for MSD), momenta, cell, energy, forces,
stress, magmoms and ``info['md_time_ps']`` / ``info['md_step']``. Frames and CSV rows are flushed as
they are written, so an interrupted run keeps all finished work; ``restart_from=path`` continues from the
last frame of an earlier run (positions, momenta, cell, time). Thermostat/barostat internal variables
are not stored and restart from zero.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
from ase import Atoms, units

from mf_calc.structures import read_structure
from mf_calc.workflows.io import fidelity_of, lattice_dict
from mf_calc.workflows.md_observers import CsvLog, FrameWriter, Recorder, StabilityCheck, StatusLine
from mf_calc.workflows.oxidation import oxidation_summary
from mf_calc.workflows.plots import new_figure, save_figure

#: A run stops (MDInstabilityError) when the kinetic temperature exceeds the larger of these.
RUNAWAY_TEMPERATURE_FACTOR = 10.0  # × the target temperature
RUNAWAY_TEMPERATURE_K = 5000.0

ENSEMBLES = {
    "nve": (None,),
    "nvt": ("nose-hoover", "bussi", "langevin"),
    "npt": ("mtk", "langevin", "mtk-isotropic"),
}


@dataclass(frozen=True)
class MDSettings:
    """What is simulated. ensemble: "nve", "nvt" or "npt"; method: the thermostat/barostat (module table;
    None: the ensemble's first). temperature_K also sets the initial Maxwell-Boltzmann velocities (seeded,
    zero total momentum) when the atoms carry no momenta (``init_velocities=None``), always (True) or never
    (False). pressure_GPa: external hydrostatic pressure (the cell still relaxes anisotropically).
    tdamp_fs / pdamp_fs: thermostat / barostat time constants (ASE advice: 100 and 1000 time steps)."""

    ensemble: str = "nvt"
    temperature_K: float = 300.0
    pressure_GPa: float = 0.0
    timestep_fs: float = 1.0
    steps: int = 1000
    method: str | None = None
    tdamp_fs: float = 100.0
    pdamp_fs: float = 1000.0
    seed: int | None = 0
    init_velocities: bool | None = None

    def __post_init__(self):
        ensemble, method = check_md_method(self.ensemble, self.method)
        object.__setattr__(self, "ensemble", ensemble)
        object.__setattr__(self, "method", method)
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


@dataclass(frozen=True)
class MDOutput:
    """Where a run goes. trajectory: .traj or .extxyz path (None: none); log: CSV path (None: none); both every
    ``loginterval`` steps, frame 0 included. append: add to existing files (None: only when restarting from
    the trajectory itself). print_interval: a status line every n steps (0: never). callback(atoms, row)
    runs at each logged step."""

    trajectory: str | os.PathLike | None = "md.traj"
    log: str | os.PathLike | None = "md.csv"
    loginterval: int = 10
    append: bool | None = None
    progress: bool = True
    print_interval: int = 0
    callback: Callable | None = None

    def __post_init__(self):
        if self.loginterval < 1:
            raise ValueError(f"loginterval must be >= 1, got {self.loginterval}")


def make_integrator(atoms, settings: MDSettings, rng):
    """Build the ASE integrator for (ensemble, method); see the module table."""
    dt, tdamp, pdamp = (v * units.fs for v in (settings.timestep_fs, settings.tdamp_fs, settings.pdamp_fs))
    T, method = settings.temperature_K, settings.method
    if settings.ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if settings.ensemble == "nvt":
        if method == "nose-hoover":
            from ase.md.nose_hoover_chain import NoseHooverChainNVT

            return NoseHooverChainNVT(atoms, timestep=dt, temperature_K=T, tdamp=tdamp)
        if method == "bussi":
            from ase.md.bussi import Bussi

            return Bussi(atoms, timestep=dt, temperature_K=T, taut=tdamp, rng=rng)
        from ase.md.langevin import Langevin

        # fixcm=False: ASE >= 3.28 advises against fixcm=True (biased sampling); the centre of mass then
        # wanders a little, which the MSD analysis removes (framework reference)
        return Langevin(atoms, timestep=dt, temperature_K=T, friction=1.0 / tdamp, fixcm=False, rng=rng)
    p_au = settings.pressure_GPa * units.GPa
    if method in ("mtk", "mtk-isotropic"):
        from ase.md.nose_hoover_chain import MTKNPT, IsotropicMTKNPT

        cls = MTKNPT if method == "mtk" else IsotropicMTKNPT
        return cls(atoms, timestep=dt, temperature_K=T, pressure_au=p_au, tdamp=tdamp, pdamp=pdamp)
    from ase.md.langevinbaoab import LangevinBAOAB

    return LangevinBAOAB(atoms, timestep=dt, temperature_K=T, externalstress=-p_au, hydrostatic=False,
                         T_tau=tdamp, P_tau=pdamp, rng=rng)


def check_md_method(ensemble, method):
    """(ensemble, method) in lower case, the method defaulting to the ensemble's first; ValueError if unknown."""
    ensemble = str(ensemble).lower()
    if ensemble not in ENSEMBLES:
        raise ValueError(f"unknown ensemble {ensemble!r}; choose from {list(ENSEMBLES)}")
    choices = ENSEMBLES[ensemble]
    if method is None:
        return ensemble, choices[0]
    method = str(method).lower()
    if method not in choices:
        raise ValueError(f"ensemble {ensemble!r} supports {[c for c in choices if c]}, got {method!r}")
    return ensemble, method


def _same_file(a, b) -> bool:
    try:
        return a is not None and b is not None and os.path.exists(a) and os.path.samefile(a, b)
    except OSError:
        return False


def load_restart(path) -> Atoms:
    """Last frame of an earlier run, with momenta, cell, ``md_time_ps`` and ``md_step``."""

    atoms = read_structure(path, index=-1)
    atoms.calc = None
    return atoms


def run_md(atoms: Atoms | None, calc, settings: MDSettings = MDSettings(), output: MDOutput = MDOutput(),
           restart_from=None) -> tuple[Atoms, MDSummary]:
    """Run MD (:class:`MDSettings`) written as :class:`MDOutput` says; return (final Atoms, :class:`MDSummary`).

    Log columns: step, time_ps, T_K, P_GPa (with the kinetic term), volume_A3, a, b, c (Å), alpha, beta,
    gamma (deg), epot_eV, ekin_eV, etot_eV, conserved_eV (the integrator's conserved quantity where it has
    one), then for Fe/Mn: mean |magmom| (μB) and counts per oxidation state, and the formal-charge excess
    (0 = balanced).

    restart_from: continue from the last frame of that trajectory (``atoms`` may then be None); when it is the
    same file as ``output.trajectory`` the run appends (also to the CSV), else new files are written.

    A run that blows up (non-finite energy or positions, a structure the calculator refuses, or a
    temperature above max(RUNAWAY_TEMPERATURE_FACTOR × temperature_K, RUNAWAY_TEMPERATURE_K)) stops with
    ``MDInstabilityError`` naming the step; the frames and rows logged until then stay on disk.

    Summary: mean and std of T, P, V, a, b, c over the second half of the logged rows, conserved-energy
    drift (meV/atom/ps), model calls per step, wall time, final lattice and oxidation states.
    """
    atoms, start = _starting_point(atoms, output, restart_from)
    atoms.calc = calc
    rng = np.random.default_rng(settings.seed)
    _thermalize(atoms, settings, rng)
    dyn = make_integrator(atoms, settings, rng)
    observers = _observers(atoms, dyn, calc, settings, output, start)
    calls0 = getattr(calc, "n_calls", None)  # MFCalculator counts its model calls
    t0 = time.perf_counter()
    _drive(dyn, observers, settings, output)
    recorder = observers[0]
    wall = time.perf_counter() - t0
    steps = max(settings.steps, 1)
    summary = md_summary(recorder.rows, len(atoms))
    summary.update({
        "ensemble": settings.ensemble, "method": settings.method, "temperature_K": settings.temperature_K,
        "pressure_GPa": settings.pressure_GPa, "timestep_fs": settings.timestep_fs, "steps": settings.steps,
        "fidelity": fidelity_of(calc), "wall_s": wall, "s_per_step": wall / steps,
        "model_calls_per_step": None if calls0 is None else (calc.n_calls - calls0) / steps,
        "trajectory": _str_or_none(output.trajectory), "log": _str_or_none(output.log),
        "final_lattice": lattice_dict(atoms),
    })
    if recorder.oxidation_columns:
        summary["final_oxidation"] = oxidation_summary(atoms)
    return atoms, summary


@dataclass(frozen=True)
class _Start:
    """Where a run starts: time (ps), step, and whether it appends to the files it continues."""

    time_ps: float = 0.0
    step: int = 0
    append: bool = False


def _starting_point(atoms: Atoms | None, output: MDOutput, restart_from) -> tuple[Atoms, _Start]:
    """A copy of ``atoms``, or the last frame of ``restart_from`` with its time and step."""
    if restart_from is None:
        if atoms is None:
            raise ValueError("run_md needs atoms or restart_from")
        return atoms.copy(), _Start(append=bool(output.append))
    atoms = load_restart(restart_from)
    append = _same_file(restart_from, output.trajectory) if output.append is None else output.append
    return atoms, _Start(float(atoms.info.get("md_time_ps", 0.0)), int(atoms.info.get("md_step", 0)), bool(append))


def _thermalize(atoms: Atoms, settings: MDSettings, rng) -> None:
    """Maxwell-Boltzmann momenta at the settings' temperature (zero total momentum) when asked or missing."""
    from ase.md import velocitydistribution as vd

    has_momenta = atoms.has("momenta") and np.abs(atoms.get_momenta()).max() > 0
    if settings.init_velocities or (settings.init_velocities is None and not has_momenta):
        vd.thermalize_momenta(atoms, settings.temperature_K, rng=rng)
        vd.Stationary(atoms)


def _observers(atoms, dyn, calc, settings: MDSettings, output: MDOutput, start: _Start):
    """The recorder (with its sinks: frames, CSV, status line, callback), the stability check and the files."""
    with_oxidation = "magmoms" in getattr(calc, "implemented_properties", ())
    writer = FrameWriter(output.trajectory, start.append) if output.trajectory else None
    recorder = Recorder(atoms, dyn, settings.timestep_fs, sinks=[writer], step0=start.step, time0_ps=start.time_ps,
                        skip_first=start.append, with_oxidation=with_oxidation)
    csv_log = CsvLog(output.log, recorder.columns, start.append) if output.log else None
    status = StatusLine(output.print_interval, start.step + settings.steps) if output.print_interval else None
    recorder.sinks += [s for s in (csv_log, status, output.callback) if s is not None]
    files = [s for s in (writer, csv_log) if s is not None]
    runaway = max(RUNAWAY_TEMPERATURE_FACTOR * settings.temperature_K, RUNAWAY_TEMPERATURE_K)
    saved_to = " and ".join(str(p) for p in (output.trajectory, output.log) if p) or None
    return recorder, StabilityCheck(atoms, dyn, start.step, runaway, saved_to=saved_to), files


def _drive(dyn, observers: tuple, settings: MDSettings, output: MDOutput) -> None:
    """Run ``settings.steps`` steps with the observers attached; the files are closed however it ends."""
    from tqdm.auto import tqdm

    recorder, check, files = observers
    bar = tqdm(total=settings.steps, disable=not output.progress, unit="step", mininterval=1.0, leave=False,
               desc=f"MD {settings.ensemble.upper()} {settings.temperature_K:g} K")
    try:
        dyn.attach(check, interval=1)
        dyn.attach(recorder, interval=output.loginterval)  # ASE calls observers at step 0 too
        dyn.attach(lambda: bar.update(dyn.nsteps - bar.n), interval=1)
        try:
            dyn.run(settings.steps)
        except ValueError as exc:  # the calculator refuses the structure (non-finite or isolated atoms)
            raise check.fail(str(exc)) from exc
        recorder()  # the last step, if not on the log grid (no-op otherwise)
    finally:
        bar.close()
        for sink in files:
            sink.close()


def _str_or_none(path) -> str | None:
    return str(path) if path else None


AVERAGED = ("T_K", "P_GPa", "volume_A3", "a", "b", "c", "alpha", "beta", "gamma", "epot_eV")  # log columns
RELATIVE_CHANGE = ("a", "b", "c", "volume_A3")


class MDSummary(TypedDict, total=False):
    """What ``run_md`` returns besides the final atoms (JSON-ready). ``<column>_mean`` / ``_std``: over the
    second half of the logged rows (units of the log column); ``<x>_change_pct``: last row vs first."""

    n_rows: int
    time_ps: float
    T_K_mean: float
    T_K_std: float
    P_GPa_mean: float
    P_GPa_std: float
    volume_A3_mean: float
    volume_A3_std: float
    a_mean: float
    a_std: float
    b_mean: float
    b_std: float
    c_mean: float
    c_std: float
    alpha_mean: float
    alpha_std: float
    beta_mean: float
    beta_std: float
    gamma_mean: float
    gamma_std: float
    epot_eV_mean: float
    epot_eV_std: float
    conserved_drift_meV_per_atom_per_ps: float  # only with a conserved quantity and > 2 rows
    conserved_max_dev_meV_per_atom: float
    a_change_pct: float
    b_change_pct: float
    c_change_pct: float
    volume_A3_change_pct: float
    ensemble: str
    method: str
    temperature_K: float
    pressure_GPa: float
    timestep_fs: float
    steps: int
    fidelity: str | None
    wall_s: float
    s_per_step: float
    model_calls_per_step: float | None  # None for calculators that do not count their calls
    trajectory: str | None
    log: str | None
    final_lattice: dict
    final_oxidation: dict  # only with magmoms (see oxidation.oxidation_summary)


def md_summary(rows: list[dict], n_atoms: int) -> MDSummary:
    """Averages over the second half of the logged rows, and the conserved-energy drift."""
    if not rows:
        return {"n_rows": 0}
    half = rows[len(rows) // 2:]
    out: MDSummary = {"n_rows": len(rows), "time_ps": rows[-1]["time_ps"]}
    for key in AVERAGED:
        vals = np.array([r[key] for r in half], dtype=float)
        out[f"{key}_mean"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
        out[f"{key}_std"] = float(np.nanstd(vals)) if np.isfinite(vals).any() else math.nan
    cons = np.array([r["conserved_eV"] for r in rows], dtype=float)
    t = np.array([r["time_ps"] for r in rows], dtype=float)
    if np.isfinite(cons).all() and len(rows) > 2 and t[-1] > t[0]:
        slope = np.polyfit(t, cons, 1)[0]
        out["conserved_drift_meV_per_atom_per_ps"] = float(slope / n_atoms * 1000)
        out["conserved_max_dev_meV_per_atom"] = float(np.abs(cons - cons[0]).max() / n_atoms * 1000)
    for key in RELATIVE_CHANGE:
        out[f"{key}_change_pct"] = float((rows[-1][key] / rows[0][key] - 1) * 100)
    return out


def read_md_log(path) -> dict[str, np.ndarray]:
    """The CSV log as a dict of numpy arrays (empty cells are NaN)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        data: dict[str, list] = {k: [] for k in reader.fieldnames or []}
        for row in reader:
            for k, v in row.items():
                data[k].append(float(v) if v not in ("", None) else math.nan)
    return {k: np.array(v) for k, v in data.items()}


def plot_md_log(log_path, png_path, title: str | None = None) -> str:
    """Temperature, pressure, a/b/c, volume, energy and Fe/Mn magmoms vs time; returns the PNG path."""

    d = read_md_log(log_path)
    t = d["time_ps"]
    mag_keys = [k for k in d if k.startswith("magmom_")]
    n = 5 + (1 if mag_keys else 0)
    fig = new_figure(figsize=(7, 2.0 * n))
    axes = fig.subplots(n, 1, sharex=True)
    axes[0].plot(t, d["T_K"])
    axes[0].set_ylabel("T (K)")
    axes[1].plot(t, d["P_GPa"])
    axes[1].set_ylabel("P (GPa)")
    for k in ("a", "b", "c"):
        axes[2].plot(t, d[k] / d[k][0] * 100 - 100, label=f"{k} ({d[k][0]:.2f} Å at t0)")
    axes[2].set_ylabel("Δa,b,c (%)")
    axes[2].legend(fontsize=7)
    axes[3].plot(t, d["volume_A3"])
    axes[3].set_ylabel("V (Å³)")
    axes[4].plot(t, d["epot_eV"], label="E_pot")
    if np.isfinite(d["conserved_eV"]).any():
        axes[4].plot(t, d["conserved_eV"] - d["conserved_eV"][0] + d["epot_eV"][0], label="conserved (shifted)")
    axes[4].set_ylabel("E (eV)")
    axes[4].legend(fontsize=7)
    if mag_keys:
        for k in mag_keys:
            axes[5].plot(t, d[k], label=k.split("_")[1])
        axes[5].set_ylabel("mean |m| (μB)")
        axes[5].legend(fontsize=7)
    axes[-1].set_xlabel("time (ps)")
    if title:
        axes[0].set_title(title)
    return save_figure(fig, png_path)
