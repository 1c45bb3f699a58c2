"""Formation energy of an active-learning round's labelled Li_xFePO4 picks: DFT, the round's member 0 and any
other models named; then every pick's energy error per model (Mn-containing picks too).

    python benchmarks/al_picks_formation.py benchmarks/active_learning/runs/hull_committee/round_00 [--model lmfp-dft-al]

E_f per formula unit against the workflow benchmark's DFT end members FePO4 and LiFePO4 (28-atom cells, relaxed
by lmfp-dft; the picks are supercells with the same k-point sampling, relaxed by the round's model): whether the
orderings a model puts below its tie line lie below DFT's. Mn-containing picks are left out of the E_f table
(their end members differ). Relaxation starts print too, far above the tie line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workflow_bench_report import labelled


def per_formula_unit(atoms, energy: float) -> float:
    return energy / int((atoms.numbers == 15).sum())


def formation_table(picks: list, ends: dict, energies: dict[str, dict[int, float]]) -> list[str]:
    """E_f per formula unit of the Li_xFePO4 picks against the DFT (or model) end members, one column a source;
    ``energies``: per source, eV by ``id`` of each frame."""
    lines = ["| pick | formula | x | " + " | ".join(f"E_f {name} (meV/fu)" for name in energies) + " |",
             "|" + "---|" * (3 + len(energies))]
    for atoms in (a for a in picks if a.info["y_mn"] == 0.0):
        x = atoms.info["x_li"]
        ef = {name: 1e3 * (per_formula_unit(atoms, e[id(atoms)]) - (1 - x) * per_formula_unit(ends[0.0], e[id(ends[0.0])])
                           - x * per_formula_unit(ends[1.0], e[id(ends[1.0])])) for name, e in energies.items()}
        lines.append(f"| {atoms.info['source']} | {atoms.get_chemical_formula()} | {x:g} | "
                     + " | ".join(f"{value:.1f}" for value in ef.values()) + " |")
    return lines


def error_table(picks: list, energies: dict[str, dict[int, float]]) -> list[str]:
    """Every pick (Mn-containing too): each model's energy error, model − DFT, meV/atom."""
    models = [name for name in energies if name != "DFT"]
    lines = ["| pick | kind | formula | x | y_Mn | " + " | ".join(f"{name} − DFT (meV/atom)" for name in models) + " |",
             "|" + "---|" * (5 + len(models))]
    for atoms in picks:
        dft = energies["DFT"][id(atoms)]
        lines.append(f"| {atoms.info['source']} | {atoms.info['kind']} | {atoms.get_chemical_formula()} | "
                     f"{atoms.info['x_li']:g} | {atoms.info['y_mn']:g} | "
                     + " | ".join(f"{1e3 * (energies[m][id(atoms)] - dft) / len(atoms):+.1f}" for m in models) + " |")
    return lines


def main(argv=None) -> int:
    import ase.io

    from mf_calc import load_model
    from mf_calc.model.mfchgnet import MFCHGNet

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("round_dir", type=Path)
    ap.add_argument("--fidelity", default="gpaw_afm")
    ap.add_argument("--model", action="append", default=[], help="another model (name or folder) to compare; repeatable")
    args = ap.parse_args(argv)
    ends = {f.info["x_li"]: f for f in labelled("hull_fe") if f.info["x_li"] in (0.0, 1.0)}
    picks = ase.io.read(args.round_dir / "labels" / "labelled.extxyz", ":")
    models = {"member 0": MFCHGNet.load(args.round_dir / "committee" / "m0" / "best")}
    models |= {name: load_model(name) for name in args.model}
    frames = [ends[0.0], ends[1.0], *picks]
    energies = {"DFT": [f.get_potential_energy() for f in frames]}
    energies |= {name: [p["energy"] for p in model.predict(frames, fidelity=args.fidelity, task="e")]
                 for name, model in models.items()}
    by_frame = {name: {id(atoms): e for atoms, e in zip(frames, values)} for name, values in energies.items()}
    print("\n".join(formation_table(picks, ends, by_frame) + [""] + error_table(picks, by_frame)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
