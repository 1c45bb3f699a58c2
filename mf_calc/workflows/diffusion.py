"""Li diffusion workflow: NVT runs at several temperatures (on an engine: ASE one after another, or TorchSim
as one batch), then the MSD analysis and Arrhenius fit of :mod:`mf_calc.workflows.msd` (its docstring has the
conventions), plots and ``diffusion.json``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.units import kB

from mf_calc.atomic import write_json
from mf_calc.structures import read_structures
from mf_calc.workflows.engine import NVTRun, engine_for
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
@dataclass(frozen=True)
class MSDSettings:
    """How trajectories are analysed (:func:`mf_calc.workflows.msd.msd_analysis`): the diffusing species, the
    drift reference, the fraction of lag times skipped at the start of the fit, the number of blocks for the
    error, the frame spacing (ps; None: from ``info['md_time_ps']``) and the Arrhenius target temperature (K)."""

    species: str = "Li"
    drift: str | None = "framework"
    skip: float = 0.2
    n_blocks: int = 4
    frame_interval_ps: float | None = None
    T_target_K: float = 300.0


def li_diffusion(atoms: Atoms, calc, run: NVTRun = NVTRun(), analysis: MSDSettings = MSDSettings(),
                 out="diffusion", engine: str = "ase", progress: bool = True, plot: bool = True) -> dict:
    """Li diffusion at several temperatures → D per axis → Arrhenius Ea and D(300 K).

    At each temperature of ``run`` an equilibration (not analysed) is followed by a production run written to
    ``out/md_{T}K.traj`` every ``run.loginterval`` steps (the MSD frame spacing) on ``engine``
    (:mod:`mf_calc.workflows.engine`: ``"ase"`` one temperature after another with ``run_md``,
    ``"torchsim"`` all as one batch with TorchSim's Langevin integrator, which the ASE run with
    ``method="langevin"`` matches within MD noise). Then :func:`diffusion_of_trajectories`.
    """
    if analysis.species not in atoms.get_chemical_symbols():
        raise ValueError(f"no {analysis.species} atoms in {atoms.get_chemical_formula()}")
    runner = engine_for(engine)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"md_{float(T):g}K.traj" for T in run.temperatures_K]
    runner.nvt(atoms, calc, run, paths, progress=progress)
    settings = {k: v for k, v in vars(run).items() if k != "temperatures_K"} | {"engine": engine}
    if engine == "torchsim":
        settings["method"] = "langevin"
    return diffusion_of_trajectories(dict(zip(run.temperatures_K, paths)), analysis, out, plot) | {
        "settings": settings | vars(analysis)}


def diffusion_of_trajectories(trajectories: dict, analysis: MSDSettings = MSDSettings(), out="diffusion",
                              plot: bool = True) -> dict:
    """MSD analysis of existing trajectories ({T (K): path}) → per-T results (arrays dropped), the Arrhenius fit
    of the total D and of each axis where possible, PNG plots, and ``out/diffusion.json``."""
    pairs = sorted((float(T), Path(p)) for T, p in trajectories.items())
    for _, path in pairs:  # fail before any work
        if not path.is_file():
            raise FileNotFoundError(f"trajectory file {str(path)!r} not found")
    per_T = {T: _analyse(T, path, analysis) for T, path in pairs}
    result = {"species": analysis.species, "temperatures_K": list(per_T),
              "per_temperature": {f"{T:g}": _strip(r) for T, r in per_T.items()},
              "arrhenius": _arrhenius_fits(per_T, analysis.T_target_K),
              "trajectories": {f"{T:g}": str(p) for T, p in pairs}, "settings": vars(analysis)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if plot:
        result |= _plots(per_T, result["arrhenius"]["total"], analysis.species, out)
    write_json(out / "diffusion.json", result)
    return result


def _analyse(T: float, path: Path, analysis: MSDSettings) -> dict:
    r = msd_analysis(read_structures(path), species=analysis.species, frame_interval_ps=analysis.frame_interval_ps,
                     drift=analysis.drift, skip=analysis.skip, n_blocks=analysis.n_blocks)
    note = "" if r["resolved"]["total"] else "  [not resolved: D <= 2 sigma, run longer / hotter]"
    D, err = r["D_cm2_per_s"], r["D_err_cm2_per_s"]
    log.info("  %g K: D = %.2e ± %.1e cm²/s (x %.1e, y %.1e, z %.1e)%s", T, D["total"], err["total"], D["x"],
             D["y"], D["z"], note)
    return r


def _arrhenius_fits(per_T: dict, T_target_K: float) -> dict:
    """The Arrhenius fit of each D component ("total", "x", "y", "z"), or {"error": why} where it fails."""
    fits = {}
    Ts = list(per_T)
    for key in ("total", "x", "y", "z"):
        D = [per_T[T]["D_cm2_per_s"][key] for T in Ts]
        err = [per_T[T]["D_err_cm2_per_s"][key] for T in Ts]
        try:
            fits[key] = arrhenius_fit(Ts, D, err, T_target_K=T_target_K)
        except ValueError as exc:
            fits[key] = {"error": str(exc)}
    return fits


def _plots(per_T: dict, fit: dict, species: str, out: Path) -> dict:
    """The MSD plot and, when the total D has a fit, the Arrhenius plot; their paths."""
    paths = {"msd_png": plot_msd({f"{T:g} K": r for T, r in per_T.items()}, out / "msd.png", title=f"{species} MSD")}
    if "error" not in fit:
        Ts = list(per_T)
        points = {key: (Ts, [per_T[T]["D_cm2_per_s"][key] for T in Ts], [per_T[T]["D_err_cm2_per_s"][key] for T in Ts])
                  for key in ("total", "y")}
        paths["arrhenius_png"] = plot_arrhenius(points, fit, out / "arrhenius.png",
                                                title=f"{species} diffusion (fit: total)")
    return paths


def _strip(r: dict) -> dict:
    """msd_analysis result without the long arrays (for JSON summaries)."""
    return {k: v for k, v in r.items() if not isinstance(v, np.ndarray)}
