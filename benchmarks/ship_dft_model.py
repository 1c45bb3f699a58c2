"""Train candidate real-DFT models, choose one on validation frames, evaluate it on the gpaw_afm test split,
and install it as ``lmfp-dft`` (issue 13).

    python benchmarks/ship_dft_model.py [--candidates finetune,chgnet,grown] [--run-dir benchmarks/runs/lmfp-dft]
        [--epochs E] [--threads T] [--device auto] [--skip-train] [--install]

Data: the real-DFT files of ``make_dft_data.py --collect`` in ``benchmarks/data/dft``: the ``gpaw_afm`` training
frames and every ``gpaw_nonmag`` frame. The 30-frame ``gpaw_afm`` test split is used for nothing but the final
errors: 15 % of each fidelity's frames (the same gpaw_afm frames for every candidate, with or without the low
fidelity) are held out to pick each run's best epoch and to choose between the candidates.

Candidates (each trained stage by stage into ``--run-dir/CANDIDATE/stage<k>``; an interrupted stage resumes):

    finetune  plain CHGNet 0.3.0 fine-tuned on the gpaw_afm training frames alone (what a user would do without
            this project): a multi-fidelity candidate ships only if it beats this one on validation.
    chgnet  warm start of CHGNet 0.3.0 with fidelities gpaw_nonmag -> gpaw_afm, real DFT only.
    grown   the teacher-trained lmfp-mf (pbe_u -> r2scan) grown to gpaw_nonmag, pbe_u, r2scan, gpaw_afm, the two
            new fidelities starting as exact copies of its pbe_u (PBE+U, like both GPAW fidelities); trained on
            the real DFT and the teacher frames of ``benchmarks/data`` (a fresh random 10 % of each teacher
            fidelity per epoch), so the n_F = 4 model keeps its broader teacher fidelities (the paper's "finer
            fidelity levels").

Recipe of every candidate (modules EMRC, plain for finetune; Adam, batch 4): stage 1, 10 epochs from lr 1e-3
(cosine), Huber δ 0.1; stage 2 continues from stage 1's best with 10 epochs from lr 5e-4 and δ 0.01 (nearly L1,
which targets the MAE).
The chosen candidate has the smallest validation score Σ MAE / target over gpaw_afm energy, forces and magmoms
(the issue's targets below), at the best epoch of its last stage.

Evaluation on the gpaw_afm test split: the chosen model at gpaw_afm, and at each of its other fidelities with that
fidelity's composition model refitted on the gpaw_afm training energies (as for the baselines); every other
candidate at gpaw_afm; CHGNet 0.3.0, CHGNet r2scan and lmfp-mf as in ``dft_baselines.py``. Targets (MAE): energy
5 meV/atom, forces 50 meV/Å, stress 0.3 GPa (gpaw_afm labels no stress: not measured), magmoms 0.05 μB, and forces
at least 2x better than CHGNet 0.3.0 on the same frames. ``--install`` copies the chosen model to
``mf_calc/pretrained/lmfp-dft`` with its errors in the metadata and a ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dft_baselines import MODELS as BASELINES
from dft_baselines import errors as baseline_errors
from shipping import LABELS, errors, finished_stages, stage_dir, stage_recipes, table, target_lines, train_stages

from mf_calc.atomic import json_safe, write_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DFT = HERE / "data" / "dft"
TEACHER = HERE / "data"
NAME = "lmfp-dft"
INSTALL_DIR = ROOT / "mf_calc" / "pretrained" / NAME
LOW, HIGH = "gpaw_nonmag", "gpaw_afm"
#: every candidate is chosen on the same gpaw_afm frames: the split draws each fidelity's held-out configurations
#: from its own seeded stream, whatever other fidelities the data has
DFT_DATA = [f"{DFT / 'lmfp_gpaw_afm_train.extxyz.gz'}:{HIGH}", f"{DFT / 'lmfp_gpaw_nonmag.extxyz.gz'}:{LOW}"]
TEST_FILE = DFT / "lmfp_gpaw_afm_test.extxyz.gz"
TEACHER_DATA = [f"{TEACHER / 'lmfp_pbe_u_train.extxyz.gz'}:pbe_u", f"{TEACHER / 'lmfp_r2scan_train.extxyz.gz'}:r2scan"]
SHIPPED = ROOT / "mf_calc" / "pretrained" / "lmfp-mf"
#: candidate -> (what it is, TrainConfig fields of its first stage, data arguments; DFT_DATA's order first)
CANDIDATES = {
    "finetune": ("CHGNet 0.3.0 fine-tuned on gpaw_afm only (plain CHGNet, no low fidelity): what a user would do "
                 "without multi-fidelity training", {"init": "chgnet-0.3.0", "fidelities": [HIGH], "modules": ""},
                 DFT_DATA[:1]),
    "chgnet": ("CHGNet 0.3.0 warm start, fidelities gpaw_nonmag → gpaw_afm, real DFT only",
               {"init": "chgnet-0.3.0", "fidelities": [LOW, HIGH]}, DFT_DATA),
    "grown": ("lmfp-mf grown to gpaw_nonmag, pbe_u, r2scan, gpaw_afm (new ones from its pbe_u), real DFT + teacher "
              "frames (10 % of each teacher fidelity per epoch)",
              {"init": str(SHIPPED), "fidelities": [LOW, "pbe_u", "r2scan", HIGH],
               "new_fidelities": {LOW: "pbe_u", HIGH: "pbe_u"}, "fidelity_fraction": {"pbe_u": 0.1, "r2scan": 0.1}},
              DFT_DATA + TEACHER_DATA),
}
BASE = {"modules": "EMRC", "batch_size": 4, "val_fraction": 0.15, "seed": 0}
STAGES = ({"epochs": 10, "lr": 1e-3, "huber_delta": 0.1}, {"epochs": 10, "lr": 5e-4, "huber_delta": 0.01})
#: the issue's targets on the gpaw_afm test split (MAE; meV/atom, meV/Å, GPa, μB)
TARGETS = {"e": 5.0, "f": 50.0, "s": 0.3, "m": 0.05}
FORCE_GAIN = 2.0  # forces at least this much better than CHGNet 0.3.0


def recipes(candidate: str, run_dir: Path, device: str, epochs: int | None) -> list[dict]:
    _, first, _ = CANDIDATES[candidate]
    return stage_recipes(BASE | first, STAGES, run_dir / candidate, device, epochs)


def validation_score(history: list[dict]) -> tuple[float, dict]:
    """The smallest Σ MAE / target of gpaw_afm energy, forces and magmoms over a stage's epochs, and that epoch's
    gpaw_afm validation errors."""
    rows = [h["val"][HIGH] for h in history if h.get("val") and HIGH in h["val"]]
    if not rows:
        raise SystemExit(f"no {HIGH} validation errors in the history: more {HIGH} training frames are needed")
    scored = [(sum(r[f"{t}_mae"] / TARGETS[t] for t in "efm" if r.get(f"{t}_mae") is not None), r) for r in rows]
    return min(scored, key=lambda pair: pair[0])


def read_test() -> list:
    from mf_calc.data import read_frames

    return read_frames(TEST_FILE, fidelity=HIGH)


def evaluate_chosen(folder: Path, others: dict, test: list) -> dict:
    """Test-split errors: the model in ``folder`` at every fidelity (composition refitted on the gpaw_afm training
    energies where the fidelity is not gpaw_afm), the other candidates' models at gpaw_afm, and the baselines."""
    from mf_calc.data import read_frames
    from mf_calc.model.mfchgnet import MFCHGNet

    train = read_frames(DFT / "lmfp_gpaw_afm_train.extxyz.gz", fidelity=HIGH)
    model = MFCHGNet.load(folder)
    rows = {f"{NAME} @ {HIGH}": {"fidelity": HIGH, **errors(model, test, HIGH)}}
    for fidelity in model.fidelities.names[:-1]:  # each from a fresh copy of the model, as the baselines
        rows[f"{NAME} @ {fidelity} (composition refitted)"] = {
            "fidelity": fidelity, "frames": len(test), **baseline_errors(str(folder), fidelity, train, test)}
    for name, other in others.items():
        rows[f"candidate {name} @ {HIGH}"] = {"fidelity": HIGH, **errors(MFCHGNet.load(other), test, HIGH)}
    for label, name, fidelity in BASELINES:
        rows[f"{label} @ {fidelity} (composition refitted)"] = {
            "fidelity": fidelity, "frames": len(test), **baseline_errors(name, fidelity, train, test)}
    return rows


