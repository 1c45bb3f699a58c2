"""The recipe logic of the ship scripts (benchmarks/shipping.py, ship_dft_model.py); their training runs are
benchmarks, not tests."""


import pytest
import ship_dft_model
from shipping import stage_recipes, target_lines


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


def test_missed_targets_name_each_target_above_its_limit_and_the_force_gain():
    def rows(e, f, chgnet_f):
        return {"lmfp-dft @ gpaw_afm": {"e_mae": e, "e_n": 30, "f_mae": f, "f_n": 900, "m_mae": 0.02, "m_n": 900,
                                        "s_n": 0}, "CHGNet 0.3.0 @ pbe_u (composition refitted)": {"f_mae": chgnet_f}}
    assert ship_dft_model.missed_targets(rows(4.0, 40.0, 100.0)) == []
    assert ship_dft_model.missed_targets(rows(9.9, 126.0, 269.0)) == ["energy", "forces"]  # stress unmeasured
    assert ship_dft_model.missed_targets(rows(4.0, 49.0, 90.0)) == ["forces 2x better than CHGNet 0.3.0"]


def test_every_candidate_holds_out_the_same_gpaw_afm_frames():
    """Every candidate holds out the same gpaw_afm frames, whatever other fidelities its data has and in any
    order (each fidelity draws its held-out frames from its own seeded stream)."""
    from ase import Atoms

    from mf_calc.data import Frame
    from mf_calc.train.dataset import FrameDataset

    dft = ship_dft_model.DFT_DATA
    assert dft[0].endswith(f":{ship_dft_model.HIGH}")
    for _, _, data in ship_dft_model.CANDIDATES.values():  # the real DFT (or its gpaw_afm part) first, in that order
        assert data[:len(dft)] == dft[:len(data)]

    def frames(fidelity, n):
        return [Frame(atoms=Atoms("Li", cell=[3.0] * 3, pbc=True), fidelity=fidelity, energy=-1.0 * k, forces=None,
                      stress=None, magmoms=None, source="test") for k in range(n)]

    high, low = frames("high", 12), frames("low", 12)

    def held_out(data):
        _, val = FrameDataset(data).split(0.25, seed=0)
        return [id(f.atoms) for f in val.frames if f.fidelity == "high"]

    alone = held_out(high)
    assert len(alone) == 3 and held_out(high + low) == alone and held_out(low + high) == alone


def test_dft_baselines_force_scale_and_composition_span():
    """force_scale finds how much stiffer the labels are than the model (here 1.3 × its own forces); spans() refuses a
    refit whose training compositions do not determine the test ones."""
    from conftest import tiny_model
    from dft_baselines import force_scale, spans

    from mf_calc import lmfp
    from mf_calc.data import Frame

    model = tiny_model()
    cells = [lmfp(x_li=x, y_mn=0.5, supercell=(1, 1, 1), seed=k) for k, x in enumerate((1.0, 0.5, 0.0))]
    for k, atoms in enumerate(cells):
        atoms.rattle(0.05, seed=k)
    own = model.predict(cells, "high", task="f")
    frames = [Frame(atoms=a, fidelity="high", energy=None, forces=1.3 * p["forces"], stress=None, magmoms=None,
                    source="test") for a, p in zip(cells, own)]
    assert force_scale(model, "high", frames) == pytest.approx(1.3, rel=1e-6)
    assert spans(frames[:2], frames[2:]) and not spans(frames[:1], frames[1:])


def test_dft_sitting_stops_at_the_nearest_wall_clock_time():
    import datetime

    from mf_calc.label.run import hours_until

    now = datetime.datetime(2026, 12, 3, 12, 30)
    assert hours_until("14:15", now) == pytest.approx(1.75)
    assert hours_until("12:00", now) == 0.0  # just passed: start nothing more (not tomorrow's 12:00)
    assert hours_until("02:00", datetime.datetime(2026, 12, 3, 23, 0)) == pytest.approx(3.0)  # after midnight
    assert hours_until("23:00", datetime.datetime(2026, 12, 3, 1, 0)) == 0.0  # last night's
    with pytest.raises(ValueError, match="HH:MM"):
        hours_until("2pm", now)
