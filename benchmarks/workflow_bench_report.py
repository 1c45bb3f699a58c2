"""Score a model on the DFT workflow benchmark (``benchmarks/make_workflow_bench.py``): what the workflows compute,
at the DFT fidelity, on every frame labelled so far.

    python benchmarks/workflow_bench_report.py                        # lmfp-dft at gpaw_afm -> the data card
    python benchmarks/workflow_bench_report.py --model MODEL --fidelity gpaw_afm --out results.json

Per part: ``hull_*`` formation energies (``hull_fe``: per structure the lower-energy of its spec and charge-ordered
DFT solutions) per ordering (meV per formula unit, relative to the x = 0 and x = 1 cells of
the same calculation), the on-hull set, the sign at x = 1/2 and Fe/Mn charge balance from the DFT moments and the
model's; ``ev`` Birch-Murnaghan bulk moduli (GPa); ``md`` energy (meV/atom) and force (meV/Å) MAE; ``neb`` the
barrier along the model's path (eV). Energies in eV; the model is evaluated on the very structures DFT labelled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from ase import units
from make_workflow_bench import BENCH, FIDELITY, INPUTS, MODEL, PARTS, RAW


def labelled(part: str) -> list:
    """The part's input frames that DFT labelled (status ok), each with the DFT labels attached and the input's
    ``info`` (x, volume, role, ...) kept."""
    import ase.io

    from mf_calc.label.store import LabelStore, record_to_atoms

    if not (RAW / part / "run.json").is_file():
        return []
    inputs = ase.io.read(INPUTS / f"{part}.extxyz", ":")
    store = LabelStore(RAW / part)
    frames = []
    for record in store.all_records():
        if record["status"] == "ok":
            atoms = record_to_atoms(record, FIDELITY)
            atoms.info = inputs[record["index"]].info | atoms.info
            frames.append(atoms)
    return frames


def lowest_solutions(frames: list, alternatives: list) -> list:
    """Per structure the lower-energy converged DFT solution: ``frames`` with each replaced by the alternative
    labels of the same structure (same positions and cell) where those are lower in energy."""
    from mf_calc.label.store import structure_hash

    better = {structure_hash(a): a for a in alternatives}
    out = []
    for atoms in frames:
        other = better.get(structure_hash(atoms))
        lower = other is not None and other.get_potential_energy() < atoms.get_potential_energy()
        chosen = other if lower else atoms
        chosen.info["solution"] = "charge_ordered" if lower else "spec"
        out.append(chosen)
    return out


def predictions(model, fidelity, frames) -> list[dict]:
    return model.predict(frames, fidelity=fidelity, task="efm", batch_size=8) if frames else []


def _formation(frames, energies) -> np.ndarray | None:
    """E_f (eV per formula unit) of every frame from ``energies``, or None without both end members."""
    x = np.array([f.info["x_li"] for f in frames])
    if not ((x == 0).any() and (x == 1).any()):
        return None
    e = np.asarray(energies, float)
    e0, e1 = e[x == 0].min(), e[x == 1].min()
    n_fu = np.array([int((f.numbers == 15).sum()) for f in frames])
    return (e - (1 - x) * e0 - x * e1) / n_fu


def _balanced(frames, magmoms) -> float:
    """Fraction of frames whose Fe/Mn oxidation states from ``magmoms`` (gpaw_afm scale) are charge-balanced."""
    from mf_calc.workflows.oxidation import charge_balance, oxidation_states

    ok = [charge_balance(f, oxidation_states(f, m, scale="gpaw_afm")) == 0 for f, m in zip(frames, magmoms)]
    return float(np.mean(ok))


def score_hull(frames, preds) -> dict:
    from mf_calc.workflows.hull import ON_HULL_TOL, lower_hull

    dft_m = [f.get_magnetic_moments() for f in frames]
    out = {"n": len(frames), "charge_balanced_dft": _balanced(frames, dft_m),
           "charge_balanced_model": _balanced(frames, [p["magmoms"] for p in preds])}
    dft = _formation(frames, [f.get_potential_energy() for f in frames])
    model = _formation(frames, [p["energy"] for p in preds])
    if dft is None:
        return out
    x = np.array([f.info["x_li"] for f in frames])
    on = {name: sorted({float(v) for v in x[lower_hull(x, ef)[1] < ON_HULL_TOL]}) for name, ef in
          (("dft", dft), ("model", model))}
    half = np.isclose(x, 0.5)
    out |= {"x": x.tolist(), "ef_dft_meV_fu": (dft * 1e3).tolist(), "ef_model_meV_fu": (model * 1e3).tolist(),
            "ef_mae_meV_fu": float(np.abs(dft - model).mean() * 1e3), "on_hull_dft": on["dft"],
            "on_hull_model": on["model"]}
    if half.any():
        out |= {"lowest_half_dft_meV_fu": float(dft[half].min() * 1e3),
                "lowest_half_model_meV_fu": float(model[half].min() * 1e3)}
    return out


def score_ev(frames, preds) -> dict:
    from ase.eos import EquationOfState

    out = {}
    for material in sorted({f.info["material"] for f in frames}):
        rows = [(f.get_volume(), f.get_potential_energy(), p["energy"]) for f, p in zip(frames, preds)
                if f.info["material"] == material]
        if len(rows) < 5:
            out[material] = {"n": len(rows)}
            continue
        v, e_dft, e_model = (np.array(c) for c in zip(*rows))
        fits = {}
        for name, e in (("dft", e_dft), ("model", e_model)):
            v0, _, b = EquationOfState(v, e, eos="birchmurnaghan").fit()
            fits[name] = {"V0_A3": float(v0), "B_GPa": float(b / units.GPa)}
        fits["B_error_percent"] = 100 * (fits["model"]["B_GPa"] / fits["dft"]["B_GPa"] - 1)
        out[material] = fits
    return out


def forces_mae(frames, preds) -> float:
    """Force MAE (meV/Å, per component) of the predictions against the DFT labels."""
    return float(np.concatenate([np.abs(f.get_forces() - p["forces"]).ravel() for f, p in zip(frames, preds)]).mean()
                 * 1e3)


def score_md(frames, preds) -> dict:
    n = np.array([len(f) for f in frames])
    e = np.array([f.get_potential_energy() - p["energy"] for f, p in zip(frames, preds)]) / n
    return {"n": len(frames), "energy_mae_meV_atom": float(np.abs(e).mean() * 1e3),
            "forces_mae_meV_A": forces_mae(frames, preds)}


def score_neb(frames, preds) -> dict:
    roles = {f.info["role"]: (f.get_potential_energy(), p["energy"]) for f, p in zip(frames, preds)}
    if set(roles) != {"initial", "climbing_image"}:
        return {"n": len(frames)}
    (d0, m0), (d1, m1) = (tuple(map(float, roles[r])) for r in ("initial", "climbing_image"))  # model: float32
    return {"barrier_dft_eV": d1 - d0, "barrier_model_eV": m1 - m0, "barrier_error_eV": (m1 - m0) - (d1 - d0)}


def score_relax() -> dict:
    """The DFT relaxations (part ``relax``, DFT only): per structure steps, energy change and largest displacement
    from the single point's structure (meV/fu, Å), and E_f of the x = 1/2 ordering both ways (meV/fu)."""
    import ase.io

    path = INPUTS / "relax.extxyz"
    out, energies = {}, {}
    for frame in ase.io.read(path, ":") if path.is_file() else []:
        folder, name = RAW / "relax" / frame.info["name"], frame.info["name"]
        n_fu = int((frame.numbers == 15).sum())
        if not (folder / "result.json").is_file():
            progress = folder / "progress.json"
            out[name] = {"finished": False, **(json.loads(progress.read_text()) if progress.is_file() else {})}
            continue
        result = json.loads((folder / "result.json").read_text())
        shift = np.linalg.norm(np.array(result["positions"]) - frame.positions, axis=1)
        energies[frame.info["x_li"]] = (frame.info["single_point_energy"] / n_fu, result["energy"] / n_fu)
        out[name] = {"finished": True, "converged": result["converged"], "steps": result["steps"],
                     "core_hours": result["seconds"] / 3600, "fmax_eV_A": result["fmax_eV_A"],
                     "energy_change_meV_fu": (result["energy"] - frame.info["single_point_energy"]) / n_fu * 1e3,
                     "max_displacement_A": float(shift.max())}
    if set(energies) == {0.0, 0.5, 1.0}:
        for k, way in enumerate(("single_point", "relaxed")):
            e = {x: v[k] for x, v in energies.items()}
            out[f"ef_half_{way}_meV_fu"] = (e[0.5] - (e[0.0] + e[1.0]) / 2) * 1e3
    return out


