"""Train, evaluate and install the shipped model ``lmfp-mf`` (``mf_calc/pretrained/lmfp-mf``).

    python benchmarks/ship_model.py [--run-dir benchmarks/runs/lmfp-mf] [--stages 4] [--epochs E] [--threads 2]
        [--device auto] [--skip-train] [--install]

1. Train (``mf-calc train`` with the recipe below, stage by stage in ``--run-dir/stage<k>``; an
   interrupted stage resumes, a finished one is skipped): warm start from CHGNet 0.3.0, modules EMRC,
   fidelities pbe_u → r2scan, on the training splits of the teacher-labelled LMFP benchmark
   (``benchmarks/data``: all pbe_u train + all r2scan train frames; 5 % of each held out to pick the best
   epoch). Stage 1: 2 epochs, cosine from lr 1e-3. Stage 2 continues from stage 1's best model with a
   second cosine from lr 1e-3 over 6 epochs (a warm restart). Stage 3 continues from stage 2's best with
   5 epochs from lr 5e-4 and a Huber δ of 0.01 instead of 0.1 (nearly an L1 loss, which targets the MAE).
   Stage 4 continues from stage 3's best with 7 epochs from lr 1e-3, δ 0.01, on all r2scan frames but a
   fresh random 30 % of the pbe_u frames each epoch (``fidelity_fraction``): more r2scan steps per hour,
   while pbe_u stays anchored; its best epoch is what ships. On 2 CPU threads an epoch of stages 1-3
   takes ~20 min and one of stage 4 ~14 min, so the recipe runs in ~6 h; ``--device cuda`` is much faster.
2. Evaluate the best-epoch model on frames it never saw: the r2scan test split at fidelity ``r2scan``
   (checked against the issue's targets), and the 200 paired pbe_u frames at fidelity ``pbe_u`` (their labels
   are CHGNet 0.3.0's, so this is the deviation from CHGNet 0.3.0). Reference rows: CHGNet 0.3.0 itself on
   the r2scan test split (its composition model refitted on the r2scan train energies, so the energy MAE is
   not just the functional's offset).
3. ``--install``: copy the model to ``mf_calc/pretrained/lmfp-mf`` with its errors in the metadata and a
   ``MODEL_CARD.md``.

Labels come from teacher models (CHGNet 0.3.0 = pbe_u, CHGNet r2scan = r2scan), not from DFT.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from shipping import errors, finished_stages, stage_dir, stage_recipes, table, target_lines, train_stages

from mf_calc.atomic import write_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
INSTALL_DIR = ROOT / "mf_calc" / "pretrained" / "lmfp-mf"
NAME = "lmfp-mf"
TRAIN_FILES = {"pbe_u": "lmfp_pbe_u_train.extxyz.gz", "r2scan": "lmfp_r2scan_train.extxyz.gz"}
EVAL_SETS = (  # (label, file, fidelity the labels and the prediction are at)
    ("r2scan test split", "lmfp_r2scan_test.extxyz.gz", "r2scan"),
    ("paired pbe_u frames (held out)", "lmfp_paired_pbe_u.extxyz.gz", "pbe_u"),
)
#: The training recipe (TrainConfig fields) shared by all stages, and what each stage changes.
RECIPE = {"init": "chgnet-0.3.0", "modules": "EMRC", "fidelities": ["pbe_u", "r2scan"], "batch_size": 4,
          "val_fraction": 0.05, "seed": 0}
STAGES = ({"epochs": 2, "lr": 1e-3}, {"epochs": 6, "lr": 1e-3}, {"epochs": 5, "lr": 5e-4, "huber_delta": 0.01},
          {"epochs": 7, "lr": 1e-3, "huber_delta": 0.01, "fidelity_fraction": {"pbe_u": 0.3}})
SHIPPED_STAGES = 4  # the shipped model is stage 4's best
#: The issue's targets on the r2scan test split at fidelity r2scan (MAE; meV/atom, meV/Å, GPa, μB).
TARGETS = {"e": 5.0, "f": 40.0, "s": 0.2, "m": 0.05}
TEACHERS = "**Labels come from teacher models (CHGNet 0.3.0 = `pbe_u`, CHGNet r2scan = `r2scan`), not from DFT.**"


def stage_recipe(run_dir: Path, k: int, device: str, epochs: int | None = None) -> dict:
    """TrainConfig fields of stage ``k`` (1-based): stage 1 starts from CHGNet 0.3.0, later ones from
    the previous stage's best model. ``epochs`` overrides the stage's epochs."""
    return stage_recipes(RECIPE, STAGES, run_dir, device, epochs)[k - 1]


def train(run_dir: Path, n_stages: int, device: str, epochs: int | None = None) -> None:
    """Run (or resume) ``mf-calc train`` stage by stage; every stage folder keeps its finished epochs."""
    recipes = stage_recipes(RECIPE, STAGES[:n_stages], run_dir, device, epochs)
    train_stages(run_dir, recipes, [f"{DATA / name}:{fidelity}" for fidelity, name in TRAIN_FILES.items()])


def read(file: str, fidelity: str) -> list:
    """Frames of a benchmark file, their labels taken at ``fidelity``."""
    from mf_calc.data import read_frames

    return read_frames(DATA / file, fidelity=fidelity)


def reference_chgnet(test_frames: list) -> dict:
    """CHGNet 0.3.0 on the r2scan test split, its composition model refitted on the r2scan train energies."""
    from mf_calc.hub import load_model

    model = load_model("chgnet-0.3.0")
    train = read(TRAIN_FILES["r2scan"], "pbe_u")
    model.fit_composition([f.atoms for f in train], [f.energy for f in train], "pbe_u", residual=True)
    return errors(model, test_frames, "pbe_u")


def evaluate_all(model) -> dict:
    """Errors of the model on every evaluation set, on the test split's MD and rattled frames apart (data
    card: ``info['kind']``), plus the CHGNet 0.3.0 reference. Each file is read once."""
    frames = {label: read(file, fid) for label, file, fid in EVAL_SETS}
    results = {label: {"file": file, "fidelity": fid, **errors(model, frames[label], fid)}
               for label, file, fid in EVAL_SETS}
    test_label, test_file, test_fid = EVAL_SETS[0]
    test = frames[test_label]
    for kind, what in (("md", "MD snapshots"), ("rattle", "rattled cells")):
        subset = [f for f in test if f.atoms.info.get("kind") == kind]
        results[f"{test_label}: {what} only"] = {"file": test_file, "fidelity": test_fid,
                                                 **errors(model, subset, test_fid)}
    results["CHGNet 0.3.0 on the r2scan test split (composition refitted)"] = {
        "file": test_file, "fidelity": "pbe_u (CHGNet 0.3.0)", **reference_chgnet(test)}
    return results


def model_card(model, results: dict, stages: list[tuple[dict, list[dict]]]) -> str:
    """MODEL_CARD.md text: what the model is, how it was trained, its errors, its limits.
    ``stages``: (train_config.json, history.json) of each training stage, in order."""
    test = results[EVAL_SETS[0][0]]
    first = stages[0][0]
    fids = first["fidelities"]
    rows = "\n".join(
        f"| {k} | {h['epoch']} | {h['train_loss']:.4g} | " + " | ".join(
            f"{h['val'][f][f'{t}_mae']:.3g}" for f in fids for t in "efs") + " |"
        for k, (_, history) in enumerate(stages, 1) for h in history if h.get("val"))
    val_head = " | ".join(f"{f} {t.upper()}" for f in fids for t in "efs")
    schedule = "; ".join(f"stage {k}: {cfg['epochs']} epoch(s), cosine from lr {cfg['lr']:g} to 1 % of it, "
                         f"Huber δ {cfg['huber_delta']:g}"
                         + "".join(f", a fresh random {share:.0%} of the {name} frames each epoch"
                                   for name, share in cfg.get("fidelity_fraction", {}).items())
                         + (" (from CHGNet 0.3.0)" if k == 1 else f" (from stage {k - 1}'s best model)")
                         for k, (cfg, _) in enumerate(stages, 1))
    trained = model.metadata.get("trained", {})
    device = f" on {trained['device']}" if trained.get("device") else ""
    return f"""# Model card: `{NAME}`

