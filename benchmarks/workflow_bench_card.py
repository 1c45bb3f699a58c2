"""The data card of the DFT workflow benchmark (``benchmarks/data/dft/workflow_bench/DATA_CARD.md``), made from its
records and inputs: progress and cost per part, the DFT moments and oxidation states of every labelled hull
ordering, and the scores of ``lmfp-dft`` (``workflow_bench_report.py``).

    python benchmarks/workflow_bench_card.py
"""

from __future__ import annotations

import json

import ase.io
import numpy as np
from make_workflow_bench import BENCH, INPUTS, PARTS, RAW, RELAX_FMAX, charge_ordered_spec
from workflow_bench_report import evaluate, score_relax, target_checks, targets_table


def progress_rows() -> list[str]:
    from mf_calc.label.store import LabelStore

    rows = ["| part | inputs | ok | failed | pending | median s per frame (one core) | SCF iterations (median) |",
            "|---|---|---|---|---|---|---|"]
    for part in (p for p in PARTS if p != "relax"):  # relax has its own table (relax_rows)
        path = INPUTS / f"{part}.extxyz"
        n = len(ase.io.read(path, ":")) if path.is_file() else 0
        records = LabelStore(RAW / part).all_records() if (RAW / part / "records").is_dir() else []
        ok = [r for r in records if r["status"] == "ok"]
        seconds = f"{np.median([r['seconds'] for r in records]):.0f}" if records else "—"
        iterations = [r["scf_iterations"] for r in ok if r["scf_iterations"]]
        iterations = f"{np.median(iterations):.0f}" if iterations else "—"
        rows.append(f"| {part} | {n} | {len(ok)} | {len(records) - len(ok)} | {n - len(records)} | "
                    f"{seconds} | {iterations} |")
    return rows


def moment_rows(part: str) -> list[str]:
    from mf_calc.label.store import LabelStore, record_to_atoms
    from mf_calc.workflows.oxidation import charge_balance, oxidation_states

    if not (RAW / part / "run.json").is_file():
        return []
    inputs = ase.io.read(INPUTS / f"{part}.extxyz", ":")
    rows = [f"| {part} frame | x | ordering | Fe/Mn moments (μB, DFT) | oxidation states | charge excess | E (eV) |",
            "|---|---|---|---|---|---|---|"]
    for record in LabelStore(RAW / part).all_records():
        if record["status"] != "ok":
            continue
        atoms = record_to_atoms(record, "gpaw_afm")
        tm = np.isin(atoms.numbers, (25, 26))
        m = atoms.get_magnetic_moments()
        ox = oxidation_states(atoms, m, scale="gpaw_afm")
        states = " ".join(f"{atoms.get_chemical_symbols()[i]}{ox[i]}+" for i in np.flatnonzero(tm))
        info = inputs[record["index"]].info
        rows.append(f"| {record['index']} | {info['x_li']:.2f} | {info['ordering']} | "
                    f"{' '.join(f'{v:+.2f}' for v in m[tm])} | {states} | {charge_balance(atoms, ox)} | "
                    f"{atoms.get_potential_energy():.4f} |")
    return rows


def solution_rows(scores: dict) -> list[str]:
    """Both DFT solutions of each mixed-valence Li_xFePO4 ordering (the spec's U ramp and the charge-ordered
    start), which one is the label, and what the lower ones say about charge localisation and the hull."""
    from workflow_bench_report import labelled, lowest_solutions

    from mf_calc.label.store import structure_hash
    from mf_calc.workflows.oxidation import charge_balance, oxidation_states

    spec = {structure_hash(a): a for a in labelled("hull_fe")}
    ordered = labelled("hull_fe_co")
    if not ordered:
        return []
    rows = ["## Two magnetic starts per mixed-valence ordering (hull_fe against hull_fe_co)", "",
            "| x | ordering | E spec − E charge-ordered (meV/cell) | label | charge excess of the label |",
            "|---|---|---|---|---|"]
    spread = []
    def excess(atoms) -> int:
        return charge_balance(atoms, oxidation_states(atoms, atoms.get_magnetic_moments(), scale="gpaw_afm"))

    for atoms in ordered:
        other = spec[structure_hash(atoms)]
        (label,) = lowest_solutions([other], [atoms])
        if excess(atoms) and excess(other):
            spread.append(f"{atoms.info['x_li']:g}")
        rows.append(f"| {atoms.info['x_li']:.2f} | {atoms.info['ordering']} | "
                    f"{(other.get_potential_energy() - atoms.get_potential_energy()) * 1e3:+.1f} | "
                    f"{label.info['solution'].replace('_', '-')} | {excess(label)} |")
    hull = scores["parts"].get("hull_fe", {})
    rows += ["", f"Labels (per structure the lower solution) put the DFT hull of Li_xFePO4 at x = "
             f"{', '.join(f'{x:g}' for x in hull.get('on_hull_dft', []))}: "
             + ("every intermediate ordering above the tie line, i.e. phase separation. "
                if len(hull.get("on_hull_dft", [])) == 2 else "intermediate orderings on the hull. ")
             + (f"Charge stays spread over several Fe at x = {', '.join(sorted(set(spread)))} from both starts. "
                "These are single points at geometries `lmfp-dft` relaxed, with no polaronic distortion around an "
                "Fe2+ to break the symmetry between the Fe next to the Li, so PBE+U at fixed geometry has no reason "
                "to localise there."
                if spread else "Every label is charge-balanced.")]
    return rows + [""]


