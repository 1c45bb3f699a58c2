"""The recipe logic of the ship scripts (benchmarks/shipping.py, ship_dft_model.py); their training runs are
benchmarks, not tests."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import ship_dft_model  # noqa: E402
from shipping import stage_recipes, target_lines  # noqa: E402


def test_later_stages_continue_from_the_previous_best_without_adding_fidelities_again(tmp_path):
    base = {"init": "/models/lmfp-mf", "fidelities": ["a", "b", "new"], "new_fidelities": {"new": "a"}}
    stages = ({"epochs": 3, "lr": 1e-3}, {"epochs": 2, "lr": 5e-4})
    first, second = stage_recipes(base, stages, tmp_path, "cpu", epochs=None)
    assert first["init"] == "/models/lmfp-mf" and first["new_fidelities"] == {"new": "a"} and first["epochs"] == 3
    assert second["init"] == str(tmp_path / "stage1" / "best") and "new_fidelities" not in second
    assert second["lr"] == 5e-4 and second["device"] == "cpu"
    assert all(r["epochs"] == 1 for r in stage_recipes(base, stages, tmp_path, "cpu", epochs=1))


def test_candidate_choice_scores_errors_against_the_targets():
    """Σ MAE / target over gpaw_afm energy, forces, magmoms; the best epoch is the smallest sum."""
    def epoch(e, f, m):
        return {"val": {"gpaw_afm": {"e_mae": e, "f_mae": f, "m_mae": m}, "gpaw_nonmag": {"e_mae": 0.0}}}
    score, row = ship_dft_model.validation_score([epoch(10, 50, 0.05), epoch(5, 100, 0.01), epoch(2.5, 75, 0.025)])
    assert score == pytest.approx(0.5 + 1.5 + 0.5) and row["e_mae"] == 2.5
    with pytest.raises(SystemExit, match="no gpaw_afm validation errors"):
        ship_dft_model.validation_score([{"val": {"gpaw_nonmag": {"e_mae": 1.0}}}])


def test_targets_without_labels_are_reported_unmeasured():
    lines = target_lines({"e_mae": 4.0, "e_n": 3, "s_n": 0}, {"e": 5.0, "s": 0.3})
    assert lines[0].endswith("— met") and "not measured" in lines[1]


def test_every_candidate_holds_out_the_same_dft_frames():
    """Real DFT first in every candidate's data, so the per-fidelity validation split draws the same frames."""
    for _, _, data in ship_dft_model.CANDIDATES.values():
        assert data[:2] == ship_dft_model.DFT_DATA
