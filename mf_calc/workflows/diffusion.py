"""Li diffusion workflow: NVT runs at several temperatures (ASE one after another, or TorchSim as one
batch), then the MSD analysis and Arrhenius fit of :mod:`mf_calc.workflows.msd` (its docstring has the
conventions), plots and ``diffusion.json``."""

from __future__ import annotations

import logging
from pathlib import Path

import ase.io
import numpy as np
from ase.units import kB

from mf_calc.atomic import write_json
from mf_calc.structures import read_structures
from mf_calc.workflows.md import run_md
from mf_calc.workflows.msd import arrhenius_fit, msd_analysis
from mf_calc.workflows.plots import new_figure, save_figure

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- plots


def plot_msd(results: dict, png_path, title: str | None = None) -> str:
    """MSD (total and x, y, z) vs time with the fitted lines; ``results`` maps a label (e.g. T) to
    :func:`msd_analysis` output. Returns the PNG path."""

    n = len(results)
    fig = new_figure(figsize=(4.2 * n, 3.6))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (label, r) in zip(axes, results.items()):
        t = r["t_ps"]
        for key, style, dim in (("total", "k-", 3), ("x", "C0-", 1), ("y", "C1-", 1), ("z", "C2-", 1)):
            y = r["msd"] if key == "total" else r[f"msd_{key}"]
            d = r["D_A2_per_ps"][key]
            ax.plot(t, y, style, lw=1.2, label=f"{key}: D={r['D_cm2_per_s'][key]:.2e} cm²/s")
            t0, t1 = r["fit_window_ps"]
            tt = np.array([t0, t1])
            sel = (t >= t0) & (t <= t1)
            c = float(np.mean(y[sel] - 2 * dim * d * t[sel]))
            ax.plot(tt, 2 * dim * d * tt + c, style[:2] + "-", lw=0.6, alpha=0.6)
        ax.set_xlabel("lag time (ps)")
        ax.set_ylabel(f"{r['species']} MSD (Å²)")
        ax.set_title(str(label), fontsize=9)
        ax.legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, png_path)


def plot_arrhenius(points: dict, fit: dict | None, png_path, title: str | None = None) -> str:
    """ln D vs 1000/T per component (points: {"total": (T, D, err), "y": ...}) with the fit of "total"."""

    fig = new_figure(figsize=(5.2, 4.0))
    ax = fig.subplots()
    for k, (key, (T, D, err)) in enumerate(points.items()):
        T, D, err = (np.asarray(v, dtype=float) for v in (T, D, err))
        ok = D > 0
        ax.errorbar(1000 / T[ok], D[ok], yerr=np.minimum(err[ok], 0.99 * D[ok]), fmt="o", color=f"C{k}",
                    capsize=3, label=key)
    if fit is not None:
        T_all = np.array(fit["temperatures_K"] + [fit["T_target_K"]])
        tt = np.linspace(T_all.min(), T_all.max(), 100)
        ax.plot(1000 / tt, fit["D0_cm2_per_s"] * np.exp(-fit["Ea_eV"] / (kB * tt)), "k--", lw=1,
                label=f"fit: Ea = {fit['Ea_eV']:.3f} ± {fit['Ea_err_eV']:.3f} eV")
        lo, hi = fit["D_target_range_cm2_per_s"]
        ax.errorbar([1000 / fit["T_target_K"]], [fit["D_target_cm2_per_s"]],
                    yerr=[[fit["D_target_cm2_per_s"] - lo], [hi - fit["D_target_cm2_per_s"]]], fmt="s", color="k",
                    mfc="none", capsize=3, label=f"{fit['T_target_K']:.0f} K: {fit['D_target_cm2_per_s']:.2e} cm²/s")
    ax.set_yscale("log")
    ax.set_xlabel("1000 / T (1/K)")
    ax.set_ylabel("D (cm²/s)")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, png_path)


