"""What the scripts that train a shipped model share: staged training with ``mf-calc train`` (every stage
resumable, a finished one skipped), the errors of a model on labelled frames, and the Markdown pieces of a
model card (error table, targets). Used by ``ship_model.py`` (teacher labels) and ``ship_dft_model.py``
(real DFT)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from mf_calc.train.metrics import REPORT

#: target letter -> (name, unit) of the reported errors (MAE; energy per atom, forces per component)
LABELS = {letter: (name, unit) for letter, (name, unit, _) in REPORT.items()}


def stage_dir(run_dir: Path, k: int) -> Path:
    return Path(run_dir) / f"stage{k}"


def stage_recipes(base: dict, stages: Sequence[dict], run_dir: Path, device: str, epochs: int | None = None) -> list[dict]:
    """TrainConfig fields of each stage: ``base`` updated by the stage's own fields; stage 1 starts from
    ``base["init"]`` (and adds ``base["new_fidelities"]``, if any), every later stage from the previous stage's
    best model. ``epochs`` overrides every stage's epochs."""
    recipes = []
    for k, stage in enumerate(stages, 1):
        recipe = {**base, **stage, "device": device, **({"epochs": epochs} if epochs else {})}
        if k > 1:
            recipe["init"] = str(stage_dir(run_dir, k - 1) / "best")
            recipe.pop("new_fidelities", None)  # the previous stage's model has them already
        recipes.append(recipe)
    return recipes


def train_stages(run_dir: Path, recipes: Sequence[dict], data: Sequence[str]) -> None:
    """Run (or resume) ``mf-calc train`` stage by stage on ``data`` (``FILE:FIDELITY`` arguments); every
    stage folder keeps its finished epochs and a finished stage is skipped."""
    from mf_calc.cli import main as cli
    from mf_calc.model.io import is_model_folder

    for k, recipe in enumerate(recipes, 1):
        out = stage_dir(run_dir, k)
        if is_model_folder(out / "final"):
            print(f"stage {k}: finished before ({out})")
            continue
        out.mkdir(parents=True, exist_ok=True)
        config = out / "recipe.json"
        config.write_text(json.dumps(recipe, indent=2) + "\n")
        args = ["train", "--config", str(config), "--out", str(out)]
        for spec in data:
            args += ["--data", spec]
        if (out / "checkpoint.pt").is_file():
            args.append("--resume")
        code = cli(args)
        if code:
            raise SystemExit(code)


def finished_stages(run_dir: Path, n_stages: int) -> list[tuple[dict, list[dict]]]:
    """(train_config.json, history.json) of stages 1..n_stages, in order."""
    return [(json.loads((stage_dir(run_dir, k) / "train_config.json").read_text()),
             json.loads((stage_dir(run_dir, k) / "history.json").read_text())) for k in range(1, n_stages + 1)]


def errors(model, frames: list, fidelity: str) -> dict:
    """MAE/RMSE of ``model`` at ``fidelity`` on ``frames``, their labels taken as that fidelity's."""
    from mf_calc.train.dataset import FrameDataset
    from mf_calc.train.metrics import evaluate

    data = FrameDataset([replace(f, fidelity=fidelity) for f in frames])
    return {"frames": len(data), **evaluate(model, data.graphs(model))[fidelity]}


def table(results: dict) -> str:
    """Markdown table of MAE (RMSE) per evaluation row (``{label: {"fidelity", "frames", errors...}}``)."""
    head = "| frames | model fidelity | n | " + " | ".join(f"{n} MAE (RMSE), {u}" for n, u in LABELS.values()) + " |"
    lines = [head, "|" + "---|" * (3 + len(LABELS))]
    for label, r in results.items():
        cells = [f"{r[f'{t}_mae']:.4g} ({r[f'{t}_rmse']:.4g})" if r.get(f"{t}_n") else "–" for t in LABELS]
        lines.append(f"| {label} | {r['fidelity']} | {r['frames']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_lines(test: dict, targets: dict[str, float]) -> list[str]:
    """One line per target (letter -> largest MAE allowed): measured MAE, target, met or not; a target whose
    labels the frames lack is said to be unmeasured."""
    out = []
    for t, limit in targets.items():
        name, unit = LABELS[t]
        if not test.get(f"{t}_n"):
            out.append(f"- {name}: not measured (the frames carry no {name} labels; target ≤ {limit:g} {unit})")
            continue
        value = test[f"{t}_mae"]
        out.append(f"- {name}: {value:.4g} {unit} (target ≤ {limit:g}) — {'met' if value <= limit else '**not met**'}")
    return out
