"""mf_calc.train: loss masking, composition fit, overfitting, exact resume, 2-process data parallelism.

Data are teacher-labelled: a random tiny MF-CHGNet labels rattled 28-atom LMFP cells; the low
fidelity "lo" carries energy, forces and stress, the high fidelity "hi" also magmoms.
"""

import functools
import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ase import Atoms

from mf_calc.data import Frame
from mf_calc.model.mfchgnet import MFCHGNet
from mf_calc.structures import lmfp
from mf_calc.train import FrameDataset, TrainConfig, Trainer, build_model, teacher_frames
from mf_calc.train.distributed import World, global_batches
from mf_calc.train.loss import in_label_units, loss_terms, model_task
from mf_calc.train.trainer import fit_compositions

TINY = dict(atom_fea_dim=16, bond_fea_dim=16, angle_fea_dim=16, n_conv=2, mlp_hidden_dims=(16,), num_radial=7,
            num_angular=7, atom_conv_hidden_dim=16, bond_conv_hidden_dim=16)
FIDS = ("lo", "hi")
REF_ENERGY = {3: -2.0, 25: -8.0, 26: -7.0, 15: -5.0, 8: -4.5}  # teacher composition, eV/atom by Z


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(**kw) -> TrainConfig:
    return TrainConfig(**{"model": TINY, "progress": False, "val_fraction": 0.0, "device": "cpu", **kw})


@functools.lru_cache
def _teacher() -> MFCHGNet:
    torch.manual_seed(123)
    teacher = MFCHGNet(fidelities=FIDS, **TINY)
    with torch.no_grad():
        for z, w in REF_ENERGY.items():
            teacher.composition.weight[:, z - 1] = torch.tensor([w, w - 0.3])
    return teacher


