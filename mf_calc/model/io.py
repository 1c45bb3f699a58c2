"""Model files: a folder with ``config.json`` and ``weights.pt`` (a plain state dict).

config.json holds the format name and version, the architecture (incl. fidelity names and
modules), metadata and the SHA-256 of the weights, so a truncated or swapped weights file is
caught before it is read. Weights are loaded with ``torch.load(weights_only=True)``: no pickled
objects are ever executed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path

import torch

FORMAT = "mf_calc.MFCHGNet"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"


class ModelFileError(ValueError):
    """A model file that is missing, corrupt, truncated or does not match its config."""


def is_model_folder(path) -> bool:
    """True for a folder written by ``save_model`` (it holds config.json)."""
    return (Path(path) / CONFIG_FILE).is_file()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_model(model, path) -> Path:
    """Write ``model`` to folder ``path``. Returns the folder.

    The folder is written under a temporary name and then swapped in, so an interrupted save
    never leaves a config.json that does not match its weights.
    """
    folder = Path(path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex}"
    tmp.mkdir()  # mkdir, not mkdtemp: the umask's mode, where mkdtemp's 0o700 would hide an installed model
    weights = tmp / WEIGHTS_FILE
    torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, weights)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "metadata": model.metadata,
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": _sha256(weights),
    }
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        folder.replace(old)
        tmp.replace(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.replace(folder)
    return folder


def read_config(path) -> tuple[Path, dict]:
    """Folder and parsed config.json of a model path (the folder or its config.json)."""
    path = Path(path)
    folder = path.parent if path.name == CONFIG_FILE else path
    cfg_file = folder / CONFIG_FILE
    if not cfg_file.is_file():
        raise ModelFileError(f"{folder}: not a model folder (no {CONFIG_FILE})")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{cfg_file}: corrupt model config ({exc})") from exc
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise ModelFileError(f"{cfg_file}: not an mf_calc model config (format != {FORMAT!r})")
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{cfg_file}: model format version {cfg.get('format_version')} is not supported (expected {FORMAT_VERSION})"
        )
    for key in ("config", "weights_file", "weights_sha256"):
        if key not in cfg:
            raise ModelFileError(f"{cfg_file}: model config lacks {key!r}")
    return folder, cfg


def read_model_files(path) -> tuple[Path, dict, dict]:
    """Folder, parsed config.json and the state dict of a model folder, with the weights' checksum checked
    before they are read (``torch.load(weights_only=True)``); ``MFCHGNet.load`` builds the model from them."""
    folder, cfg = read_config(path)
    weights = folder / cfg["weights_file"]
    if not weights.is_file():
        raise ModelFileError(f"{weights}: weights file missing")
    if _sha256(weights) != cfg["weights_sha256"]:
        raise ModelFileError(f"{weights}: weights file is corrupt or truncated (checksum differs from {CONFIG_FILE})")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad archives
        raise ModelFileError(f"{weights}: cannot read weights ({exc})") from exc
    return folder, cfg, state
