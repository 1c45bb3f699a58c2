"""Run files, each written atomically (temporary file + rename) so an interrupted write never leaves
a broken file: ``checkpoint.pt`` (everything to resume), ``history.json`` and ``metrics.csv``.

Checkpoints hold only tensors, numbers, strings, lists and dicts, and are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from mf_calc.atomic import atomic_write, write_json

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
METRICS_CSV = "metrics.csv"
TRAIN_CONFIG = "train_config.json"
FORMAT = "mf_calc.train.checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(out_dir: Path, state: dict) -> None:
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    atomic_write(Path(out_dir) / CHECKPOINT, lambda fh: torch.save(payload, fh), binary=True)


def load_checkpoint(out_dir: Path) -> dict | None:
    """The checkpoint in ``out_dir``, or None when there is none."""
    path = Path(out_dir) / CHECKPOINT
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT or state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a checkpoint of this mf_calc version")
    return state


def training_finished(out_dir) -> bool:
    """Whether the run in ``out_dir`` trained all its epochs: ``best/`` is written whenever an epoch improves, so a
    run killed after epoch 2 has one too; the history's length tells."""
    out_dir = Path(out_dir)
    paths = [out_dir / name for name in (TRAIN_CONFIG, HISTORY, "best/config.json")]
    if not all(path.is_file() for path in paths):
        return False
    epochs = json.loads(paths[0].read_text())["epochs"]
    return len(json.loads(paths[1].read_text())) >= epochs


def _flat(row: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def write_history(out_dir: Path, history: list[dict]) -> None:
    """history.json (one dict per epoch) and metrics.csv (the same, flattened: ``val/<fidelity>/e_mae``)."""
    out_dir = Path(out_dir)
    write_json(out_dir / HISTORY, history, indent=1)
    rows = [_flat(r) for r in history]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out_dir / METRICS_CSV, lambda fh: fh.write(text.getvalue()))
