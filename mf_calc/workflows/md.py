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
from pathlib import Path

import numpy as np
from ase import Atoms, units

from mf_calc.workflows.io import GPA, fidelity_of, lattice_dict

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


def _check_method(ensemble, method):
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


class FrameWriter:
    """Append frames to .traj or .extxyz, flushed per frame."""

    def __init__(self, path, append: bool):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.traj = None
        if self.path.suffix == ".traj":
            from ase.io.trajectory import Trajectory

            self.traj = Trajectory(str(self.path), "a" if append else "w")
        elif not append and self.path.exists():
            self.path.unlink()

    def write(self, atoms):
        if self.traj is not None:
            self.traj.write(atoms)
        else:
            from ase.io import write

            write(str(self.path), atoms, format="extxyz", append=True)

    def close(self):
        if self.traj is not None:
            self.traj.close()


def _same_file(a, b) -> bool:
    try:
        return a is not None and b is not None and os.path.exists(a) and os.path.samefile(a, b)
    except OSError:
        return False


def load_restart(path) -> Atoms:
    """Last frame of an earlier run, with momenta, cell, ``md_time_ps`` and ``md_step``."""
    from mf_calc.workflows.io import read_structure

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
) -> tuple[Atoms, dict]:
    """Run MD and return (final Atoms, summary).

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

    Summary: mean and std of T, P, V, a, b, c over the second half of the logged rows, conserved-energy
    drift (meV/atom/ps), model calls per step, wall time, final lattice and oxidation states.
    """
    ensemble, method = _check_method(ensemble, method)
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
    symbols = np.array(atoms.get_chemical_symbols())
    has_mag = "magmoms" in atoms.calc.implemented_properties
    tms = [el for el in ("Fe", "Mn") if has_mag and (symbols == el).any()]
    columns = ["step", "time_ps", "T_K", "P_GPa", "volume_A3", "a", "b", "c", "alpha", "beta", "gamma",
               "epot_eV", "ekin_eV", "etot_eV", "conserved_eV"]
    for el in tms:
        columns.append(f"magmom_{el}")
        columns += [f"n_{el}{q}" for q in ((2, 3) if el == "Fe" else (2, 3, 4))]
    if tms:
        columns.append("charge_excess")

    writer = FrameWriter(trajectory, append) if trajectory else None
    log_fh = None
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        cont = append and os.path.exists(log) and os.path.getsize(log) > 0
        log_fh = open(log, "a" if cont else "w", newline="")
        log_w = csv.writer(log_fh)
        if not cont:
            log_w.writerow(columns)
            log_fh.flush()
    rows: list[dict] = []
    n_atoms = len(atoms)

    def record():
        from mf_calc.workflows.oxidation import oxidation_states

        if append and dyn.nsteps == 0:
            return  # the restart frame is already in the trajectory and log
        if rows and rows[-1]["step"] == step0 + dyn.nsteps:
            return
        step = step0 + dyn.nsteps
        t_ps = t_start + dyn.nsteps * timestep_fs / 1000.0
        epot = float(atoms.get_potential_energy())
        ekin = float(atoms.get_kinetic_energy())
        try:
            p = float(-np.trace(atoms.get_stress(voigt=False, include_ideal_gas=True)) / 3 * GPA)
        except Exception:
            p = math.nan
        try:
            cons = float(dyn.get_conserved_energy())
        except AttributeError:
            cons = epot + ekin if ensemble == "nve" else math.nan
        lat = lattice_dict(atoms)
        row = {"step": step, "time_ps": t_ps, "T_K": float(atoms.get_temperature()), "P_GPa": p,
               "volume_A3": lat["volume"], **{k: lat[k] for k in ("a", "b", "c", "alpha", "beta", "gamma")},
               "epot_eV": epot, "ekin_eV": ekin, "etot_eV": epot + ekin, "conserved_eV": cons}
        if tms:
            mag = np.abs(atoms.get_magnetic_moments())
            ox_list = oxidation_states(atoms, mag)
            ox = np.array([0 if o is None else o for o in ox_list])
            for el in tms:
                sel = symbols == el
                row[f"magmom_{el}"] = float(mag[sel].mean())
                for q in ((2, 3) if el == "Fe" else (2, 3, 4)):
                    row[f"n_{el}{q}"] = int((ox[sel] == q).sum())
            row["charge_excess"] = "" if None in ox_list else int(ox.sum())
        rows.append(row)
        if log_fh is not None:
            log_w.writerow([_fmt(row[c]) for c in columns])
            log_fh.flush()
        if writer is not None:
            atoms.info["md_time_ps"] = t_ps
            atoms.info["md_step"] = step
            writer.write(atoms)
        if print_interval and (dyn.nsteps % print_interval == 0 or dyn.nsteps == steps):
            _print(format_row(row, tms))
        if callback is not None:
            callback(atoms, row)

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, disable=not progress, desc=f"MD {ensemble.upper()} {temperature_K:g} K", unit="step",
               mininterval=1.0, leave=False)
    _print.bar = bar
    calls0 = getattr(calc, "n_calls", None)  # MFCalculator counts its model calls
    t0 = time.perf_counter()
    try:
        dyn.attach(record, interval=loginterval)  # ASE calls observers at step 0 too
        dyn.attach(lambda: bar.update(dyn.nsteps - bar.n), interval=1)
        dyn.run(steps)
        record()  # the last step, if not on the log grid (no-op otherwise)
    finally:
        bar.close()
        _print.bar = None
        if writer is not None:
            writer.close()
        if log_fh is not None:
            log_fh.close()
    wall = time.perf_counter() - t0
    summary = md_summary(rows, n_atoms)
    summary.update({
        "ensemble": ensemble, "method": method, "temperature_K": temperature_K, "pressure_GPa": pressure_GPa,
        "timestep_fs": timestep_fs, "steps": steps, "fidelity": fidelity_of(calc), "wall_s": wall,
        "s_per_step": wall / max(steps, 1),
        "model_calls_per_step": None if calls0 is None else (calc.n_calls - calls0) / max(steps, 1),
        "trajectory": str(trajectory) if trajectory else None, "log": str(log) if log else None,
        "final_lattice": lattice_dict(atoms),
    })
    if tms:
        from mf_calc.workflows.oxidation import oxidation_summary

        summary["final_oxidation"] = oxidation_summary(atoms)
    return atoms, summary