{TEACHERS}

MF-CHGNet for Li_xMn_yFe_(1-y)PO4 (LMFP) olivine cathodes with two fidelities, `pbe_u` (low) and `r2scan`
(high, the default of `MFCalculator`). Load it with `mf_calc.load_model()` (the default) or
`MFCalculator(fidelity="r2scan" | "pbe_u")`.

## Recipe
- Warm start from pretrained CHGNet 0.3.0 (chgnet wheel), fidelity-dependent modules **EMRC**
  (embedding, message passing, readout, composition), fidelities `pbe_u` → `r2scan`.
- Data (`benchmarks/data`, see its DATA_CARD.md): {', '.join(f'`{n}` ({f})' for f, n in TRAIN_FILES.items())};
  {first['val_fraction']:.0%} of each fidelity held out to pick the best epoch. The r2scan test split and the
  paired frames were never trained on. pbe_u frames carry no magmoms; the magmom head learns them from r2scan.
- Optimisation: Adam, batch {first['batch_size']}, per-step cosine schedules — {schedule}. Huber loss (δ per stage, in
  the target's units) on energy/atom, forces, stress (GPa), magmoms, weights 1 : 1 : 0.1 : 0.1; per-fidelity
  composition models
  fitted by least squares before stage 1; seed {first['seed']}; float32{device}. Shipped: the best
  epoch of the last stage by r2scan validation error (epoch {trained.get('epochs', '?')} of {trained.get('of_epochs', '?')}).
- Reproduce: `python benchmarks/ship_model.py --stages {len(stages)} --install` (an interrupted stage resumes).

## Errors on frames not trained on (MAE, RMSE in brackets)
{table(results)}

Forces per Cartesian component; stress per 3×3 component. The `pbe_u` row measures how far the `pbe_u`
fidelity has moved from CHGNet 0.3.0 (its labels are CHGNet 0.3.0's).

Targets of the issue (r2scan test split, fidelity r2scan):
{chr(10).join(target_lines(test, TARGETS))}

## Validation errors per epoch (MAE: meV/atom, meV/Å, GPa)
The train loss is each stage's own (weighted Huber); a stage with a smaller δ has smaller values, so compare
it within a stage only.

| stage | epoch | train loss | {val_head} |
|{'---|' * (3 + 3 * len(fids))}
{rows}

## Limits
- Trained on 48-56-atom 1×1×2 LMFP cells (rattled, strained, 300-1000 K MD snapshots) labelled by teacher
  models; errors against real r2SCAN DFT are at least those of CHGNet r2scan itself.
- Other chemistries fall back on what CHGNet 0.3.0 knew; the r2scan fidelity is only validated on LMFP.
- Magmoms at either fidelity follow the r2scan labels (the pbe_u data has none), so oxidation states use
  the `r2scan` magmom scale (metadata `magmom_scale`; see `mf_calc.workflows.oxidation`).
- Weights are float32 (`MFCHGNet.double()` for finite-difference work).
- The shortest distance of each element pair in the training frames is in the metadata
  (`shortest_training_distances_A`); `MFCalculator` warns (`ExtrapolationWarning`) at a closer contact. The
  rattled teacher frames (σ up to 0.12 Å) reach O-P 0.97 Å, so the check only catches gross extrapolation.
- A stage that samples only part of the pbe_u frames per epoch (`fidelity_fraction`) favours r2scan: the
  pbe_u validation force error rises during it (table above), i.e. `pbe_u` moves away from CHGNet 0.3.0.
- LiFePO4 has soft optical modes (lowest Γ optical 1.0 THz at `r2scan`, float64, fmax 5e-4; teacher 0.64 THz).
  Relax tightly and use float64 for phonons (`mf-calc phonons` does both by default): the stage-2 model showed
  spurious imaginary branches of ~0.2 THz after fmax 0.002 or in float32 (see `md_examples/04_lfp_phonons.py`).
"""


def install(best: Path, results: dict, stages: list[tuple[dict, list[dict]]]) -> Path:
    """Copy the best model into the package with its errors in the metadata and a model card."""
    from mf_calc.atomic import json_safe
    from mf_calc.model.mfchgnet import MFCHGNet

    model = MFCHGNet.load(best)
    model.metadata.update({
        "name": NAME,
        "description": "MF-CHGNet (EMRC) for LMFP, warm start of CHGNet 0.3.0, fidelities pbe_u and r2scan; "
                       "trained on teacher labels (CHGNet 0.3.0 / CHGNet r2scan), see MODEL_CARD.md",
        "magmom_scale": "r2scan",  # its magmom head learned from r2scan labels only (pbe_u frames have none)
        "recipe": [cfg for cfg, _ in stages], "test_errors": json_safe(results), "written": time.strftime("%Y-%m-%d"),
    })
    model.save(INSTALL_DIR)
    (INSTALL_DIR / "MODEL_CARD.md").write_text(model_card(model, results, stages))
    return INSTALL_DIR


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/ship_model.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--run-dir", default=str(HERE / "runs" / NAME), help="training folder (default benchmarks/runs/lmfp-mf)")
    p.add_argument("--stages", type=int, default=SHIPPED_STAGES, choices=range(1, len(STAGES) + 1),
                   help=f"training stages to run; the model is the last one's best (default {SHIPPED_STAGES}, "
                        "what ships)")
    recipe_epochs = ", ".join(str(s["epochs"]) for s in STAGES)
    p.add_argument("--epochs", type=int, help=f"epochs of every stage run (default: the recipe's, {recipe_epochs}); use a "
                                               "new --run-dir, e.g. --stages 1 --epochs 60 on a GPU for the paper's length")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int,
                   help="torch intra-op threads (on an idle 2-core machine 2 train 1.8x faster than 1)")
    p.add_argument("--skip-train", action="store_true", help="evaluate (and install) the run's best model as it is")
    p.add_argument("--install", action="store_true", help=f"copy the model into {INSTALL_DIR.relative_to(ROOT)}")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    if not args.skip_train:
        train(run_dir, args.stages, args.device, args.epochs)
    from mf_calc.model.io import is_model_folder
    from mf_calc.model.mfchgnet import MFCHGNet

    best = stage_dir(run_dir, args.stages) / "best"
    if not is_model_folder(best):
        raise SystemExit(f"no trained model in {best}: run without --skip-train first")
    model = MFCHGNet.load(best).eval()
    stages = finished_stages(run_dir, args.stages)
    results = evaluate_all(model)
    write_json(run_dir / "test_errors.json", results)
    print(TEACHERS.strip("*"))
    print(table(results))
    print("\n".join(target_lines(results[EVAL_SETS[0][0]], TARGETS)))
    if args.install:
        print(f"installed {install(best, results, stages)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
