"""``mf-calc neb``: Li vacancy-hop barriers by climbing-image NEB, per fidelity side by side."""

from __future__ import annotations

import argparse

from mf_calc.cli.args import add_model_args, add_structure_args, add_sweep_args, fidelity_sweep_setup

QUICK = {"supercell": (1, 1, 2), "images": 3, "fmax": 0.1}  # --quick: these arguments


def register(sub) -> None:
    p = sub.add_parser("neb", help="Li migration barriers (vacancy hop, climbing-image NEB) along [010] and [001]",
                       description="Remove one Li, relax the end points (fixed cell), interpolate (IDPP) and relax a "
                                   "climbing-image NEB for each direction and fidelity. Energies eV, lengths Å.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_structure_args(p, supercell=(1, 2, 2), x_li=None)  # lithiated; 1 2 2: the vacancy far from its images
    p.add_argument("--directions", nargs="+", default=["010", "001"], help="hop directions (010 = in the channel)")
    add_model_args(p, several_fidelities=True)
    p.add_argument("--images", type=int, default=5, help="moving images between the end points")
    p.add_argument("--fmax", type=float, default=0.05, help="NEB force criterion, eV/Å")
    p.add_argument("--steps", type=int, default=500, help="maximum optimiser steps (end points and band)")
    add_sweep_args(p, QUICK, "neb_output")
    p.set_defaults(func=cmd_neb)


def cmd_neb(args) -> int:
    import ase.io

    from mf_calc import MFCalculator
    from mf_calc.atomic import write_json
    from mf_calc.workflows.neb import NEBSettings, li_barriers, plot_profiles

    atoms, model, fidelities, out = fidelity_sweep_setup(args, QUICK)
    results = {}
    for fid in fidelities:
        results[fid] = li_barriers(atoms, lambda fid=fid: MFCalculator(model, fidelity=fid), args.directions,
                                   NEBSettings(args.images, args.fmax, args.steps))
        for direction, r in results[fid].items():
            ase.io.write(out / f"path_{fid}_{direction}.extxyz", r.images)
            print(f"{fid:>12} [{direction}] barrier {r.barrier:.3f} eV (reverse {r.reverse_barrier:.3f}), hop "
                  f"{r.hop_distance:.2f} Å, {'converged' if r.converged else 'NOT converged'} in {r.steps} steps, "
                  f"max force {r.max_force:.3f} eV/Å, {r.seconds:.0f} s", flush=True)
    summary = {
        "barriers_eV": {f: {d: r.barrier for d, r in rs.items()} for f, rs in results.items()},
        "reverse_barriers_eV": {f: {d: r.reverse_barrier for d, r in rs.items()} for f, rs in results.items()},
        "converged": {f: {d: r.converged for d, r in rs.items()} for f, rs in results.items()},
        "max_force_eV_A": {f: {d: r.max_force for d, r in rs.items()} for f, rs in results.items()},
        "hop_distance_A": {d: r.hop_distance for d, r in next(iter(results.values())).items()},
        "formula": atoms.get_chemical_formula(), "n_atoms": len(atoms) - 1, "model": model.metadata.get("name", args.model),
        "images": args.images, "fmax": args.fmax,
        "seconds": {f: {d: r.seconds for d, r in rs.items()} for f, rs in results.items()},
    }
    write_json(out / "summary.json", summary)
    plot_profiles(results, out / "neb_profile.png")
    print(f"summary: {out / 'summary.json'}, profile: {out / 'neb_profile.png'}")
    return 0
