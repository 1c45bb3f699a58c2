"""The same structure at each fidelity of a model, side by side: single-point energy, forces, pressure,
magmoms and oxidation states of a half-delithiated LMFP cell, then the relaxed LiFePO4 lattice per
fidelity, and the fidelity-gap ranking of a few rattled frames (which ones to send to DFT).

The default model ``lmfp-mf`` has two fidelities (pbe_u, r2scan). The script also evaluates the shipped
r2SCAN warm start (``--compare chgnet-r2scan``) — CHGNet's r2SCAN model, the teacher of the high-fidelity
labels the default model was trained on (its model card) — so each column can be set against it.

    python md_examples/05_fidelities_side_by_side.py --quick
    python md_examples/05_fidelities_side_by_side.py --model path/to/trained_mf_model
"""

import numpy as np
from _common import parser, setup

from mf_calc import MFCalculator, lmfp, load_model
from mf_calc.atomic import write_json
from mf_calc.workflows.io import GPA
from mf_calc.workflows.oxidation import format_oxidation, oxidation_summary
from mf_calc.workflows.relax import RelaxSettings, relax


def columns(args):
    """[(label, calculator)] — every fidelity of --model, then every fidelity of each --compare model."""
    cols = []
    for name in [args.model] + list(args.compare or []):
        model = load_model(name)
        tag = model.metadata.get("name", name or "default")
        for fid in model.fidelities.names:
            cols.append((f"{tag}:{fid}", MFCalculator(model, fidelity=fid)))
    return cols


def main():
    p = parser(__doc__.splitlines()[0], "runs/md_examples/05_fidelities")
    p.add_argument("--compare", nargs="*", default=["chgnet-r2scan"], help="other models shown as extra columns")
    args = p.parse_args()
    _, out = setup(args)
    cols = columns(args)
    atoms = lmfp(x_li=0.5, y_mn=0.5, supercell=(1, 1, 1), seed=1)
    atoms.rattle(0.03, seed=0)
    print(f"{atoms.get_chemical_formula()} ({len(atoms)} atoms, unrelaxed Vegard cell, rattled 0.03 Å)")
    print(f"{'column':<28} {'E eV/atom':>10} {'max|F|':>8} {'P GPa':>7}   oxidation (unrelaxed: indicative only)")
    single = {}
    for label, calc in cols:
        a = atoms.copy()
        a.calc = calc
        e, f = a.get_potential_energy() / len(a), a.get_forces()
        pr = -a.get_stress()[:3].mean() * GPA
        ox = oxidation_summary(a)
        single[label] = {"energy_per_atom_eV": e, "max_force": float(np.abs(f).max()), "pressure_GPa": pr,
                         "forces": f, "oxidation": ox}
        print(f"{label:<28} {e:10.4f} {np.abs(f).max():8.3f} {pr:7.2f}   {format_oxidation(ox)}")
    ref_label = cols[-1][0]
    print(f"force differences vs {ref_label}:")
    for label, d in single.items():
        df = d["forces"] - single[ref_label]["forces"]
        print(f"  {label:<28} RMS {np.sqrt((df ** 2).mean()):.4f} eV/Å, max {np.linalg.norm(df, axis=1).max():.4f} eV/Å")

    print("\nrelaxed LiFePO4 per column (PBE+U: a≈10.41-10.45 b≈6.07-6.09 c≈4.75-4.76 Å; exp 10.324 6.006 4.690):")
    relaxed = {}
    for label, calc in cols:
        _, s = relax(lmfp(supercell=(1, 1, 1)), calc, RelaxSettings(fmax=0.05 if args.quick else 0.01, steps=300))
        lat = s["lattice"]
        relaxed[label] = ({k: lat[k] for k in ("a", "b", "c", "volume")}
                          | {"Fe_magmom": s["oxidation"]["magmoms"]["Fe"]["mean"]})
        print(f"  {label:<28} a={lat['a']:.3f} b={lat['b']:.3f} c={lat['c']:.3f} Å V={lat['volume']:.2f} Å³  "
              f"Fe {relaxed[label]['Fe_magmom']:.2f} μB")

    gap_rows = None
    model = load_model(args.model)
    if len(model.fidelities) > 1:
        from mf_calc.workflows.gap import fidelity_gap, format_gap_table

        frames = []
        for k, amp in enumerate((0.0, 0.05, 0.1, 0.2)):
            f = atoms.copy()
            f.rattle(amp, seed=k)
            frames.append(f)
        gap_rows = fidelity_gap(frames, model)
        print("\nfidelity gap ranking (rattle amplitudes 0, 0.05, 0.1, 0.2 Å):")
        print(format_gap_table(gap_rows))
    else:
        print(f"\n(the model has one fidelity {list(model.fidelities.names)}: no fidelity-gap ranking; "
              "a trained multi-fidelity model ranks frames with mf_calc.workflows.fidelity_gap)")
    for d in single.values():
        d.pop("forces")
    write_json(out / "fidelities.json", {"single_point": single, "relaxed_LFP": relaxed, "gap": gap_rows})
    print(f"wrote {out}/fidelities.json")


if __name__ == "__main__":
    main()
