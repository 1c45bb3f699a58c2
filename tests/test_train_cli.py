"""``mf-calc train`` / ``mf-calc evaluate`` on tiny extxyz files, and the baselines (single-fidelity,
transfer learning, Δ-learning) on teacher-labelled frames."""

import json

import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from test_train import FIDS, TINY, make_frames

from mf_calc.cli import main
from mf_calc.model.mfchgnet import MFCHGNet
from mf_calc.train import TRANSFER_FROZEN, DeltaModel, TrainConfig, train_delta, train_single_fidelity, train_transfer
from mf_calc.train.baselines import delta_frames
from mf_calc.train.dataset import FrameDataset

pytestmark = pytest.mark.usefixtures("one_thread")


def write_extxyz(path, frames, with_fidelity=True):
    images = []
    for f in frames:
        atoms = f.atoms.copy()
        if with_fidelity:
            atoms.info["fidelity"] = f.fidelity
        atoms.calc = SinglePointCalculator(atoms, energy=f.energy, forces=f.forces, stress=f.stress, magmoms=f.magmoms)
        images.append(atoms)
    ase.io.write(path, images, format="extxyz")
    return path


def test_train_and_evaluate_cli(tmp_path, capsys):
    frames = make_frames(4, 4)
    lo = write_extxyz(tmp_path / "lo.extxyz", frames[:4], with_fidelity=False)  # fidelity from the argument
    hi = write_extxyz(tmp_path / "hi.extxyz", frames[4:])  # fidelity from the info key
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"model": TINY, "batch_size": 2, "val_fraction": 0.25, "device": "cpu"}))
    out = tmp_path / "run"
    args = ["train", "--data", f"{lo}:lo", "--data", str(hi), "--out", str(out), "--config", str(config),
            "--epochs", "2", "--seed", "1", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "model fidelities (low → high): ['lo', 'hi']" in printed and "magmoms" in printed
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0]["val"]["lo"]["m_n"] == 0 and history[0]["val"]["lo"]["m_mae"] is None  # no magmom labels
    assert len((out / "metrics.csv").read_text().splitlines()) == 3
    model = MFCHGNet.load(out / "best")
    assert model.fidelities.names == FIDS and model.config.atom_fea_dim == 16
    assert json.loads((out / "train_config.json").read_text())["seed"] == 1

    assert main(args) == 2  # the folder holds a run: refuse to overwrite it
    assert "already holds a training run" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0  # finished run: nothing left to do
    assert main(["train", "--data", f"{lo}:pbe", "--out", str(tmp_path / "x"), "--fidelities", "lo,hi"]) == 2
    assert "fidelity 'pbe' is not one of the model's fidelities" in capsys.readouterr().err

    grown = tmp_path / "grown"  # a new level of theory on top of the trained model, starting from its hi
    assert main(["train", "--data", f"{hi}:dft", "--out", str(grown), "--init", str(out / "best"), "--fidelities",
                 "lo,hi,dft", "--new-fidelity", "dft=hi", "--epochs", "1", "--no-progress", "--device", "cpu"]) == 0
    assert MFCHGNet.load(grown / "best").metadata["fidelities_from"] == {"lo": "lo", "hi": "hi", "dft": "hi"}
    assert main(["train", "--data", f"{hi}:dft", "--out", str(tmp_path / "y"), "--init", str(out / "best"),
                 "--new-fidelity", "dft"]) == 2
    assert "--new-fidelity takes NEW=EXISTING, got 'dft'" in capsys.readouterr().err

    report = tmp_path / "errors.json"
    assert main(["evaluate", str(out / "final"), "--data", str(hi), "--fidelity", "hi", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "meV/atom" in printed and "meV/Å" in printed and "GPa" in printed and "μB" in printed
    errors = json.loads(report.read_text())["errors"]
    assert errors["e_n"] == 4 and errors["m_n"] == sum(len(f.atoms) for f in frames[4:])
    assert all(np.isfinite(errors[f"{t}_{k}"]) for t in "efsm" for k in ("mae", "rmse", "mean"))
    assert all(abs(errors[f"{t}_mean"]) <= errors[f"{t}_mae"] + 1e-12 for t in "efsm")


def test_a_run_stopped_after_an_improving_epoch_is_not_finished_until_resumed(tmp_path, monkeypatch):
    from mf_calc.train.checkpoint import training_finished
    from mf_calc.train.trainer import Trainer

    hi = write_extxyz(tmp_path / "hi.extxyz", make_frames(0, 4))
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"model": TINY, "batch_size": 2, "device": "cpu"}))
    out = tmp_path / "run"
    args = ["train", "--data", str(hi), "--out", str(out), "--config", str(config), "--epochs", "2", "--no-progress"]
    log = Trainer._log

    def stop_in_epoch_2(self, row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt  # the session ends during epoch 2
        log(self, row)

    monkeypatch.setattr(Trainer, "_log", stop_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert (out / "best" / "config.json").is_file() and not training_finished(out)  # best/ is epoch 1's
    monkeypatch.setattr(Trainer, "_log", log)
    assert main(args + ["--resume"]) == 0
    assert training_finished(out) and len(json.loads((out / "history.json").read_text())) == 2


def test_evaluate_by_key_reports_each_groups_energy_bias(tmp_path, capsys):
    from test_train import _teacher

    from mf_calc.model.io import save_model

    frames = make_frames(0, 4)  # labelled by the teacher: its errors are zero but for float32 rounding
    for k, frame in enumerate(frames):
        frame.atoms.info["group"] = k % 2
        frame.energy += (-0.02 if k % 2 == 0 else 0.01) * len(frame.atoms)  # DFT 20 meV/atom lower / 10 higher
    data = write_extxyz(tmp_path / "hi.extxyz", frames)
    save_model(_teacher(), tmp_path / "teacher")
    report = tmp_path / "errors.json"
    assert main(["evaluate", str(tmp_path / "teacher"), "--data", str(data), "--fidelity", "hi", "--by", "group",
                 "--json", str(report)]) == 0
    assert "E bias" in capsys.readouterr().out
    groups = json.loads(report.read_text())["groups"]
    assert sorted(groups) == ["0", "1"] and [g["frames"] for g in groups.values()] == [2, 2]
    assert groups["0"]["energy_bias_meV_atom"] == pytest.approx(20, abs=0.01)  # model - DFT
    assert groups["1"]["energy_bias_meV_atom"] == pytest.approx(-10, abs=0.01)
    assert groups["1"]["errors"]["e_mae"] == pytest.approx(10, abs=0.01)
    assert groups["0"]["errors"]["e_mean"] == pytest.approx(20, abs=0.01)
    assert groups["1"]["errors"]["f_mae"] == pytest.approx(0, abs=0.01)


def test_help_texts_state_units(capsys):
    for command in ("train", "evaluate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "eV/Å³" in text and "meV/atom" in text and "μB" in text


# --- baselines -------------------------------------------------------------------------------------

def config(**kw):
    return TrainConfig(**{"model": TINY, "progress": False, "val_fraction": 0.25, "epochs": 1, "batch_size": 2,
                          "device": "cpu", **kw})


def test_single_fidelity_baseline_is_plain_chgnet_on_high_frames(tmp_path):
    model = train_single_fidelity(make_frames(4, 4), config(), tmp_path)
    assert model.fidelities.names == ("hi",) and model.config.modules == ""
    assert (tmp_path / "best" / "config.json").is_file()


def test_transfer_learning_freezes_embeddings_and_convolutions(tmp_path):
    pre, fine = train_transfer(make_frames(4, 4), config(), tmp_path)
    assert pre.fidelities.names == ("lo",) and fine.fidelities.names == ("hi",)
    pre_w, fine_w = pre.state_dict(), fine.state_dict()
    for key in pre_w:
        frozen = key.split(".")[0] in TRANSFER_FROZEN
        assert torch.equal(pre_w[key], fine_w[key]) == frozen, key


def test_delta_learning_predicts_low_plus_delta(tmp_path):
    lo = make_frames(4, 0)
    hi = make_frames(0, 4)
    for f_lo, f_hi in zip(lo, hi):  # the same structures at both fidelities
        f_hi.atoms = f_lo.atoms.copy()
    lo_only = make_frames(2, 0, seed=50)
    data = lo + lo_only + hi
    pairs = delta_frames(FrameDataset(data), "lo", "hi")
    assert len(pairs) == 4 and pairs[0].magmoms is None
    assert pairs[0].energy == pytest.approx(hi[0].energy - lo[0].energy)
    model = train_delta(data, config(), tmp_path)
    atoms = [f.atoms for f in hi[:2]]
    pred = model.predict(atoms)
    low, delta = model.low.predict(atoms), model.delta.predict(atoms)
    np.testing.assert_allclose(pred[1]["forces"], low[1]["forces"] + delta[1]["forces"], rtol=1e-6)
    assert pred[0]["stress"].shape == (3, 3)
    again = DeltaModel.load(tmp_path / "model").predict(atoms)
    np.testing.assert_allclose(again[0]["energy"], pred[0]["energy"], rtol=1e-6)
    # train.metrics measures the Δ model like any other: the errors of low + Δ against the "hi" labels
    from mf_calc.train import evaluate

    errors = evaluate(model, FrameDataset(hi[:2]).graphs(model))["hi"]
    f_err = np.concatenate([(p["forces"] - f.forces).ravel() for p, f in zip(pred, hi[:2])])
    assert errors["f_mae"] == pytest.approx(1000 * np.abs(f_err).mean(), rel=1e-5)
    assert errors["m_n"] == 0 and errors["e_n"] == 2