def relax_rows() -> list[str]:
    """The DFT relaxations against the single-point shortcut (part ``relax``)."""
    scores = score_relax()
    if not scores:
        return []
    rows = ["## DFT relaxation against the single-point shortcut (part relax)", "",
            f"GPAW + ASE BFGS at fixed cell to fmax {RELAX_FMAX} eV/Å from the structures `lmfp-dft` relaxed, each "
            "from the magnetic start of its label.", "",
            "| structure | finished | steps | converged | DFT core-hours | E(relaxed) − E(single point) (meV/fu) | "
            "largest displacement (Å) |", "|---|---|---|---|---|---|---|"]
    for name, v in scores.items():
        if isinstance(v, dict):
            cells = [("yes" if v["finished"] else "no"), v.get("steps", "—"), v.get("converged", "—"),
                     *(f"{v[k]:.3g}" if k in v else "—" for k in
                       ("core_hours", "energy_change_meV_fu", "max_displacement_A"))]
            if "core_hours" not in v and "seconds" in v:
                cells[3] = f"{v['seconds'] / 3600:.3g} so far"
            rows.append(f"| {name} | " + " | ".join(map(str, cells)) + " |")
    if "ef_half_relaxed_meV_fu" in scores:
        rows += ["", f"E_f of the x = ½ ordering: {scores['ef_half_single_point_meV_fu']:+.1f} meV/fu from the single "
                 f"points, {scores['ef_half_relaxed_meV_fu']:+.1f} after DFT relaxation of all three."]
    return rows + [""]


def card() -> str:
    spec = charge_ordered_spec()
    scores = evaluate()
    lines = ["# DFT workflow benchmark (gpaw_afm single points of what the workflows compute)", "",
             "Made by `python benchmarks/make_workflow_bench.py` (see its docstring: parts, how each input was made "
             "with `lmfp-dft`); this card by `python benchmarks/workflow_bench_card.py`. Never trained on: the "
             "inputs are configurations the training sets never used (hull orderings relaxed by the model, other "
             "site arrangements and MD seeds, the NEB path, strained volumes).", "",
             "Labels: the shipped `gpaw_afm` spec; part `hull_fe_co` the same settings from the frame's own "
             f"charge-ordered initial moments without the U ramp (spec hash `{spec.hash}`).", "",
             "## Progress and cost", "", *progress_rows(), "",
             "## What the project's PBE+U gives: moments and oxidation states of the hull orderings", "",
             "Thresholds of the `gpaw_afm` scale (`mf_calc.workflows.oxidation`): Fe 3.92, Mn2+/3+ 4.30 μB. A charge "
             "excess other than 0 means the moments do not give a charge-balanced set of Fe2+/Fe3+: the extra "
             "electrons of the Li are spread over several Fe.", ""]
    for part in ("hull_fe", "hull_fe_co", "hull_mnfe"):
        rows = moment_rows(part)
        if rows:
            lines += [*rows, ""]
    lines += solution_rows(scores)
    lines += relax_rows()
    lines += ["## `lmfp-dft` against the default-model targets (issue 30, section 3), on the frames labelled so far",
              "", *targets_table({"`lmfp-dft`": target_checks(scores)})]
    lines += ["", "## Scores of `lmfp-dft` on the frames labelled so far", "",
              "```json", json.dumps(scores, indent=1), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    text = card()
    (BENCH / "DATA_CARD.md").write_text(text)
    print(text)
