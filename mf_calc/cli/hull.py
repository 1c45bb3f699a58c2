"""``mf-calc hull``: Li/vacancy formation-energy hull and voltage profile of Li_x M PO4, per fidelity."""

from __future__ import annotations

import argparse

from mf_calc.cli.args import add_model_args, add_structure_args, add_sweep_args, fidelity_sweep_setup

QUICK = {"supercell": (1, 1, 1), "max_per_x": 3, "fmax": 0.1}  # --quick: these arguments


def register(sub) -> None:
    p = sub.add_parser("hull", help="formation-energy hull of Li/vacancy orderings in Li_xMPO4 and the voltage profile",
                       description="Enumerate the symmetry-distinct Li/vacancy orderings at each x of a lithiated "
                                   "olivine supercell, relax each (cell and positions), and build the lower convex "
                                   "hull of the formation energies (per formula unit, relative to x = 0 and 1) and "
                                   "the voltage plateaus between hull points. Energies eV, voltages V. A rerun "
                                   "with the same --out reuses finished relaxations.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_structure_args(p, supercell=(1, 2, 1), x_li=None)  # the lithiated host; 1 2 1: x in steps of 1/8
    p.add_argument("--x", type=float, nargs="+", default=None,
                   help="Li fractions to sample besides 0 and 1 (default: every multiple of 1/n_Li)")
    p.add_argument("--max-per-x", type=int, default=10,
                   help="relax at most this many orderings per x (the lowest by unrelaxed energy)")
    p.add_argument("--max-enumerate", type=int, default=20000,
                   help="enumerate all Li subsets up to this many per x, otherwise sample this many at random")
    add_model_args(p, several_fidelities=True)
    ref = p.add_mutually_exclusive_group()
    ref.add_argument("--mu-li", type=float, default=None,
                     help="Li chemical potential of the anode, eV/atom, for absolute voltages (every fidelity)")
    ref.add_argument("--li-reference", default=None, metavar="MODEL|auto",
                     help="relax bcc Li metal with this model at the same fidelity for μ_Li; 'auto': the shipped "
                          "CHGNet model of that fidelity (chgnet-0.3.0 for pbe_u, chgnet-r2scan for r2scan). "
                          "Without μ_Li the voltages are relative to their mean")
    p.add_argument("--fmax", type=float, default=0.05, help="relaxation force criterion, eV/Å (cell included)")
    p.add_argument("--steps", type=int, default=300, help="maximum optimiser steps per relaxation")
    p.add_argument("--engine", choices=["ase", "torchsim"], default="ase",
                   help="ase: one relaxation after another; torchsim: all orderings as one TorchSim batch (needs "
                        "`make torchsim`)")
    add_sweep_args(p, QUICK, "hull_output")
    p.set_defaults(func=cmd_hull)


def cmd_hull(args) -> int:
    import ase.io

    from mf_calc import MFCalculator
    from mf_calc.atomic import write_json
    from mf_calc.workflows.hull import HullSettings, formation_hull, li_chemical_potential, plot_hull, stable_structures

    host, model, fidelities, out = fidelity_sweep_setup(args, QUICK)
    model_name = model.metadata.get("name", str(args.model))
    settings = HullSettings(args.x, args.max_per_x, args.max_enumerate, args.fmax, args.steps, engine=args.engine)
    results = {}
    for fid in fidelities:
        mu_li = args.mu_li if args.mu_li is not None else li_chemical_potential(args.li_reference, fid)
        r = formation_hull(host, lambda fid=fid: MFCalculator(model, fidelity=fid),
                           out / "relaxed" / f"{model_name}_{fid}", settings, mu_li=mu_li)
        results[fid] = r
        ase.io.write(out / f"hull_{fid}.extxyz", stable_structures(r))
        print(f"{fid:>12}: {len(r['x'])} orderings relaxed, on the hull at x = "
              f"{sorted(set(round(x, 4) for x, on in zip(r['x'], r['on_hull']) if on))}", flush=True)
        for x, rec, on in sorted(zip(r["x"], r["records"], r["on_hull"]), key=lambda t: t[0]):
            if on and rec["oxidation_counts"]:
                print(f"{'':>14}x = {x:.3f} on the hull: {rec['oxidation_counts']}")
        for s in r["segments"]:
            v = f"{s['voltage_V']:.3f} V" if s["voltage_V"] is not None else f"{s['relative_V']:+.3f} V (relative)"
            print(f"{'':>14}x {s['x_from']:.3f} → {s['x_to']:.3f}: {v}")
        step = r["voltage_step_V"]
        print(f"{'':>14}Fe→Mn voltage step " + ("– (not a mixed Mn/Fe host)" if step is None else
                                                    f"{step:.3f} V at x = {r['voltage_step_x']:.3f}")
              + ("" if r["mean_voltage_V"] is None else f", mean voltage {r['mean_voltage_V']:.3f} V"), flush=True)
    summary = {
        "on_hull_x": {f: sorted({x for x, on in zip(r["x"], r["on_hull"]) if on}) for f, r in results.items()},
        "formation_energy_eV": {f: r["formation_energy_eV"] for f, r in results.items()},
        "x": {f: r["x"] for f, r in results.items()},
        "e_above_hull_eV": {f: r["e_above_hull_eV"] for f, r in results.items()},
        "voltage_step_V": {f: r["voltage_step_V"] for f, r in results.items()},
        "voltage_step_x": next(iter(results.values()))["voltage_step_x"],
        "mean_voltage_V": {f: r["mean_voltage_V"] for f, r in results.items()},
        "mu_li_eV": {f: r["mu_li_eV"] for f, r in results.items()},
        "segments": {f: r["segments"] for f, r in results.items()},
        "records": {f: r["records"] for f, r in results.items()},
        "formula": host.get_chemical_formula(), "n_atoms": len(host), "n_fu": next(iter(results.values()))["n_fu"],
        "model": model_name, "fmax": args.fmax, "max_per_x": args.max_per_x,
    }
    write_json(out / "summary.json", summary)
    plot_hull(results, out / "hull.png")
    print(f"summary: {out / 'summary.json'}, plot: {out / 'hull.png'}")
    return 0

