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


def make_integrator(atoms, ensemble, temperature_K, pressure_GPa, timestep_fs, tdamp_fs, pdamp_fs, method, rng):
    """Build the ASE integrator for (ensemble, method); see the module table."""
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if ensemble == "nvt":
        if method == "nose-hoover":
            from ase.md.nose_hoover_chain import NoseHooverChainNVT

            return NoseHooverChainNVT(atoms, timestep=dt, temperature_K=temperature_K, tdamp=tdamp_fs * units.fs)
        if method == "bussi":
            from ase.md.bussi import Bussi

            return Bussi(atoms, timestep=dt, temperature_K=temperature_K, taut=tdamp_fs * units.fs, rng=rng)
        from ase.md.langevin import Langevin

        # fixcm=False: ASE >= 3.28 advises against fixcm=True (biased sampling); the centre of mass then
        # wanders a little, which the MSD analysis removes (framework reference)
        return Langevin(atoms, timestep=dt, temperature_K=temperature_K, friction=1.0 / (tdamp_fs * units.fs),
                        fixcm=False, rng=rng)
    p_au = pressure_GPa * units.GPa
    if method == "mtk":
        from ase.md.nose_hoover_chain import MTKNPT

        return MTKNPT(atoms, timestep=dt, temperature_K=temperature_K, pressure_au=p_au,
                      tdamp=tdamp_fs * units.fs, pdamp=pdamp_fs * units.fs)
    if method == "mtk-isotropic":
        from ase.md.nose_hoover_chain import IsotropicMTKNPT

        return IsotropicMTKNPT(atoms, timestep=dt, temperature_K=temperature_K, pressure_au=p_au,
                               tdamp=tdamp_fs * units.fs, pdamp=pdamp_fs * units.fs)
    from ase.md.langevinbaoab import LangevinBAOAB

    return LangevinBAOAB(atoms, timestep=dt, temperature_K=temperature_K, externalstress=-p_au, hydrostatic=False,
                         T_tau=tdamp_fs * units.fs, P_tau=pdamp_fs * units.fs, rng=rng)


def check_md_method(ensemble, method):
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