SCORES = {"hull_fe": score_hull, "hull_fe_co": score_hull, "hull_mnfe": score_hull, "ev": score_ev, "md": score_md,
          "neb": score_neb}


def target_checks(scores: dict) -> list[tuple[str, float | None, str, bool | None]]:
    """The default-model targets of issue 30 (section 3) that the benchmark measures: (target, value, limit,
    met); value and met None where the part has no labels yet."""
    parts = scores["parts"]
    md, hull, ev, neb = (parts.get(k, {}) for k in ("md", "hull_fe", "ev", "neb"))
    half = [h for h in (hull,) if "lowest_half_dft_meV_fu" in h]
    sign = (None if not half else
            float(np.sign(hull["lowest_half_model_meV_fu"]) == np.sign(hull["lowest_half_dft_meV_fu"])))
    moduli = [abs(v["B_error_percent"]) for v in ev.values() if isinstance(v, dict) and "B_error_percent" in v]
    checks = [("MD snapshots: force MAE (meV/Å)", md.get("forces_mae_meV_A"), "≤ 50", lambda v: v <= 50),
              ("MD snapshots: energy MAE (meV/atom)", md.get("energy_mae_meV_atom"), "≤ 3", lambda v: v <= 3),
              ("hull orderings: formation-energy MAE (meV/fu)", hull.get("ef_mae_meV_fu"), "≤ 10", lambda v: v <= 10),
              ("hull: same on-hull set as DFT (1 = yes)",
               None if "on_hull_dft" not in hull else float(hull["on_hull_dft"] == hull["on_hull_model"]), "= 1",
               lambda v: v == 1),
              ("lowest x = 1/2 ordering: same sign of E_f as DFT (1 = yes)", sign, "= 1", lambda v: v == 1),
              ("[010] barrier along the path: abs. error (eV)",
               None if "barrier_error_eV" not in neb else abs(neb["barrier_error_eV"]), "≤ 0.05", lambda v: v <= 0.05),
              ("bulk moduli: largest abs. error (%)", max(moduli) if moduli else None, "≤ 10", lambda v: v <= 10),
              ("relaxed orderings charge-balanced by the model's moments (fraction)",
               hull.get("charge_balanced_model"), "≥ 0.95", lambda v: v >= 0.95)]
    return [(name, value, limit, None if value is None else bool(ok(value))) for name, value, limit, ok in checks]


