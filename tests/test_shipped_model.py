"""The shipped models ``lmfp-mf`` (the default), ``lmfp-dft``, ``lmfp-dft-al`` and ``lmfp-dft-al-mf`` (real DFT):
what they are, and that their weights predict each fidelity's labels.

Accuracy is spot-checked on a few frames it never trained on (r2scan test split, held-out paired pbe_u
frames); the full-split figures are in ``mf_calc/pretrained/lmfp-mf/MODEL_CARD.md``. The bounds are about
twice the full-split MAEs, so a wrong, untrained or fidelity-swapped model fails them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import ase.io
import numpy as np
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


DFT = DATA / "dft"
#: lmfp-dft spot-check bounds on the first gpaw_afm test frames (there 15 meV/atom, 80 meV/Å, 0.023 μB; full
#: split 9.9 / 126 / 0.025 in its MODEL_CARD.md)
DFT_BOUNDS = {"e_mae": 25.0, "f_mae": 130.0, "m_mae": 0.04}


def test_dft_model_is_fine_tuned_on_gpaw_afm_and_not_the_default():
    model = load_model("lmfp-dft")
    assert tuple(model.fidelities.names) == ("gpaw_afm",) and model.metadata["magmom_scale"] == "gpaw_afm"
    assert model.metadata["recipe"][0]["init"] == "chgnet-0.3.0"
    card = (PRETRAINED_DIR / "lmfp-dft" / "MODEL_CARD.md").read_text()
    assert "Trained on real DFT" in card and "**not the default**" in card and DEFAULT_MODEL != "lmfp-dft"
    assert MFCalculator(model).magmom_scale == "gpaw_afm"


def test_dft_model_predicts_unseen_gpaw_afm_frames_better_than_chgnet(one_thread):
    """On test-split frames it never trained on: within the bounds, and forces over 2x closer to the DFT than
    CHGNet 0.3.0's (the issue's force target)."""
    frames = read_frames(DFT / "lmfp_gpaw_afm_test.extxyz.gz", fidelity="gpaw_afm")[:N_FRAMES]
    dft = load_model("lmfp-dft")
    report = evaluate(dft, FrameDataset(frames).graphs(dft), targets="efm", batch_size=N_FRAMES)["gpaw_afm"]
    assert all(report[k] < bound for k, bound in DFT_BOUNDS.items()), report
    _, chgnet_f = _errors(load_model("chgnet-0.3.0"), frames, "pbe_u")
    assert report["f_mae"] < chgnet_f / 2, (report["f_mae"], chgnet_f)


def test_active_learning_model_is_not_the_default_and_fits_dft_energies_better_than_lmfp_dft(one_thread):
    """``lmfp-dft-al`` (issue 30: energy weight 100, the AL labels added): not the default while it misses the
    benchmark targets, and on unseen test frames its energies are over 2x closer to the DFT than ``lmfp-dft``'s
    (there 1.1 against 15.2 meV/atom) at the same force and magmom bounds."""
    card = (PRETRAINED_DIR / "lmfp-dft-al" / "MODEL_CARD.md").read_text()
    assert "**Not the default**" in card and DEFAULT_MODEL != "lmfp-dft-al"
    frames = read_frames(DFT / "lmfp_gpaw_afm_test.extxyz.gz", fidelity="gpaw_afm")[:N_FRAMES]
    reports = {}
    for name in ("lmfp-dft", "lmfp-dft-al"):
        model = load_model(name)
        assert tuple(model.fidelities.names) == ("gpaw_afm",) and model.metadata["magmom_scale"] == "gpaw_afm"
        reports[name] = evaluate(model, FrameDataset(frames).graphs(model), targets="efm", batch_size=N_FRAMES)["gpaw_afm"]
    assert reports["lmfp-dft-al"]["e_mae"] < reports["lmfp-dft"]["e_mae"] / 2, reports
    assert all(reports["lmfp-dft-al"][k] < bound for k, bound in DFT_BOUNDS.items()), reports


def _formation_energies_fe(energies: dict[int, float], frames) -> tuple[np.ndarray, np.ndarray]:
    """x_Li and E_f (eV per formula unit, against the x = 0 and x = 1 cells) of the Li_xFePO4 orderings."""
    x = np.array([a.info["x_li"] for a in frames])
    e = np.array([energies[k] for k in range(len(frames))])
    e0, e1 = e[x == 0].min(), e[x == 1].min()
    return x, (e - (1 - x) * e0 - x * e1) / np.array([a.info["n_fu"] for a in frames])


def test_active_learning_model_phase_separates_li_x_fepo4_like_its_dft(one_thread):
    """The project's PBE+U puts every Li_xFePO4 ordering of the 28-atom cell above the FePO4-LiFePO4 tie line (the
    DFT workflow benchmark's hull orderings, never trained on): ``lmfp-dft-al`` does too, within 25 meV/fu of each,
    while ``lmfp-dft`` holds intermediate orderings on its hull (the error the energy loss weight fixed)."""
    from mf_calc.label.store import LabelStore, record_to_atoms
    from mf_calc.workflows.hull import ON_HULL_TOL, lower_hull

    bench = DFT / "workflow_bench"
    frames = ase.io.read(bench / "inputs" / "hull_fe.extxyz", ":")
    dft = {r["index"]: record_to_atoms(r, "gpaw_afm").get_potential_energy()
           for r in LabelStore(bench / "raw" / "hull_fe").all_records() if r["status"] == "ok"}
    x, ef_dft = _formation_energies_fe(dft, frames)
    assert len(dft) == len(frames) == 7 and (ef_dft[(x > 0) & (x < 1)] > 0.015).all(), ef_dft
    on_hull = {}
    for name in ("lmfp-dft", "lmfp-dft-al"):
        predicted = load_model(name).predict(frames, task="e", batch_size=len(frames))
        _, ef = _formation_energies_fe({k: p["energy"] for k, p in enumerate(predicted)}, frames)
        on_hull[name] = sorted({float(v) for v in x[lower_hull(x, ef)[1] < ON_HULL_TOL]})
        if name == "lmfp-dft-al":
            assert np.abs(ef - ef_dft).max() < 0.025 * 2 and np.abs(ef - ef_dft).mean() < 0.025, (ef, ef_dft)
    assert on_hull == {"lmfp-dft": [0.0, 0.5, 0.75, 1.0], "lmfp-dft-al": [0.0, 1.0]}, on_hull


def test_multi_fidelity_active_learning_model_targets_gpaw_afm_and_keeps_its_low_fidelity(one_thread):
    """``lmfp-dft-al-mf`` (issue 30, section 3: the MF model beside the fine-tuned ``lmfp-dft-al``): fidelities
    gpaw_nonmag -> gpaw_afm, gpaw_afm by default, not the default model; on unseen gpaw_afm test frames within the
    bounds of the DFT models, and its two fidelities predict different energies (the non-spin-polarised DFT lies
    far above the magnetic one)."""
    name = "lmfp-dft-al-mf"
    card = (PRETRAINED_DIR / name / "MODEL_CARD.md").read_text()
    assert "**Not the default**" in card and DEFAULT_MODEL != name
    model = load_model(name)
    assert tuple(model.fidelities.names) == ("gpaw_nonmag", "gpaw_afm") and MFCalculator(model).fidelity == "gpaw_afm"
    frames = read_frames(DFT / "lmfp_gpaw_afm_test.extxyz.gz", fidelity="gpaw_afm")[:N_FRAMES]
    report = evaluate(model, FrameDataset(frames).graphs(model), targets="efm", batch_size=N_FRAMES)["gpaw_afm"]
    assert all(report[k] < bound for k, bound in DFT_BOUNDS.items()), report
    atoms = frames[0].atoms
    energies = {f: MFCalculator(model, fidelity=f).get_potential_energy(atoms) for f in model.fidelities.names}
    assert energies["gpaw_nonmag"] - energies["gpaw_afm"] > 0.05 * len(atoms), energies