def force_gain(rows: dict) -> float:
    """How many times smaller the model's test force MAE is than CHGNet 0.3.0's on the same frames."""
    chgnet = next(r for key, r in rows.items() if key.startswith("CHGNet 0.3.0"))
    return chgnet["f_mae"] / rows[f"{NAME} @ {HIGH}"]["f_mae"]


def target_report(rows: dict) -> list[str]:
    test, gain = rows[f"{NAME} @ {HIGH}"], force_gain(rows)
    return target_lines(test, TARGETS) + [
        f"- forces vs CHGNet 0.3.0 on the same frames: {gain:.2f}x better (target ≥ {FORCE_GAIN:g}x) — "
        + ("met" if gain >= FORCE_GAIN else "**not met**")]


def missed_targets(rows: dict) -> list[str]:
    """Names of the measured targets the model misses on the test split (forces vs CHGNet 0.3.0 included)."""
    test = rows[f"{NAME} @ {HIGH}"]
    missed = [LABELS[t][0] for t, limit in TARGETS.items() if test.get(f"{t}_n") and test[f"{t}_mae"] > limit]
    return missed + ([f"forces {FORCE_GAIN:g}x better than CHGNet 0.3.0"] if force_gain(rows) < FORCE_GAIN else [])


def count_frames(path: str) -> int:
    import ase.io

    return len(ase.io.read(path, ":"))