def make_frames(n_lo: int, n_hi: int, seed: int = 0):
    """lo frames (e, f, s; no magmoms) then hi frames (e, f, s, m), each on its own rattled LMFP cell."""
    atoms = []
    for k in range(n_lo + n_hi):
        a = lmfp(x_li=(1.0, 0.75, 0.5)[k % 3], y_mn=(0.0, 0.25, 0.5)[(k // 3) % 3], supercell=(1, 1, 1), seed=seed + k)
        a.rattle(0.05, seed=seed + k)
        atoms.append(a)
    teacher = _teacher()
    return (teacher_frames(teacher, atoms[:n_lo], "lo", "lo", labels="efs")
            + teacher_frames(teacher, atoms[n_lo:], "hi", "hi", labels="efsm"))


def weights_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- config -------------------------------------------------------------------------------------

def test_config_defaults_follow_the_paper_and_load_from_json_or_yaml(tmp_path):
    cfg = TrainConfig()
    assert (cfg.batch_size, cfg.epochs, cfg.lr, cfg.targets, cfg.huber_delta) == (4, 60, 0.005, "efsm", 0.1)
    assert cfg.weights == {"e": 1.0, "f": 1.0, "s": 0.1, "m": 0.1}
    (tmp_path / "c.json").write_text(json.dumps({"epochs": 3, "fidelities": ["lo", "hi"], "targets": "ef"}))
    (tmp_path / "c.yaml").write_text("epochs: 3\nfidelities: [lo, hi]\ntargets: ef\n")
    assert TrainConfig.from_file(tmp_path / "c.json") == TrainConfig.from_file(tmp_path / "c.yaml")
    assert TrainConfig.from_file(tmp_path / "c.json").weights["s"] == 0.0
    with pytest.raises(ValueError, match="unknown training config key"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="only to init='scratch'"):
        TrainConfig(init="chgnet-0.3.0", model={"n_conv": 2})


# --- data and loss ------------------------------------------------------------------------------

def test_dataset_fidelities_and_mismatch():
    frames = make_frames(2, 2)
    data = FrameDataset(frames)
    assert data.fidelity_names == ("lo", "hi")
    train, val = data.split(0.5, seed=0)
    assert len(train) == len(val) == 2 and {f.fidelity for f in val.frames} == {"lo", "hi"}
    model = MFCHGNet(fidelities=("pbe", "hi"), **TINY)
    with pytest.raises(ValueError,
                       match=r"teacher:lo:0: fidelity 'lo' is not one of the model's fidelities \['pbe', 'hi'\]"):
        data.graphs(model)


def test_missing_labels_masked_and_magmom_term_exactly_zero():
    model = MFCHGNet(fidelities=FIDS, **TINY)
    frames = make_frames(2, 1)
    frames[1].forces = None  # a lo frame without forces
    graphs = FrameDataset(frames).graphs(model)
    n0, n1, n2 = (len(f.atoms) for f in frames)
    assert graphs.counts([0, 1]) == {"e": 2, "f": 3 * n0, "s": 18, "m": 0}
    weights = tiny_config().weights

    batch, labels = graphs.batch([0, 1])  # low fidelity only: no magmom labels at all
    assert model_task("efsm", labels) == "efs"
    out = model(batch, task="efsm")
    loss, terms = loss_terms(in_label_units(out), labels, graphs.counts([0, 1]), weights, 0.1)
    assert terms["m"].item() == 0.0 and torch.isfinite(loss)
    loss.backward()
    assert model.site_wise.weight.grad is None or not model.site_wise.weight.grad.any()

    batch, labels = graphs.batch([1, 2])  # the hi frame has magmoms; the lo frame lacks forces
    assert labels.masks["f"].tolist() == [False] * n1 + [True] * n2
    assert torch.isnan(labels.values["f"][:n1]).all()  # a missing label is never zero...
    out = model(batch, task=model_task("efsm", labels))
    loss, terms = loss_terms(in_label_units(out), labels, graphs.counts([1, 2]), weights, 0.1)
    assert terms["m"].item() > 0 and torch.isfinite(loss)  # ...and never reaches the loss


def test_low_fidelity_training_without_magmoms_keeps_magmom_head():
    cfg = tiny_config(epochs=2, batch_size=2)
    model = build_model(cfg, FIDS)
    head = model.site_wise.weight.detach().clone()
    history = Trainer(model, cfg).fit(FrameDataset(make_frames(4, 0)))
    assert all(np.isfinite(h["train_loss"]) and h["train_m"] == 0.0 for h in history)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.equal(model.site_wise.weight, head)


def test_composition_fit_recovers_per_element_energies():
    rng = np.random.default_rng(0)
    truth = {"lo": {3: -1.9, 25: -8.5, 26: -8.2, 15: -5.4, 8: -4.9}, "hi": {3: -2.3, 25: -9.1, 26: -8.0, 15: -6.0, 8: -5.2}}
    frames = []
    for fid, ref in truth.items():
        for k in range(12):
            counts = rng.integers(0, 6, size=len(ref))
            numbers = np.repeat(list(ref), counts)
            atoms = Atoms(numbers=numbers, positions=rng.random((len(numbers), 3)) * 5, cell=np.eye(3) * 5, pbc=True)
            energy = sum(ref[z] for z in numbers) + rng.normal(0, 1e-9)
            frames.append(Frame(atoms=atoms, fidelity=fid, energy=energy, forces=None, stress=None, magmoms=None,
                                source=f"{fid}:{k}"))
    model = MFCHGNet(fidelities=FIDS, modules="EMRC", **TINY)
    fit_compositions(model, FrameDataset(frames))
    for f, fid in enumerate(FIDS):
        for z, w in truth[fid].items():
            assert model.composition.weight[f, z - 1].item() == pytest.approx(w, abs=1e-5)
    shared = MFCHGNet(fidelities=FIDS, modules="EMR", **TINY)  # C off: one fit on all frames
    fit_compositions(shared, FrameDataset(frames))
    assert shared.composition.weight.shape[0] == 1


# --- training ----------------------------------------------------------------------------------

def test_tiny_model_overfits_a_few_frames():
    cfg = tiny_config(epochs=40, batch_size=4, lr=0.01)
    model = build_model(cfg, FIDS)
    history = Trainer(model, cfg).fit(FrameDataset(make_frames(0, 4)))
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 10


def test_resume_after_interrupted_epoch_matches_uninterrupted_run(tmp_path):
    frames = make_frames(4, 4)
    cfg = tiny_config(epochs=2, batch_size=2, val_fraction=0.25)
    train, val = FrameDataset(frames).split(cfg.val_fraction, cfg.seed)

    full = Trainer(build_model(cfg, FIDS), cfg, tmp_path / "full")
    full.fit(train, val)

    broken = Trainer(build_model(cfg, FIDS), cfg, tmp_path / "resumed")
    steps, real_step = [], broken._step

    def step_then_die(*args):  # the power goes out in the middle of epoch 2
        if len(steps) == 4:
            raise KeyboardInterrupt
        steps.append(1)
        return real_step(*args)

    broken._step = step_then_die
    with pytest.raises(KeyboardInterrupt):
        broken.fit(train, val)
    assert json.loads((tmp_path / "resumed" / "history.json").read_text())[-1]["epoch"] == 1
    with pytest.raises(ValueError, match="already holds a training run"):
        Trainer(build_model(cfg, FIDS), cfg, tmp_path / "resumed").fit(train, val)

    resumed = Trainer(build_model(cfg, FIDS), cfg, tmp_path / "resumed")
    history = resumed.fit(train, val, resume=True)
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in full.history]
    assert resumed.best_epoch == full.best_epoch
    best = MFCHGNet.load(tmp_path / "resumed" / "best")
    assert best.metadata["trained"]["epochs"] == full.best_epoch
    assert best.metadata["trained"]["device"] == "cpu"
    from mf_calc.train.metrics import Errors

    assert all(set(errors) == set(Errors.__annotations__) for errors in history[-1]["val"].values())
    from mf_calc.model.contacts import METADATA_KEY, shortest_distances

    assert best.metadata[METADATA_KEY] == shortest_distances(train.graphs(best).graphs)  # what the model has seen
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in \['lr'\]"):
        Trainer(build_model(cfg, FIDS), tiny_config(epochs=2, batch_size=2, val_fraction=0.25, lr=0.1),
                tmp_path / "resumed").fit(train, val, resume=True)


def test_continue_training_from_a_model_folder(tmp_path):
    """init = a trained model folder: its weights (composition included, no refit) are the start, and a
    folder with other fidelities or modules is refused."""
    frames = FrameDataset(make_frames(2, 2))
    first = build_model(tiny_config(), FIDS)
    with torch.no_grad():
        first.composition.weight.add_(0.01)
    first.save(tmp_path / "stage1")
    cfg = tiny_config(init=str(tmp_path / "stage1"), model={}, epochs=1, lr=1e-9)
    assert cfg.init == str(tmp_path / "stage1")
    model = build_model(cfg, FIDS)
    for key, value in first.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    Trainer(model, cfg).fit(frames)
    assert torch.allclose(model.composition.weight, first.composition.weight, atol=1e-6)  # not refitted
    with pytest.raises(ValueError, match="has modules"):
        build_model(tiny_config(init=str(tmp_path / "stage1"), model={}, modules="EM"), FIDS)
    with pytest.raises(ValueError, match=r"has fidelities \['lo', 'hi'\].*need a start"):
        build_model(tiny_config(init=str(tmp_path / "stage1"), model={}), ("lo", "hi", "dft"))
    with pytest.raises(ValueError, match="unknown init"):
        tiny_config(init=str(tmp_path / "nothing"), model={})


def test_global_batches_depend_on_seed_and_epoch_only():
    a = global_batches(10, 4, seed=3, epoch=5)
    assert [len(b) for b in a] == [4, 4, 2]
    assert all(np.array_equal(x, y) for x, y in zip(a, global_batches(10, 4, seed=3, epoch=5)))
    assert not np.array_equal(np.concatenate(a), np.concatenate(global_batches(10, 4, seed=3, epoch=6)))



def test_fidelity_fraction_draws_a_fresh_subset_of_that_fidelity_each_epoch():
    """{"lo": 0.5}: every epoch trains on all hi frames and half the lo frames, a different half per epoch
    (from seed and epoch only); the cosine schedule counts the subsampled steps, so it ends at lr_min."""
    frames = make_frames(6, 3)
    cfg = tiny_config(epochs=3, batch_size=2, lr=0.01, fidelity_fraction={"lo": 0.5})
    model = build_model(cfg, FIDS)
    graphs = FrameDataset(frames).graphs(model)
    assert np.array_equal(graphs.epoch_frames({}, 0, 0), np.arange(9))
    picks = [graphs.epoch_frames(cfg.fidelity_fraction, cfg.seed, e) for e in range(3)]
    for pick in picks:
        assert list(pick[-3:]) == [6, 7, 8] and len(pick) == 6 and set(pick[:3]) < set(range(6))
    assert len({tuple(p) for p in picks}) > 1
    assert np.array_equal(picks[1], graphs.epoch_frames(cfg.fidelity_fraction, cfg.seed, 1))

    used = []
    trainer = Trainer(model, cfg)
    real_step = trainer._step

    def spy(graphs, idx):
        used.append(sorted(idx))
        return real_step(graphs, idx)

    trainer._step = spy
    trainer.fit(FrameDataset(frames))
    assert len(used) == 3 * 3
    for e in range(3):
        assert sorted(np.concatenate(used[3 * e: 3 * e + 3])) == list(picks[e])
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(cfg.lr * cfg.lr_min_fraction)

    with pytest.raises(ValueError, match="without training frames"):
        graphs.epoch_frames({"mid": 0.5}, 0, 0)
    with pytest.raises(ValueError, match=r"fidelity_fraction values must be in \(0, 1\]"):
        tiny_config(fidelity_fraction={"lo": 0.0})


def test_checkpoints_written_before_a_new_option_still_resume():
    """A saved config without a field added later reads as that field's default, so it compares equal."""
    now = tiny_config().to_dict()
    old = {k: v for k, v in now.items() if k != "fidelity_fraction"}
    assert TrainConfig.with_new_defaults(old) == now
    assert TrainConfig.with_new_defaults({**old, "lr": 0.5})["lr"] == 0.5

# --- two processes -------------------------------------------------------------------------------

def _ddp_worker(rank, world_size, init_file, frames, cfg, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        data = FrameDataset(frames)
        train, val = data.subset(range(9)), data.subset(range(9, len(data)))
        trainer = Trainer(build_model(cfg, FIDS), cfg, world=World(rank, world_size))
        history = trainer.fit(train, val)
        assert isinstance(trainer.parallel_model, torch.nn.parallel.DistributedDataParallel)
        torch.save({"state": trainer.model.state_dict(), "history": history}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_process_training_equals_one_process_with_the_global_batch(tmp_path):
    frames = make_frames(5, 6)  # 9 training frames (mixed fidelities), 2 validation frames
    frames = frames[:4] + frames[5:10] + [frames[4], frames[10]]
    cfg = tiny_config(epochs=2, batch_size=2)
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), frames, cfg, str(tmp_path / "ddp")), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"ddp.{r}", weights_only=True) for r in range(2)]

    data = FrameDataset(frames)
    single = Trainer(build_model(tiny_config(epochs=2, batch_size=4), FIDS), tiny_config(epochs=2, batch_size=4))
    history = single.fit(data.subset(range(9)), data.subset(range(9, 11)))  # global batches 4, 4, 1: one rank idles

    for key, value in single.model.state_dict().items():
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key
        torch.testing.assert_close(ranks[0]["state"][key], value, rtol=1e-5, atol=1e-5, msg=key)
    for mine, theirs in zip(history, ranks[0]["history"]):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        for fid in FIDS:
            assert mine["val"][fid]["f_mae"] == pytest.approx(theirs["val"][fid]["f_mae"], rel=1e-4)
            assert mine["val"][fid]["e_n"] == theirs["val"][fid]["e_n"] == 1