# ----------------------------------------------------------------------------- workflow
def li_diffusion(
    atoms=None,
    calc=None,
    temperatures_K=(800.0, 1000.0, 1200.0),
    steps: int = 5000,
    equil_steps: int = 1000,
    timestep_fs: float = 1.0,
    loginterval: int = 10,
    ensemble: str = "nvt",
    method: str | None = "bussi",
    out="diffusion",
    trajectories=None,
    frame_interval_ps: float | None = None,
    species: str = "Li",
    drift: str | None = "framework",
    skip: float = 0.2,
    n_blocks: int = 4,
    T_target_K: float = 300.0,
    seed: int = 0,
    progress: bool = True,
    plot: bool = True,
    verbose: bool = True,
    engine: str = "ase",
) -> dict:
    """Li diffusion at several temperatures → D per axis → Arrhenius Ea and D(300 K).

    Fresh runs: give ``atoms`` and ``calc``; at each T an equilibration of ``equil_steps`` (not analysed)
    is followed by a production run of ``steps`` written to ``out/md_{T}K.traj`` (+ .csv), every
    ``loginterval`` steps (the MSD frame spacing). Existing runs: give ``trajectories`` — a dict {T: path}
    or a list of paths in the order of ``temperatures_K`` (times from ``info['md_time_ps']`` or
    ``frame_interval_ps``); nothing is simulated. Results: per-T :func:`msd_analysis` dicts (arrays
    dropped), the Arrhenius fit of the total D and of each axis where possible, PNG plots, and
    ``out/diffusion.json``.

    engine: ``"ase"`` runs the temperatures one after another with ``run_md``; ``"torchsim"`` (needs
    TorchSim and an ``MFCalculator``) runs all of them as one batch with TorchSim's Langevin integrator
    (friction 1/100 fs; ``ensemble``/``method`` do not apply) — the ASE run with ``method="langevin"`` is
    the same thermostat, so the two agree within MD noise.
    """

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if trajectories is not None:
        if isinstance(trajectories, dict):
            pairs = [(float(T), p) for T, p in trajectories.items()]
        else:
            trajectories = list(trajectories)
            if len(trajectories) != len(temperatures_K):
                raise ValueError("give one temperature per trajectory file")
            pairs = [(float(T), p) for T, p in zip(temperatures_K, trajectories)]
        for _, p in pairs:  # fail before any work
            if not Path(p).is_file():
                raise FileNotFoundError(f"trajectory file {str(p)!r} not found")
    else:
        if atoms is None or calc is None:
            raise ValueError("li_diffusion needs atoms and calc, or existing trajectories")
        if species not in atoms.get_chemical_symbols():
            raise ValueError(f"no {species} atoms in the structure")
        if engine not in ("ase", "torchsim"):
            raise ValueError(f"unknown engine {engine!r}: 'ase' or 'torchsim'")
        pairs = []
        if engine == "torchsim":
            pairs = _torchsim_runs(atoms, calc, temperatures_K, steps, equil_steps, timestep_fs, loginterval,
                                   seed, progress, out)
        for k, T in enumerate(temperatures_K if engine == "ase" else []):
            T = float(T)
            traj = out / f"md_{T:g}K.traj"
            start = atoms
            if equil_steps > 0:
                start, _ = run_md(atoms, calc, ensemble=ensemble, method=method, temperature_K=T,
                                  timestep_fs=timestep_fs, steps=equil_steps, trajectory=None, log=None,
                                  loginterval=max(equil_steps, 1), seed=seed + k, progress=progress)
                start.info.pop("md_time_ps", None)
                start.info.pop("md_step", None)
            _, summ = run_md(start, calc, ensemble=ensemble, method=method, temperature_K=T, timestep_fs=timestep_fs,
                             steps=steps, trajectory=traj, log=out / f"md_{T:g}K.csv", loginterval=loginterval,
                             seed=seed + 100 + k, init_velocities=False, progress=progress)
            if verbose:
                log.info("  %g K: %d steps, <T> = %.0f K, %.0f s", T, steps, summ["T_K_mean"], summ["wall_s"])
            pairs.append((T, traj))

    per_T = {}
    for T, path in pairs:
        per_T[T] = msd_analysis(read_structures(path), species=species, frame_interval_ps=frame_interval_ps,
                                drift=drift, skip=skip, n_blocks=n_blocks)
        if verbose:
            r = per_T[T]
            note = "" if r["resolved"]["total"] else "  [not resolved: D <= 2 sigma, run longer / hotter]"
            log.info("  %g K: D = %.2e ± %.1e cm²/s (x %.1e, y %.1e, z %.1e)%s", T, r["D_cm2_per_s"]["total"],
                     r["D_err_cm2_per_s"]["total"], r["D_cm2_per_s"]["x"], r["D_cm2_per_s"]["y"], r["D_cm2_per_s"]["z"],
                     note)
    Ts = sorted(per_T)
    fits = {}
    for key in ("total", "x", "y", "z"):
        D = [per_T[T]["D_cm2_per_s"][key] for T in Ts]
        err = [per_T[T]["D_err_cm2_per_s"][key] for T in Ts]
        try:
            fits[key] = arrhenius_fit(Ts, D, err, T_target_K=T_target_K)
        except ValueError as exc:
            fits[key] = {"error": str(exc)}
    result = {
        "species": species,
        "temperatures_K": Ts,
        "per_temperature": {f"{T:g}": _strip(per_T[T]) for T in Ts},
        "arrhenius": fits,
        "trajectories": {f"{T:g}": str(p) for T, p in pairs},
        "settings": {"steps": steps, "equil_steps": equil_steps, "timestep_fs": timestep_fs, "engine": engine,
                     "loginterval": loginterval, "ensemble": ensemble,
                     "method": method if engine == "ase" else "langevin", "drift": drift,
                     "skip": skip, "n_blocks": n_blocks} if trajectories is None else {"drift": drift, "skip": skip},
    }
    if plot:
        result["msd_png"] = plot_msd({f"{T:g} K": per_T[T] for T in Ts}, out / "msd.png", title=f"{species} MSD")
        if "error" not in fits["total"]:
            points = {key: (Ts, [per_T[T]["D_cm2_per_s"][key] for T in Ts], [per_T[T]["D_err_cm2_per_s"][key] for T in Ts])
                      for key in ("total", "y")}
            result["arrhenius_png"] = plot_arrhenius(points, fits["total"], out / "arrhenius.png",
                                                     title=f"{species} diffusion (fit: total)")
    write_json(out / "diffusion.json", result)
    return result


def _torchsim_runs(atoms, calc, temperatures_K, steps, equil_steps, timestep_fs, loginterval, seed, progress, out):
    """Every temperature as one replica of a TorchSim batch; trajectories written as ``out/md_{T}K.traj``."""

    from mf_calc.torchsim import MFTorchSimModel, batched_nvt

    temperatures = [float(T) for T in temperatures_K]
    tsm = MFTorchSimModel.from_calculator(calc, compute_stress=False)  # NVT needs no stress
    frames = batched_nvt([atoms] * len(temperatures), tsm, temperatures, steps, timestep_fs=timestep_fs,
                         loginterval=loginterval, equil_steps=equil_steps, seed=seed, progress=progress)
    pairs = []
    for T, run in zip(temperatures, frames):
        traj = out / f"md_{T:g}K.traj"
        ase.io.write(traj, run)
        pairs.append((T, traj))
    return pairs


def _strip(r: dict) -> dict:
    """msd_analysis result without the long arrays (for JSON summaries)."""
    return {k: v for k, v in r.items() if not isinstance(v, np.ndarray)}