def value_cell(value) -> str:
    """A table cell: 3 significant figures, or '–' where nothing was measured."""
    return "–" if value is None else f"{value:.3g}"


def targets_table(columns: dict[str, list]) -> list[str]:
    """Markdown rows of ``target_checks`` per model column (name -> checks): target, limit, each column's value
    (✗ = missed)."""
    names = list(columns)
    lines = ["| target | limit | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for k, (target, _, limit, _) in enumerate(columns[names[0]]):
        cells = [value_cell(columns[n][k][1]) + (" ✗" if columns[n][k][3] is False else "") for n in names]
        lines.append(f"| {target} | {limit} | " + " | ".join(cells) + " |")
    return lines


def evaluate(model_name: str = MODEL, fidelity: str = FIDELITY) -> dict:
    """Scores of a model on every part labelled so far, with the force MAE over each part's frames."""
    from mf_calc import load_model

    model = load_model(model_name)
    scores = {}
    for part in PARTS:
        frames = labelled(part)
        if part == "hull_fe":
            frames = lowest_solutions(frames, labelled("hull_fe_co"))
        if not frames:
            continue
        preds = predictions(model, fidelity, frames)
        scores[part] = SCORES[part](frames, preds) | {"n_frames": len(frames),
                                                      "forces_mae_meV_A": forces_mae(frames, preds)}
    return {"model": model_name, "fidelity": fidelity, "parts": scores}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--fidelity", default=FIDELITY)
    ap.add_argument("--out", default=None, help="JSON file (default: workflow_bench/scores_MODEL.json)")
    args = ap.parse_args(argv)
    scores = evaluate(args.model, args.fidelity)
    out = Path(args.out or BENCH / f"scores_{Path(args.model).name}.json")
    out.write_text(json.dumps(scores, indent=1) + "\n")
    print(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
