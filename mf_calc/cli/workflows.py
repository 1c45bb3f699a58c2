"""``mf-calc relax | md | diffusion | phonons | gap``: the workflows from the command line.

Every command takes a structure file (CIF, POSCAR, extxyz, ASE traj — anything ``ase.io.read`` reads; the
last frame) or builds an olivine LMFP cell from ``--x-li --y-mn --supercell --seed``, plus ``--model``,
``--fidelity`` and ``--out``. The structure, the model and the fidelity are all checked before any
computation starts; problems raise ValueError / FileNotFoundError, which ``mf_calc.cli.main`` prints as
a one-line error (exit code 2).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mf_calc.cli.args import add_model_args, add_structure_args, calculator_from_args, structure_from_args


# ----------------------------------------------------------------------------- shared arguments
def _common(p: argparse.ArgumentParser, out: str, x_li: float = 1.0, supercell=(1, 1, 2), structure=True):
    if structure:
        add_structure_args(p, supercell=supercell, x_li=x_li)
    add_model_args(p)
    p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _prepare(args):
    """Structure, calculator and output folder — everything that can fail cheaply, before any work."""
    atoms = structure_from_args(args)
    calc = calculator_from_args(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{atoms.get_chemical_formula()} ({len(atoms)} atoms), model "
          f"{calc.model.metadata.get('name', args.model or 'default')} ({str(calc.model.dtype).removeprefix('torch.')}), "
          f"fidelity {calc.fidelity} "
          f"(of {list(calc.model.fidelities.names)}), output -> {out}/", flush=True)
    return atoms, calc, out


# ----------------------------------------------------------------------------- relax
def cmd_relax(args) -> int:
    from ase.io import write

    from mf_calc.atomic import write_json
    from mf_calc.workflows.relax import RelaxSettings, format_summary, relax

    settings = RelaxSettings(args.fmax, args.steps, relax_cell=not args.fixed_cell, optimizer=args.optimizer,
                             fix_symmetry=args.fix_symmetry, pressure_GPa=args.pressure)
    atoms, calc, out = _prepare(args)
    relaxed, summary = relax(atoms, calc, settings, trajectory=out / "relax.traj")
    print(format_summary(summary))
    relaxed.calc = None
    write(out / "relaxed.extxyz", relaxed)
    write(out / "relaxed.cif", relaxed)
    write_json(out / "relax_summary.json", summary)
    print(f"wrote {out}/relaxed.extxyz, relaxed.cif, relax.traj, relax_summary.json")
    return 0 if summary["converged"] else 1


def _add_relax(sub):
    p = sub.add_parser("relax", help="relax positions and cell; lattice, energy, magmoms, oxidation states")
    _common(p, "relax_output")
    p.add_argument("--fmax", type=float, default=0.05, help="force criterion eV/Å (default 0.05)")
    p.add_argument("--steps", type=int, default=500, help="max optimiser steps (default 500)")
    p.add_argument("--optimizer", default="FIRE", help="FIRE, BFGS, LBFGS, ... (default FIRE)")
    p.add_argument("--fix-symmetry", action="store_true", help="keep the space group (ase FixSymmetry)")
    p.add_argument("--fixed-cell", action="store_true", help="relax positions only")
    p.add_argument("--pressure", type=float, default=0.0, help="external pressure GPa (default 0)")
    p.set_defaults(func=cmd_relax)


# ----------------------------------------------------------------------------- md
def cmd_md(args) -> int:
    from mf_calc.atomic import write_json
    from mf_calc.workflows.md import MDOutput, MDSettings, plot_md_log, run_md
    from mf_calc.workflows.relax import RelaxSettings, format_summary, relax

    settings = MDSettings(args.ensemble, args.temperature, args.pressure, args.timestep, args.steps, args.method,
                          args.tdamp, args.pdamp, seed=getattr(args, "seed", 0))
    if args.traj_format not in ("traj", "extxyz"):
        raise ValueError("--traj-format must be traj or extxyz")
    if args.restart_from:
        from mf_calc.workflows.md import load_restart

        atoms = load_restart(args.restart_from)
        calc = calculator_from_args(args)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
    else:
        atoms, calc, out = _prepare(args)
        if args.relax_first:
            atoms, s = relax(atoms, calc, RelaxSettings(fmax=0.1, steps=200))
            print(format_summary(s))
    traj = out / f"md.{args.traj_format}"
    output = MDOutput(traj, out / "md.csv", args.loginterval, progress=not args.quiet,
                      print_interval=args.print_interval)
    final, summary = run_md(None if args.restart_from else atoms, calc, settings, output,
                            restart_from=args.restart_from)
    png = plot_md_log(out / "md.csv", out / "md.png", title=f"{final.get_chemical_formula()} {args.ensemble.upper()} "
                      f"{args.temperature:g} K [{calc.fidelity}]")
    write_json(out / "md_summary.json", summary)
    print(f"<T> = {summary['T_K_mean']:.1f} K, <P> = {summary['P_GPa_mean']:.2f} GPa, "
          f"<V> = {summary['volume_A3_mean']:.2f} Å³,"
          f" <a,b,c> = {summary['a_mean']:.3f}, {summary['b_mean']:.3f}, {summary['c_mean']:.3f} Å (second half); "
          f"{summary['s_per_step']:.3f} s/step")
    print(f"wrote {traj}, {out}/md.csv, {png}, {out}/md_summary.json")
    return 0


def _add_md(sub):
    p = sub.add_parser("md", help="NVE / NVT / NPT molecular dynamics with a CSV log and a trajectory")
    _common(p, "md_output")
    p.add_argument("--ensemble", default="nvt", help="nve, nvt or npt (default nvt)")
    p.add_argument("--method", default=None,
                   help="nvt: nose-hoover (default), bussi, langevin; npt: mtk (default, anisotropic), langevin, "
                        "mtk-isotropic")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--pressure", type=float, default=0.0, help="GPa, NPT only (default 0)")
    p.add_argument("--timestep", type=float, default=1.0, help="fs (default 1)")
    p.add_argument("--steps", type=int, default=1000, help="MD steps (default 1000)")
    p.add_argument("--loginterval", type=int, default=10, help="log / frame interval in steps (default 10)")
    p.add_argument("--tdamp", type=float, default=100.0, help="thermostat time constant fs (default 100)")
    p.add_argument("--pdamp", type=float, default=1000.0, help="barostat time constant fs (default 1000)")
    p.add_argument("--traj-format", default="traj", help="traj (default) or extxyz")
    p.add_argument("--restart-from", default=None, help="continue from the last frame of this trajectory")
    p.add_argument("--relax-first", action="store_true", help="relax (fmax 0.1) before MD")
    p.add_argument("--print-interval", type=int, default=0, help="print a status line every n steps")
    p.set_defaults(func=cmd_md)


# ----------------------------------------------------------------------------- diffusion
def cmd_diffusion(args) -> int:
    from mf_calc.workflows.diffusion import MSDSettings, diffusion_of_trajectories, li_diffusion
    from mf_calc.workflows.engine import NVTRun
    from mf_calc.workflows.msd import format_arrhenius

    out = Path(args.out)
    analysis = MSDSettings(args.species, skip=args.skip, frame_interval_ps=args.frame_interval)
    if args.trajectories:
        if len(args.trajectories) != len(args.temperatures):
            raise ValueError(f"give one --temperatures value per trajectory ({len(args.trajectories)} files, "
                             f"{len(args.temperatures)} temperatures)")
        res = diffusion_of_trajectories(dict(zip(args.temperatures, args.trajectories)), analysis, out)
    else:
        run = NVTRun(tuple(args.temperatures), args.steps, args.equil_steps, args.timestep, args.loginterval,
                     args.method, seed=args.seed)
        atoms, calc, out = _prepare(args)
        if args.relax_first:
            from mf_calc.workflows.relax import RelaxSettings, relax

            atoms, _ = relax(atoms, calc, RelaxSettings(fmax=0.1, steps=200))
        res = li_diffusion(atoms, calc, run, analysis, out, engine=args.engine, progress=not args.quiet)
    print(f"Arrhenius fit: {format_arrhenius(res['arrhenius']['total'])}")
    print(f"wrote {out}/diffusion.json" + (f", {res.get('msd_png')}" if res.get("msd_png") else "")
          + (f", {res.get('arrhenius_png')}" if res.get("arrhenius_png") else ""))
    return 0


def _add_diffusion(sub):
    p = sub.add_parser("diffusion", help="Li MSD and D per axis at several temperatures, Arrhenius fit")
    _common(p, "diffusion_output", x_li=0.75)
    p.add_argument("--temperatures", type=float, nargs="+", default=[800.0, 1000.0, 1200.0], help="K")
    p.add_argument("--steps", type=int, default=5000, help="production steps per temperature (default 5000)")
    p.add_argument("--equil-steps", type=int, default=1000, help="equilibration steps (default 1000)")
    p.add_argument("--timestep", type=float, default=1.0, help="fs (default 1)")
    p.add_argument("--loginterval", type=int, default=10, help="frame interval in steps (default 10)")
    p.add_argument("--method", default="bussi", help="NVT thermostat (default bussi)")
    p.add_argument("--engine", choices=["ase", "torchsim"], default="ase",
                   help="ase: one temperature after another; torchsim: all temperatures as one TorchSim batch "
                        "(Langevin, friction 1/100 fs; needs `make torchsim`) (default ase)")
    p.add_argument("--relax-first", action="store_true", help="relax the structure before MD")
    p.add_argument("--trajectories", nargs="+", default=None,
                   help="analyse these existing trajectories (one per --temperatures value) instead of running MD")
    p.add_argument("--frame-interval", type=float, default=None,
                   help="ps between frames, for trajectories without md_time_ps info")
    p.add_argument("--species", default="Li", help="diffusing species (default Li)")
    p.add_argument("--skip", type=float, default=0.2, help="fraction of the lag range skipped as ballistic")
    p.set_defaults(func=cmd_diffusion)


# ----------------------------------------------------------------------------- phonons
def cmd_phonons(args) -> int:
    from mf_calc.workflows.phonons import PhononSettings, phonons
    from mf_calc.workflows.relax import RelaxSettings, format_summary, relax

    atoms, calc, out = _prepare(args)
    if args.no_relax:
        residual = _max_force(atoms, calc)
    else:
        atoms, s = relax(atoms, calc, RelaxSettings(fmax=args.fmax, steps=args.steps), trajectory=out / "relax.traj")
        print(format_summary(s))
        residual = s["max_force_eV_per_A"]
    if residual > SOFT_MODE_FMAX:
        print(f"note: the structure's max force is {residual:.2g} eV/Å (> {SOFT_MODE_FMAX:g}); soft modes may come out "
              "as spurious imaginary ones — relax tighter (e.g. --fmax 5e-4) in float64")
    settings = PhononSettings(tuple(args.phonon_supercell), args.displacement, args.mesh, imag_tol_THz=args.imag_tol)
    _, summ = phonons(atoms, calc, settings, out=out, progress=not args.quiet)
    print(f"{summ['n_displacements']} displacements; max frequency {summ['max_frequency_THz']:.2f} THz = "
          f"{summ['max_frequency_cm-1']:.0f} cm⁻¹ = {summ['max_frequency_meV']:.1f} meV; "
          f"min {summ['min_frequency_THz']:.3f} THz; imaginary (tol {summ['imag_tol_THz']} THz): "
          f"Γ {summ['n_imaginary_gamma']}, band {summ['n_imaginary_band']}, mesh {summ['n_imaginary_mesh']} -> "
          f"{'stable' if summ['stable'] else 'UNSTABLE'}")
    if not summ["off_gamma_reliable"]:
        print(f"note: the phonon supercell is only {summ['supercell_min_width_A']:.1f} Å thick in one direction; "
              "off-Γ frequencies (band, mesh, thermal properties) are unreliable — use a larger --phonon-supercell")
    t3 = summ["thermal_300K"]
    print(f"300 K: F = {t3['free_energy_kJ_per_mol']:.2f} kJ/mol, S = {t3['entropy_J_per_K_mol']:.2f} J/K/mol, "
          f"Cv = {t3['heat_capacity_J_per_K_mol']:.2f} J/K/mol (per mol of cells)")
    print(f"wrote {out}/phonons.json, {summ.get('band_dos_png')}, {summ.get('thermal_png')}, {summ['phonopy_params']}")
    return 0


#: Max force (eV/Å) above which soft optical modes (LiFePO4: lowest Γ optical 0.64 THz with the CHGNet r2scan
#: teacher) can turn spuriously imaginary.
SOFT_MODE_FMAX = 1e-3


def _max_force(atoms, calc) -> float:
    """Largest atomic force (eV/Å) of ``atoms`` with ``calc``."""
    import numpy as np

    atoms = atoms.copy()
    atoms.calc = calc
    return float(np.linalg.norm(atoms.get_forces(), axis=1).max())


def _add_phonons(sub):
    p = sub.add_parser("phonons", help="phonopy band structure, DOS, thermal properties, imaginary-mode check")
    _common(p, "phonons_output", supercell=(1, 1, 1))
    p.add_argument("--phonon-supercell", type=int, nargs=3, default=[1, 2, 2], metavar=("NA", "NB", "NC"),
                   help="force-constant supercell (default 1 2 2)")
    p.add_argument("--displacement", type=float, default=0.01, help="Å (default 0.01)")
    p.add_argument("--mesh", type=float, default=30.0, help="phonopy mesh length Å (default 30)")
    p.add_argument("--imag-tol", type=float, default=0.1, help="imaginary-mode tolerance THz (default 0.1)")
    p.add_argument("--no-relax", action="store_true", help="skip the relaxation (structure already relaxed)")
    p.add_argument("--fmax", type=float, default=5e-4,
                   help="relaxation criterion eV/Å (default 5e-4: LiFePO4's soft modes need it)")
    p.add_argument("--steps", type=int, default=2000, help="max relaxation steps (default 2000)")
    p.add_argument("--precision", choices=("float32", "float64"), default="float64",
                   help="model precision for the relaxation and the displaced-cell forces (default float64; "
                        "float32 noise on 0.01 Å displacements can make soft modes imaginary)")
    p.set_defaults(func=cmd_phonons)


# ----------------------------------------------------------------------------- gap
def cmd_gap(args) -> int:
    from mf_calc.atomic import write_json
    from mf_calc.structures import read_structures
    from mf_calc.workflows.gap import fidelity_gap, format_gap_table

    frames = read_structures(args.frames)
    calc = calculator_from_args(args)
    t0 = time.perf_counter()
    rows = fidelity_gap(frames, calc.model, reference=calc.fidelity, sort_by=args.sort_by)
    print(format_gap_table(rows, top=args.top))
    out = Path(args.out)
    write_json(out / "fidelity_gap.json", rows)
    print(f"{len(frames)} frames in {time.perf_counter() - t0:.1f} s; wrote {out}/fidelity_gap.json")
    return 0


def _add_gap(sub):
    p = sub.add_parser("gap", help="rank frames by the disagreement between fidelities (which to send to DFT)")
    p.add_argument("frames", help="structure/trajectory file, all frames are ranked")
    _common(p, "gap_output", structure=False)
    p.add_argument("--sort-by", default="force_rms", help="energy, force_rms (default) or force_max")
    p.add_argument("--top", type=int, default=20, help="rows printed (default 20)")
    p.set_defaults(func=cmd_gap)


def register(sub) -> None:
    """Add the workflow subcommands to ``mf-calc``."""
    _add_relax(sub)
    _add_md(sub)
    _add_diffusion(sub)
    _add_phonons(sub)
    _add_gap(sub)