def run_md(
    atoms: Atoms | None,
    calc,
    ensemble: str = "nvt",
    temperature_K: float = 300.0,
    pressure_GPa: float = 0.0,
    timestep_fs: float = 1.0,
    steps: int = 1000,
    trajectory="md.traj",
    log="md.csv",
    loginterval: int = 10,
    seed: int | None = 0,
    method: str | None = None,
    tdamp_fs: float = 100.0,
    pdamp_fs: float = 1000.0,
    restart_from=None,
    init_velocities: bool | None = None,
    append: bool | None = None,
    progress: bool = True,
    print_interval: int = 0,
    callback=None,
) -> tuple[Atoms, MDSummary]:
    """Run MD and return (final Atoms, summary: :class:`MDSummary`).

    ensemble: "nve", "nvt" or "npt"; method picks the thermostat/barostat (module table; default
    Nose-Hoover chain for NVT, anisotropic MTK for NPT). temperature_K also sets the initial
    Maxwell-Boltzmann velocities (seeded, zero total momentum) when the atoms carry no momenta
    (``init_velocities=None``), always (True) or never (False). pressure_GPa: external hydrostatic
    pressure (the cell still relaxes anisotropically). tdamp_fs / pdamp_fs: thermostat / barostat
    time constants (ASE advice: 100 and 1000 time steps).

    trajectory: .traj or .extxyz path (None: none); log: CSV path (None: none); both every
    ``loginterval`` steps, frame 0 included. Columns: step, time_ps, T_K, P_GPa (with the kinetic
    term), volume_A3, a, b, c (Å), alpha, beta, gamma (deg), epot_eV, ekin_eV, etot_eV, conserved_eV
    (the integrator's conserved quantity where it has one), then for Fe/Mn: mean |magmom| (μB) and
    counts per oxidation state, and the formal-charge excess (0 = balanced).

    restart_from: continue from the last frame of that trajectory (``atoms`` may then be None); when it
    is the same file as ``trajectory`` the run appends (also to the CSV), else new files are written.
    print_interval: print a status line every n steps (0: never). callback(atoms, row) runs at each log.

    A run that blows up (non-finite energy or positions, a structure the calculator refuses, or a
    temperature above max(RUNAWAY_TEMPERATURE_FACTOR × temperature_K, RUNAWAY_TEMPERATURE_K)) stops with
    ``MDInstabilityError`` naming the step; the frames and rows logged until then stay on disk.

    Summary: mean and std of T, P, V, a, b, c over the second half of the logged rows, conserved-energy
    drift (meV/atom/ps), model calls per step, wall time, final lattice and oxidation states.
    """
    ensemble, method = check_md_method(ensemble, method)
    if steps < 0 or loginterval < 1:
        raise ValueError("steps must be >= 0 and loginterval >= 1")
    t_start, step0 = 0.0, 0
    if restart_from is not None:
        atoms = load_restart(restart_from)
        t_start = float(atoms.info.get("md_time_ps", 0.0))
        step0 = int(atoms.info.get("md_step", 0))
        if append is None:
            append = _same_file(restart_from, trajectory)
    elif atoms is None:
        raise ValueError("run_md needs atoms or restart_from")
    else:
        atoms = atoms.copy()
    append = bool(append)
    atoms.calc = calc
    rng = np.random.default_rng(seed)
    have_p = atoms.has("momenta") and np.abs(atoms.get_momenta()).max() > 0
    if init_velocities or (init_velocities is None and not have_p):
        from ase.md import velocitydistribution as vd

        if hasattr(vd, "thermalize_momenta"):  # ase >= 3.29
            vd.thermalize_momenta(atoms, temperature_K, rng=rng)
        else:
            vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
        vd.Stationary(atoms)

    dyn = make_integrator(atoms, ensemble, temperature_K, pressure_GPa, timestep_fs, tdamp_fs, pdamp_fs, method, rng)
    with_oxidation = "magmoms" in getattr(calc, "implemented_properties", ())
    writer = FrameWriter(trajectory, append) if trajectory else None
    recorder = Recorder(atoms, dyn, timestep_fs, sinks=[writer], step0=step0, time0_ps=t_start, skip_first=append,
                        with_oxidation=with_oxidation)
    csv_log = CsvLog(log, recorder.columns, append) if log else None
    recorder.sinks += [s for s in (csv_log, StatusLine(print_interval, step0 + steps) if print_interval else None,
                                   callback) if s is not None]
    check = StabilityCheck(atoms, dyn, step0, max(RUNAWAY_TEMPERATURE_FACTOR * temperature_K, RUNAWAY_TEMPERATURE_K),
                           saved_to=" and ".join(str(p) for p in (trajectory, log) if p) or None)

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, disable=not progress, desc=f"MD {ensemble.upper()} {temperature_K:g} K", unit="step",
               mininterval=1.0, leave=False)
    calls0 = getattr(calc, "n_calls", None)  # MFCalculator counts its model calls
    t0 = time.perf_counter()
    try:
        dyn.attach(check, interval=1)
        dyn.attach(recorder, interval=loginterval)  # ASE calls observers at step 0 too
        dyn.attach(lambda: bar.update(dyn.nsteps - bar.n), interval=1)
        try:
            dyn.run(steps)
        except ValueError as exc:  # the calculator refuses the structure (non-finite or isolated atoms)
            raise check.fail(str(exc)) from exc
        recorder()  # the last step, if not on the log grid (no-op otherwise)
    finally:
        bar.close()
        for sink in (writer, csv_log):
            if sink is not None:
                sink.close()
    wall = time.perf_counter() - t0
    summary = md_summary(recorder.rows, len(atoms))
    summary.update({
        "ensemble": ensemble, "method": method, "temperature_K": temperature_K, "pressure_GPa": pressure_GPa,
        "timestep_fs": timestep_fs, "steps": steps, "fidelity": fidelity_of(calc), "wall_s": wall,
        "s_per_step": wall / max(steps, 1),
        "model_calls_per_step": None if calls0 is None else (calc.n_calls - calls0) / max(steps, 1),
        "trajectory": str(trajectory) if trajectory else None, "log": str(log) if log else None,
        "final_lattice": lattice_dict(atoms),
    })
    if recorder.oxidation_columns:
        summary["final_oxidation"] = oxidation_summary(atoms)
    return atoms, summary


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