def test_validation_split_keeps_each_configuration_on_one_side():
    """Snapshots of one configuration (info config_id) are never split between training and validation; frames
    without the key split one by one, as before."""
    from mf_calc.data import Frame
    from mf_calc.train.dataset import FrameDataset

    frames = []
    for c in range(10):
        for snapshot in range(4):
            atoms = lmfp(supercell=(1, 1, 1), seed=c)
            atoms.rattle(0.01, seed=snapshot)
            atoms.info["config_id"] = f"cfg-{c}"
            frames.append(Frame(atoms, "high", -1.0, None, None, None, f"f{c}-{snapshot}"))
    train, val = FrameDataset(frames).split(0.2, seed=3)
    ids = lambda d: {f.atoms.info["config_id"] for f in d.frames}  # noqa: E731
    assert not ids(train) & ids(val) and len(val) == 8 and len(train) == 32
    assert ids(val) != ids(FrameDataset(frames).split(0.2, seed=4)[1])  # seeded
    for f in frames:
        del f.atoms.info["config_id"]
    train, val = FrameDataset(frames).split(0.2, seed=3)
    assert len(val) == 8 and len(train) == 32
    # the high-fidelity frames held out at a seed are the same with or without low-fidelity frames in the data
    low = [Frame(f.atoms, "low", -2.0, None, None, None, f.source + "-low") for f in frames[:20]]
    _, mixed_val = FrameDataset(low + frames).split(0.2, seed=3)
    assert [f.source for f in mixed_val.frames if f.fidelity == "high"] == [f.source for f in val.frames]
