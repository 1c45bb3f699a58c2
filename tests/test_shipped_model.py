"""The shipped default model ``lmfp-mf``: what it is, and that its weights predict each fidelity's labels.

Accuracy is spot-checked on a few frames it never trained on (r2scan test split, held-out paired pbe_u
frames); the full-split figures are in ``mf_calc/pretrained/lmfp-mf/MODEL_CARD.md``. The bounds are about
twice the full-split MAEs, so a wrong, untrained or fidelity-swapped model fails them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mf_calc import MFCalculator, load_model
from mf_calc.data import read_frames
from mf_calc.hub import DEFAULT_MODEL, PRETRAINED_DIR
from mf_calc.train.dataset import FrameDataset
from mf_calc.train.metrics import evaluate

DATA = Path(__file__).resolve().parents[1] / "benchmarks" / "data"
N_FRAMES = 6
#: MAE bounds on the spot-check frames: energy meV/atom, forces meV/Å.
BOUNDS = {"r2scan": (2.0, 65.0), "pbe_u": (2.0, 80.0)}  # full splits: 0.81 / 32 and 0.90 / 39
FILES = {"r2scan": "lmfp_r2scan_test.extxyz.gz", "pbe_u": "lmfp_paired_pbe_u.extxyz.gz"}


@pytest.fixture(scope="module")
def shipped():
    return load_model()


def test_default_model_is_the_trained_two_fidelity_model(shipped):
    assert DEFAULT_MODEL == "lmfp-mf"
    assert shipped.metadata["name"] == "lmfp-mf"
    assert tuple(shipped.fidelities.names) == ("pbe_u", "r2scan")
    assert shipped.config.modules == "EMRC"
    assert shipped.metadata["recipe"][0]["init"] == "chgnet-0.3.0" and shipped.metadata["magmom_scale"] == "r2scan"
    card = (PRETRAINED_DIR / "lmfp-mf" / "MODEL_CARD.md").read_text()
    assert "teacher models" in card and "r2scan test split" in card
    assert MFCalculator(shipped).fidelity == "r2scan"  # highest fidelity by default


def _errors(model, frames, fidelity):
    """Energy (meV/atom) and force (meV/Å) MAE of the model at ``fidelity``, the labels taken as that fidelity."""
    tagged = FrameDataset([replace(f, fidelity=fidelity) for f in frames])
    report = evaluate(model, tagged.graphs(model), targets="ef", batch_size=N_FRAMES)[fidelity]
    return report["e_mae"], report["f_mae"]


@pytest.mark.parametrize("fidelity", ["r2scan", "pbe_u"])
def test_shipped_model_predicts_its_fidelity_labels(shipped, fidelity, one_thread):
    frames = read_frames(DATA / FILES[fidelity], fidelity=fidelity)[:N_FRAMES]
    e_mae, f_mae = _errors(shipped, frames, fidelity)
    e_max, f_max = BOUNDS[fidelity]
    assert e_mae < e_max and f_mae < f_max, (fidelity, e_mae, f_mae)
    other = "pbe_u" if fidelity == "r2scan" else "r2scan"
    e_other, f_other = _errors(shipped, frames, other)  # the other fidelity is far from these labels
    assert e_other > 20 * e_max and f_other > 2 * f_mae