def _fmt(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.10g}"
    return v


def _print(line):
    bar = getattr(_print, "bar", None)
    if bar is not None and not bar.disable:
        bar.write(line)
    else:
        print(line, flush=True)


def format_row(row: dict, tms=("Fe", "Mn")) -> str:
    """A one-line status from a log row."""
    s = (f"t={row['time_ps']:7.3f} ps T={row['T_K']:6.1f} K P={row['P_GPa']:+6.2f} GPa "
         f"a={row['a']:.3f} b={row['b']:.3f} c={row['c']:.3f} Å V={row['volume_A3']:.1f} Å³ "
         f"Epot={row['epot_eV']:.3f} eV")
    ox = []
    for el in tms:
        if f"magmom_{el}" in row:
            counts = "/".join(f"{row[k]}" for k in row if k.startswith(f"n_{el}"))
            ox.append(f"{el} {row[f'magmom_{el}']:.2f}μB {counts}")
    if ox:
        ox_labels = " ".join(ox)
        s += f" | {ox_labels} (2+/3+[/4+])"
    return s


def md_summary(rows: list[dict], n_atoms: int) -> dict:
    """Averages over the second half of the logged rows, and the conserved-energy drift."""
    if not rows:
        return {"n_rows": 0}
    half = rows[len(rows) // 2:]
    out = {"n_rows": len(rows), "time_ps": rows[-1]["time_ps"]}
    for key in ("T_K", "P_GPa", "volume_A3", "a", "b", "c", "alpha", "beta", "gamma", "epot_eV"):
        vals = np.array([r[key] for r in half], dtype=float)
        out[f"{key}_mean"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
        out[f"{key}_std"] = float(np.nanstd(vals)) if np.isfinite(vals).any() else math.nan
    cons = np.array([r["conserved_eV"] for r in rows], dtype=float)
    t = np.array([r["time_ps"] for r in rows], dtype=float)
    if np.isfinite(cons).all() and len(rows) > 2 and t[-1] > t[0]:
        slope = np.polyfit(t, cons, 1)[0]
        out["conserved_drift_meV_per_atom_per_ps"] = float(slope / n_atoms * 1000)
        out["conserved_max_dev_meV_per_atom"] = float(np.abs(cons - cons[0]).max() / n_atoms * 1000)
    for key in ("a", "b", "c", "volume_A3"):
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
    from mf_calc.workflows.plots import new_figure, save_figure

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
