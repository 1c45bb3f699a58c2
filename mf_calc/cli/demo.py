"""``mf-calc demo``, the main job: a tour of the default model — half-delithiated LiMn0.5Fe0.5PO4 → every
fidelity → relax → short NPT MD.

``run_demo`` prints as it goes and writes to ``out``: relaxed.extxyz, relax.traj, md.traj, md.csv, md.png,
demo_summary.json. Full: relax (fmax 0.05 eV/Å, ≤ 300 steps) + 1000 NPT steps (1 ps) at 300 K; quick: fmax
0.1, ≤ 100 relax steps + 100 MD steps. Oxidation states printed after relaxation and along the MD come from
magmoms (``mf_calc.workflows.oxidation``); "charge -1" flags moments that do not add up to a neutral cell.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="build Li0.5Mn0.5Fe0.5PO4 (1x1x2), compare fidelities, relax, run a short 300 K NPT MD (a few minutes)",
    )
    p.add_argument("--model", default=None, help="model name or folder (default: the shipped default)")
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    p.add_argument("--x-li", type=float, default=0.5, help="Li fraction kept (default 0.5)")
    p.add_argument("--y-mn", type=float, default=0.5, help="Mn fraction on transition-metal sites (default 0.5)")
    p.add_argument("--md-steps", type=int, default=None, help="NPT MD steps of 1 fs (default 1000; 100 with --quick)")
    p.add_argument("--quick", action="store_true", help="fewer relaxation and MD steps (under a minute)")
    p.set_defaults(func=run)


def run(args) -> int:
    run_demo(model=args.model, out=args.out, quick=args.quick, x_li=args.x_li, y_mn=args.y_mn, md_steps=args.md_steps)
    return 0


def run_demo(model=None, out="demo_output", quick: bool = False, x_li: float = 0.5, y_mn: float = 0.5,
             temperature_K: float = 300.0, md_steps: int | None = None, progress: bool = True) -> dict:
    """Run the demo and return a summary dict (also written to ``out/demo_summary.json``).

    model: None (default shipped model), a name/folder or an ``MFCHGNet``. The structure is
    Li_x Mn_y Fe_(1-y) PO4 in a (1, 1, 2) supercell (52 atoms at x = y = 0.5), seed 0.
    """
    from mf_calc import MFCalculator, lmfp, load_model
    from mf_calc.atomic import write_json
    from mf_calc.model.mfchgnet import MFCHGNet
    from mf_calc.workflows.md import MDSettings

    t_all = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not isinstance(model, MFCHGNet):
        model = load_model(model)
    calc = MFCalculator(model)
    names = list(model.fidelities.names)
    print(f"model: {model.metadata.get('name', model.metadata.get('init', '?'))} — "
          f"{model.metadata.get('description', '')}")
    print(f"fidelities: {names} (MD and relaxation use the highest: {calc.fidelity})")
    atoms = lmfp(x_li=x_li, y_mn=y_mn, supercell=(1, 1, 2), seed=0)
    print(f"structure: {atoms.get_chemical_formula()} ({len(atoms)} atoms), olivine Pnma, x_Li={x_li}, y_Mn={y_mn}")

    per_fid = fidelity_table(model, atoms)
    relaxed, rsum = relax_step(atoms, calc, quick, out)
    steps = md_steps if md_steps is not None else (100 if quick else 1000)
    msum, png = md_step(relaxed, calc, MDSettings("npt", temperature_K, steps=steps, tdamp_fs=50.0, pdamp_fs=500.0),
                        out, progress)
    summary = {"structure": atoms.get_chemical_formula(), "n_atoms": len(atoms), "fidelities": per_fid,
               "relax": {k: v for k, v in rsum.items() if k != "magmoms"}, "md": msum,
               "files": {"relaxed": str(out / "relaxed.extxyz"), "relax_traj": str(out / "relax.traj"),
                         "md_traj": str(out / "md.traj"), "md_log": str(out / "md.csv"), "md_png": png},
               "time_s": time.perf_counter() - t_all}
    write_json(out / "demo_summary.json", summary)
    print(f"wrote {out}/: relaxed.extxyz, relax.traj, md.traj, md.csv, md.png, demo_summary.json "
          f"({summary['time_s']:.0f} s in all)")
    return summary


def fidelity_table(model, atoms) -> dict:
    """Energy (eV/atom), largest force component (eV/Å) and pressure (GPa) of ``atoms`` at every fidelity."""
    from mf_calc import MFCalculator
    from mf_calc.constants import EV_A3_TO_GPA as GPA

    per_fid = {}
    for name in model.fidelities.names:
        a = atoms.copy()
        a.calc = MFCalculator(model, fidelity=name)
        e = a.get_potential_energy() / len(a)
        f = np.abs(a.get_forces()).max()
        p = -a.get_stress()[:3].mean() * GPA
        per_fid[name] = {"energy_per_atom_eV": float(e), "max_force_eV_per_A": float(f), "pressure_GPa": float(p)}
        print(f"  [{name}] unrelaxed: E = {e:.4f} eV/atom, max|F| = {f:.3f} eV/Å, P = {p:.2f} GPa")
    return per_fid


def relax_step(atoms, calc, quick: bool, out: Path):
    """Positions and cell relaxed (FIRE; fmax 0.1 quick, else 0.05 eV/Å), written to ``out/relaxed.extxyz``."""
    from ase.io import write

    from mf_calc.workflows.relax import RelaxSettings, format_summary, relax

    settings = RelaxSettings(fmax=0.1 if quick else 0.05, steps=100 if quick else 300)
    print(f"relaxing (FIRE, positions + cell, fmax {settings.fmax} eV/Å) ...", flush=True)
    relaxed, summary = relax(atoms, calc, settings, trajectory=out / "relax.traj")
    print(format_summary(summary))
    relaxed.calc = None
    write(out / "relaxed.extxyz", relaxed)
    return relaxed, summary


def md_step(relaxed, calc, settings, out: Path, progress: bool):
    """A short NPT run (anisotropic MTK barostat) with a status line every 10 %; its summary and plot path."""
    from mf_calc.workflows.md import MDOutput, plot_md_log, run_md

    steps = settings.steps
    print(f"NPT MD (MTK, anisotropic cell) at {settings.temperature_K:g} K, 0 GPa, 1 fs x {steps} steps; "
          "status every 10 % (oxidation counts Fe 2+/3+, Mn 2+/3+/4+):", flush=True)
    output = MDOutput(out / "md.traj", out / "md.csv", max(steps // 100, 1), progress=progress,
                      print_interval=max(steps // 10, 1))
    final, msum = run_md(relaxed, calc, settings, output)
    png = plot_md_log(out / "md.csv", out / "md.png",
                      title=f"{final.get_chemical_formula()} NPT {settings.temperature_K:g} K [{calc.fidelity}]")
    print(f"second half: <T> = {msum['T_K_mean']:.0f} K, <P> = {msum['P_GPa_mean']:.2f} GPa, "
          f"<a, b, c> = {msum['a_mean']:.3f}, {msum['b_mean']:.3f}, {msum['c_mean']:.3f} Å, "
          f"<V> = {msum['volume_A3_mean']:.1f} Å³; {msum['s_per_step']:.3f} s/step")
    return msum, png