def model_card(chosen: str, scores: dict, rows: dict, stages: list) -> str:
    what, _, data = CANDIDATES[chosen]
    high = f"`{HIGH}` (spin-polarised from the antiferromagnetic start, 600 eV)"
    levels = (f"`{LOW}` (non-spin-polarised, 350 eV) and {high}, the highest fidelity"
              if len(stages[0][0]["fidelities"]) > 1 else f"{high} only")
    modules = stages[0][0]["modules"] or "none (plain CHGNet)"
    choice = "\n".join(f"| {name} | {CANDIDATES[name][0]} | {score:.3f} | {r['e_mae']:.2f} | {r['f_mae']:.1f} | "
                       f"{r['m_mae']:.3f} |" for name, (score, r) in scores.items())
    missed = missed_targets(rows)
    status = ("It meets every measured target of the issue." if not missed else
              f"It misses the issue's targets for {', '.join(missed)}, so it is **not the default** of `load_model()` "
              f"(`lmfp-mf` is); load it by name.")
    schedule = "; ".join(f"stage {k}: {cfg['epochs']} epoch(s), cosine from lr {cfg['lr']:g}, Huber δ {cfg['huber_delta']:g}"
                         for k, (cfg, _) in enumerate(stages, 1))
    return f"""# Model card: `{NAME}`

**Trained on real DFT** (GPAW, PBE+U; benchmarks/data/dft/DATA_CARD.md): {levels}. Load it with
`load_model("{NAME}")` or `MFCalculator(load_model("{NAME}"), fidelity="{HIGH}")`. {status}

## Recipe
- Chosen candidate: **{chosen}**, {what}.
- Data: {', '.join(f'`{Path(file).name}` ({count_frames(file)} {fidelity} frames)' for file, fidelity in
  (d.rsplit(':', 1) for d in data))}; {BASE['val_fraction']:.0%} of each fidelity held out to pick
  the best epoch and the candidate. The {HIGH} test split was never trained on nor used to choose.
- Optimisation: modules {modules}, Adam, batch {BASE['batch_size']}; {schedule}; seed {BASE['seed']}.
- Reproduce: `python benchmarks/ship_dft_model.py --install`.

## Choice between candidates ({HIGH} validation frames, best epoch of the last stage; score Σ MAE / target)
| candidate | what | score | E MAE (meV/atom) | F MAE (meV/Å) | M MAE (μB) |
|---|---|---|---|---|---|
{choice}

## Errors on the {HIGH} test split (MAE, RMSE in brackets)
{table(rows)}

Energies of a fidelity other than {HIGH} need its composition model refitted on {HIGH} training energies (GPAW's
absolute energies have another reference), as for the baselines. Magmoms are compared as magnitudes.

Targets of the issue:
{chr(10).join(target_report(rows))}

## Limits
- Trained on 24-28-atom LMFP olivine cells (the 28-atom cell, delithiated;
  x_Li, y_Mn in steps of 1/4; rattled, strained, 300-1000 K MD snapshots).
- {HIGH} labels have no stress (plane-wave stress at 600 eV is 2.5 GPa off): the stress of this model at {HIGH} is
  the strain derivative of an energy trained on the strained frames' energies and forces, never fitted to a stress.
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/ship_dft_model.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--candidates", default=",".join(CANDIDATES), help=f"comma-separated, of {', '.join(CANDIDATES)}")
    p.add_argument("--run-dir", type=Path, default=HERE / "runs" / NAME, help="training folders")
    p.add_argument("--epochs", type=int, help="epochs of every stage (default: the recipe's); use a new --run-dir")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--skip-train", action="store_true", help="evaluate the candidates' models as they are")
    p.add_argument("--install", action="store_true", help=f"copy the chosen model into {INSTALL_DIR.relative_to(ROOT)}")
    args = p.parse_args(argv)
    names = [c.strip() for c in args.candidates.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown or not names:
        p.error(f"unknown candidate(s) {unknown}; choose from {list(CANDIDATES)}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from mf_calc.model.io import is_model_folder
    from mf_calc.model.mfchgnet import MFCHGNet

    for name in names:
        if not args.skip_train:
            train_stages(args.run_dir / name, recipes(name, args.run_dir, args.device, args.epochs), CANDIDATES[name][2])
        if not is_model_folder(stage_dir(args.run_dir / name, len(STAGES)) / "best"):
            raise SystemExit(f"candidate {name} has no trained model in {args.run_dir / name}: run without --skip-train")
    scores = {name: validation_score(finished_stages(args.run_dir / name, len(STAGES))[-1][1]) for name in names}
    chosen = min(scores, key=lambda name: scores[name][0])
    best = {name: stage_dir(args.run_dir / name, len(STAGES)) / "best" for name in names}
    rows = evaluate_chosen(best[chosen], {n: folder for n, folder in best.items() if n != chosen}, read_test())
    stages = finished_stages(args.run_dir / chosen, len(STAGES))
    write_json(args.run_dir / "test_errors.json", {"chosen": chosen, "validation": scores, "test": rows})
    print(f"chosen: {chosen} (validation scores: {', '.join(f'{n} {s:.3f}' for n, (s, _) in scores.items())})")
    print(table(rows))
    print("\n".join(target_report(rows)))
    if args.install:
        model = MFCHGNet.load(best[chosen])
        model.metadata.update({"name": NAME, "description": f"MF-CHGNet trained on real DFT (GPAW PBE+U), "
                               f"candidate {chosen}: {CANDIDATES[chosen][0]}; see MODEL_CARD.md",
                               "magmom_scale": HIGH, "recipe": [cfg for cfg, _ in stages], "test_errors": json_safe(rows),
                               "written": time.strftime("%Y-%m-%d")})
        model.save(INSTALL_DIR)
        (INSTALL_DIR / "MODEL_CARD.md").write_text(model_card(chosen, scores, rows, stages))
        print(f"installed {INSTALL_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
