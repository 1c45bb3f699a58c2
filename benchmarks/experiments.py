"""The paper's training experiments (sections 3.1-3.3) in one resumable command.

    python benchmarks/experiments.py --scale smoke|cpu|paper [--experiments lc,lf,ablation,tl]
        [--seeds 0 1 2] [--data benchmarks/data] [--out benchmarks/results/experiments_<scale>]
        [--device auto] [--epochs E] [--n-high 50,100] [--threads T] [--dry-run] [--report-only] [--verbose]

Experiments (every configuration once per seed; the seed picks the frame subsets, the initial weights,
the validation split and the batch order):

- ``lc``  learning curves (Fig. 2): single-fidelity "N" (plain CHGNet on N r2scan frames) vs MF-CHGNet
  (modules EMRC, fidelities pbe_u → r2scan, the low-fidelity frames + N r2scan frames).
- ``lf``  low-fidelity size sweep (Fig. 3): MF at fixed N with n_low low-fidelity frames
  (n_low = 0 is the single-fidelity model: no low-fidelity data).
- ``ablation`` (Fig. 4) at one N: N, F (=EMRC), C, E, M, R, C̄ (=EMR), Ē (=MRC), M̄ (=ERC), R̄ (=EMC).
- ``tl``  MF vs transfer learning (Fig. 5) vs Δ-learning across N. Transfer: plain CHGNet pre-trained on
  the low-fidelity frames, fine-tuned on N r2scan frames with embeddings and convolutions frozen.
  Δ: the same low-fidelity model + a Δ model trained on min(N, 200) paired structures (both
  fidelities); Δ predicts no magmoms. The low-fidelity model is trained once per (seed, n_low) and
  shared by transfer and Δ.

All models start from random weights (``init="scratch"``, the paper's setting) with the scale's size;
optimisation follows the paper's Table 1 (``TrainConfig`` defaults: Adam, lr 0.005, cosine, batch 4,
Huber, efsm weights 1:1:0.1:0.1). N counts all r2scan frames given to a run; 10 % of each fidelity's
frames are held out for best-epoch selection (on r2scan), for every method alike. Errors are measured
on the fixed r2scan test split at fidelity r2scan: MAE and RMSE of energy (meV/atom), forces (meV/Å,
per component), stress (GPa, per 3×3 component) and magmoms (μB).

Outputs in ``--out``: ``runs/<run>.json`` per training run (written when it finishes; a rerun skips
finished runs, and an interrupted run resumes from its last epoch checkpoint in ``work/``),
``results.csv`` / ``results.json`` (mean ± std over seeds), ``*.png`` plots and ``README.md``.
Identical training runs are shared between experiments (e.g. MF at N=100 is in lc, ablation and tl).
Processes that train disjoint seeds may share one ``--out`` (e.g. ``--seeds 0``, ``--seeds 1`` and
``--seeds 2`` side by side on one GPU); afterwards ``--report-only --seeds 0 1 2`` writes the joint report.

Scales (the command prints its plan and a time estimate first; ``--dry-run`` stops there). Estimates for
the full data (1720 r2scan / 1736 pbe_u / 191 test / 200 paired frames):
- ``smoke``: tiny model, 2 epochs, N ∈ {4, 8}, ≤ 12 low-fidelity frames, 16 test frames, 1 seed, all four
  experiments (18 runs): about a minute on 2 CPU cores on the ``make_data.py --scale smoke`` data.
- ``cpu``: lc (N ∈ {50, 100, 400}) + ablation (N = 100), 32 features / 3 convolutions, 6 epochs,
  200 low-fidelity frames, 3 seeds (42 runs): ≈ 6 h at ≈ 4 structures/s (1 thread, shared 2-core machine).
- ``paper``: 64 features / 4 convolutions, 60 epochs, all N and all low-fidelity frames, 3 seeds, all four
  experiments (114 runs + 3 low-fidelity models): ≈ 37 h on one H200 at ≈ 60 structures/s, hence the
  seed-parallel processes above.

Data (``--data``): the teacher-labelled LMFP benchmark files written by ``benchmarks/make_data.py``.
Labels come from teacher models (CHGNet 0.3.0 = pbe_u, CHGNet r2scan = r2scan), not from DFT.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mf_calc.atomic import write_json

HERE = Path(__file__).resolve().parent
LOW, HIGH = "pbe_u", "r2scan"  # fidelity names, lowest first
ALL = None  # "all frames" in n_high / n_low
TARGETS = ("e", "f", "s", "m")
TARGET_INFO = {"e": ("energy", "meV/atom"), "f": ("forces", "meV/Å"), "s": ("stress", "GPa"), "m": ("magmoms", "μB")}
STATS = ("mae", "rmse")
TEACHER_SENTENCE = ("**Labels come from teacher models (CHGNet 0.3.0 = pbe_u, CHGNet r2scan = r2scan), "
                    "not from DFT.**")
DATA_FILES = {  # role -> file name in --data
    "high": "lmfp_r2scan_train.extxyz.gz",
    "test": "lmfp_r2scan_test.extxyz.gz",
    "low": "lmfp_pbe_u_train.extxyz.gz",
    "paired_high": "lmfp_paired_r2scan.extxyz.gz",
    "paired_low": "lmfp_paired_pbe_u.extxyz.gz",
}
ROLE_FIDELITY = {"high": HIGH, "test": HIGH, "low": LOW, "paired_high": HIGH, "paired_low": LOW}
SYNTHETIC_MARKER = "SYNTHETIC.json"  # written by write_synthetic_data: the data are not the benchmark's


# ====================================================================== scales

@dataclass(frozen=True)
class Scale:
    """How big every experiment is. ``None`` in an N list means "all frames"."""

    name: str
    model: dict  # MFConfig size overrides ({} = paper sizes)
    epochs: int
    seeds: tuple[int, ...]
    experiments: tuple[str, ...]  # run by default
    lc_n: tuple  # learning-curve N values
    lf_n_high: tuple  # N of the low-fidelity sweep
    lf_n_low: tuple  # n_low values of the sweep (0 = single-fidelity)
    ablation_n: int
    tl_n: tuple
    n_low: int | None  # low-fidelity frames in lc / ablation / tl runs (None = all)
    max_test: int | None = None  # first test frames used (None = all)
    max_paired: int = 200  # Δ-learning uses min(N, max_paired) paired structures
    speed: dict = field(default_factory=dict)  # reference training speed, structures/s, by device type
    about: str = ""


TINY_MODEL = dict(atom_fea_dim=16, bond_fea_dim=16, angle_fea_dim=16, num_radial=7, num_angular=7, n_conv=2,
                  atom_conv_hidden_dim=16, bond_conv_hidden_dim=16, mlp_hidden_dims=(16,))
CPU_MODEL = dict(atom_fea_dim=32, bond_fea_dim=32, angle_fea_dim=32, n_conv=3, atom_conv_hidden_dim=32,
                 bond_conv_hidden_dim=32, mlp_hidden_dims=(32, 32))

SCALES = {
    "smoke": Scale(
        name="smoke", model=TINY_MODEL, epochs=2, seeds=(0,), experiments=("lc", "lf", "ablation", "tl"),
        lc_n=(4, 8), lf_n_high=(4, 8), lf_n_low=(0, 6, 12), ablation_n=4, tl_n=(4, 8), n_low=12, max_test=16,
        speed={"cpu": 15.0, "cuda": 40.0},
        about="every code path on a handful of frames with a tiny model; the numbers mean nothing"),
    "cpu": Scale(
        name="cpu", model=CPU_MODEL, epochs=6, seeds=(0, 1, 2), experiments=("lc", "ablation"),
        lc_n=(50, 100, 400), lf_n_high=(50, 400), lf_n_low=(0, 100, 200, 400), ablation_n=100, tl_n=(50, 100, 400),
        n_low=200, speed={"cpu": 3.8, "cuda": 60.0},
        about=("the headline learning curve and the ablation with a reduced model (32 features, 3 convolutions), "
               "6 epochs and 200 low-fidelity frames: a few hours on 2 CPU cores")),
    "paper": Scale(
        name="paper", model={}, epochs=60, seeds=(0, 1, 2), experiments=("lc", "lf", "ablation", "tl"),
        lc_n=(50, 100, 200, 400, 800, ALL), lf_n_high=(50, 400), lf_n_low=(0, 200, 400, 800, ALL), ablation_n=100,
        tl_n=(50, 100, 200, 400, 800, ALL), n_low=ALL, speed={"cpu": 1.5, "cuda": 60.0},
        about="the paper's settings (64 features, 4 convolutions, 60 epochs, all N, 3 seeds): for a GPU"),
}


# ====================================================================== run specs

METHODS = ("single", "mf", "transfer", "delta")
METHOD_NAMES = {"single": "single-fidelity (N)", "mf": "MF-CHGNet", "transfer": "transfer learning",
                "delta": "Δ-learning"}
BAR = "\u0304"  # combining overline: "C̄" = C without its fidelity dependence
ABLATION = {  # variant -> (method, modules), paper Fig. 4
    "N": ("single", ""), "F": ("mf", "EMRC"), "C": ("mf", "C"), "E": ("mf", "E"), "M": ("mf", "M"),
    "R": ("mf", "R"), "C" + BAR: ("mf", "EMR"), "E" + BAR: ("mf", "MRC"), "M" + BAR: ("mf", "ERC"),
    "R" + BAR: ("mf", "EMC"),
}


@dataclass(frozen=True)
class Run:
    """One training run of one experiment. ``n_high``/``n_low``: frame counts (None = all).

    Runs with equal ``key`` are the same training and are done once for all experiments that use them.
    """

    experiment: str
    method: str
    n_high: int | None
    n_low: int | None = 0
    modules: str = ""
    seed: int = 0
    variant: str = ""  # ablation label, e.g. "C̄"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {METHODS}")
        if self.method != "mf":  # plain CHGNet everywhere else
            object.__setattr__(self, "modules", "")
        if self.method == "single":  # no low-fidelity data
            object.__setattr__(self, "n_low", 0)

    @property
    def label(self) -> str:
        return self.variant or self.method

    @property
    def key(self) -> str:
        """Identity of the training (experiment and label left out)."""
        return (f"{self.method}-{self.modules or 'plain'}-nh{count_text(self.n_high)}-nl{count_text(self.n_low)}"
                f"-s{self.seed}")


def count_text(n: int | None) -> str:
    return "all" if n is None else str(n)


def lc_runs(scale: Scale, seed: int) -> Iterator[Run]:
    for n in scale.lc_n:
        yield Run("lc", "single", n, seed=seed)
        yield Run("lc", "mf", n, scale.n_low, "EMRC", seed)


def lf_runs(scale: Scale, seed: int) -> Iterator[Run]:
    for n in scale.lf_n_high:
        for n_low in scale.lf_n_low:
            method = "single" if n_low == 0 else "mf"
            yield Run("lf", method, n, n_low, "EMRC", seed)


def ablation_runs(scale: Scale, seed: int) -> Iterator[Run]:
    for variant, (method, modules) in ABLATION.items():
        yield Run("ablation", method, scale.ablation_n, scale.n_low, modules, seed, variant)


def tl_runs(scale: Scale, seed: int) -> Iterator[Run]:
    for n in scale.tl_n:
        for method in ("mf", "transfer", "delta"):
            yield Run("tl", method, n, scale.n_low, "EMRC", seed)


EXPERIMENTS: dict[str, Callable[[Scale, int], Iterator[Run]]] = {
    "lc": lc_runs, "lf": lf_runs, "ablation": ablation_runs, "tl": tl_runs}


def resolve(n: int | None, available: int) -> int | None:
    """A requested frame count, or None (= all) when it asks for all the available frames or more."""
    return None if n is None or n >= available else int(n)


def build_plan(experiments: Sequence[str], scale: Scale, seeds: Sequence[int], sizes: dict[str, int]) -> list[Run]:
    """Every (experiment, run) pair, counts resolved against the data sizes (frames per role)."""
    plan = []
    for name in experiments:
        for seed in seeds:
            for run in EXPERIMENTS[name](scale, seed):
                n_low = run.n_low if run.n_low == 0 else resolve(run.n_low, sizes["low"])
                plan.append(replace(run, n_high=resolve(run.n_high, sizes["high"]), n_low=n_low))
    return plan


def unique_runs(plan: Iterable[Run]) -> list[Run]:
    """One run per training key, first occurrence first."""
    first: dict[str, Run] = {}
    for run in plan:
        first.setdefault(run.key, run)
    return list(first.values())


# ====================================================================== data

@dataclass
class Data:
    """The benchmark frames by role, the test set (graphs cached across runs) and the files' SHA-256."""

    high: list
    low: list
    test: object  # FrameDataset
    paired_high: list
    paired_low: list
    files: dict[str, str]  # role -> sha256 of the file
    root: Path
    synthetic: bool

    @property
    def sizes(self) -> dict[str, int]:
        sizes = {"high": len(self.high), "low": len(self.low), "test": len(self.test)}
        return {**sizes, "paired": len(self.paired_high)} if self.paired_high else sizes


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_role(root: Path, role: str) -> list:
    """The frames of one data file, checked to be of the role's fidelity."""
    from mf_calc.data import read_frames

    path = root / DATA_FILES[role]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; write the benchmark data with benchmarks/make_data.py "
                                f"(--scale smoke for a tiny set) or pass --data")
    frames = read_frames(path)
    wrong = [f.source for f in frames if f.fidelity != ROLE_FIDELITY[role]]
    if wrong:
        raise ValueError(f"{wrong[0]}: fidelity is not {ROLE_FIDELITY[role]!r} ({len(wrong)} such frames in {path})")
    return frames


def load_data(root, scale: Scale, paired: bool) -> Data:
    """Read the benchmark files (the paired ones only when ``paired``), the test set capped at ``scale.max_test``."""
    from mf_calc.train import FrameDataset

    root = Path(root)
    roles = [r for r in DATA_FILES if paired or not r.startswith("paired")]
    frames = {role: read_role(root, role) for role in roles}
    if paired and len(frames["paired_high"]) != len(frames["paired_low"]):
        raise ValueError(f"{root}: the paired files hold {len(frames['paired_high'])} r2scan and "
                         f"{len(frames['paired_low'])} pbe_u frames; they must be the same structures in the same order")
    return Data(high=frames["high"], low=frames["low"], test=FrameDataset(frames["test"][: scale.max_test]),
                paired_high=frames.get("paired_high", []), paired_low=frames.get("paired_low", []),
                files={role: file_sha256(root / DATA_FILES[role]) for role in roles}, root=root,
                synthetic=(root / SYNTHETIC_MARKER).is_file())


STREAMS = {"high": 0, "low": 1, "paired": 2}


def pick(n_items: int, n: int | None, seed: int, stream: str) -> list[int]:
    """Indices of a random subset of size n (None: all), nested in n for a fixed seed, in file order."""
    if n is None:
        return list(range(n_items))
    order = np.random.default_rng([seed, STREAMS[stream]]).permutation(n_items)
    return sorted(order[:n].tolist())


def take(frames: Sequence, indices: Iterable[int]) -> list:
    return [frames[i] for i in indices]


# ====================================================================== training one run

FILES_USED = {"single": ("high", "test"), "mf": ("high", "low", "test"), "transfer": ("high", "low", "test"),
              "delta": ("low", "paired_high", "paired_low", "test")}


def base_config(scale: Scale, seed: int, fidelities: tuple[str, ...], modules: str = "", device: str = "auto",
                progress: bool = False):
    """TrainConfig: paper Table 1 defaults, from scratch, the scale's model size and epochs."""
    from mf_calc.train import TrainConfig

    return TrainConfig(init="scratch", modules=modules, fidelities=fidelities, model=dict(scale.model),
                       epochs=scale.epochs, seed=seed, device=device, progress=progress)


def train_config(scale: Scale, run: Run, device: str = "auto", progress: bool = False):
    fidelities = (LOW, HIGH) if run.method == "mf" else (HIGH,)
    return base_config(scale, run.seed, fidelities, run.modules, device, progress)


def as_json(obj):
    """Tuples → lists etc.: the form a value has after a JSON round trip (for comparisons with stored records)."""
    return json.loads(json.dumps(obj))


NOT_COMPARED = ("device", "progress")  # training options that do not change what a run learns


def comparable(train_config: dict) -> dict:
    """The parts of a TrainConfig dict that decide what a run learns, as they read back from JSON."""
    return as_json({k: v for k, v in train_config.items() if k not in NOT_COMPARED})


def config_dict(config) -> dict:
    return comparable(config.to_dict())


def stored_check(check: dict | None) -> dict | None:
    """A stored record's check, its training config completed with options added since it was written."""
    from mf_calc.train import TrainConfig

    if not check or "train_config" not in check:
        return check
    return {**check, "train_config": comparable(TrainConfig.with_new_defaults(check["train_config"]))}


def check_of(run: Run, scale: Scale, data: Data, config) -> dict:
    """What a finished run must match to be reused: config, data files and test/Δ protocol."""
    return as_json({"train_config": config_dict(config),
                    "files": {r: data.files[r] for r in FILES_USED[run.method]},
                    "max_test": scale.max_test, "max_paired": scale.max_paired if run.method == "delta" else None})


@dataclass
class Context:
    """Where a sweep keeps its training folders, its device, and the low-fidelity models already loaded."""

    work_dir: Path
    device: str = "auto"
    progress: bool = False
    low_models: dict = field(default_factory=dict)


def has_checkpoint(run_dir: Path) -> bool:
    from mf_calc.train.checkpoint import CHECKPOINT

    return (run_dir / CHECKPOINT).is_file()


def tidy(run_dir: Path) -> None:
    """Drop a finished training folder's checkpoint and final model (``best/`` is kept)."""
    import shutil

    from mf_calc.train.checkpoint import CHECKPOINT

    (run_dir / CHECKPOINT).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "final", ignore_errors=True)


def train_mf(frames: list, config, run_dir: Path):
    """MF-CHGNet on frames of both fidelities (what ``mf-calc train`` does); returns the best model."""
    from mf_calc.train import FrameDataset, Trainer, build_model

    train, val = FrameDataset(frames).split(config.val_fraction, config.seed)
    trainer = Trainer(build_model(config, config.fidelities), config, run_dir)
    trainer.fit(train, val, resume=has_checkpoint(run_dir))
    return trainer.best_model()


def low_fidelity_model(n_low: int | None, seed: int, scale: Scale, data: Data, ctx: Context):
    """Plain CHGNet on the low-fidelity frames: transfer learning's pre-training and Δ-learning's low model.

    Trained once per (n_low, seed) into ``work/low-nl<n>-s<seed>/`` (resumable) and reused afterwards.
    """
    from mf_calc.model.mfchgnet import MFCHGNet
    from mf_calc.train import FrameDataset
    from mf_calc.train.baselines import train_plain

    name = f"low-nl{count_text(n_low)}-s{seed}"
    if name in ctx.low_models:
        return ctx.low_models[name]
    run_dir = ctx.work_dir / name
    config = base_config(scale, seed, (LOW,), device=ctx.device, progress=ctx.progress)
    check = as_json({"train_config": config_dict(config), "files": {"low": data.files["low"]}})
    done = run_dir / "done.json"
    if done.is_file():
        if stored_check(json.loads(done.read_text()).get("check")) != check:
            raise ValueError(f"{done}: this low-fidelity model was made with another configuration or data; "
                             f"use another --out or remove that folder")
        model = MFCHGNet.load(run_dir / "best")
    else:
        start = time.perf_counter()
        frames = take(data.low, pick(len(data.low), n_low, seed, "low"))
        model = train_plain(FrameDataset(frames), LOW, config, run_dir, resume=has_checkpoint(run_dir))
        write_json(done, {"check": check, "n_low_frames": len(frames), "time_s": time.perf_counter() - start}, indent=1)
        tidy(run_dir)
    ctx.low_models[name] = model
    return model


def fit_single(run: Run, data: Data, config, run_dir: Path, ctx: Context, scale: Scale):
    from mf_calc.train import train_single_fidelity

    frames = take(data.high, pick(len(data.high), run.n_high, run.seed, "high"))
    model = train_single_fidelity(frames, config, run_dir, high=HIGH, resume=has_checkpoint(run_dir))
    return model, {"n_high_frames": len(frames), "n_low_frames": 0}


def fit_mf(run: Run, data: Data, config, run_dir: Path, ctx: Context, scale: Scale):
    low = take(data.low, pick(len(data.low), run.n_low, run.seed, "low"))
    high = take(data.high, pick(len(data.high), run.n_high, run.seed, "high"))
    return train_mf(low + high, config, run_dir), {"n_high_frames": len(high), "n_low_frames": len(low)}


def fit_transfer(run: Run, data: Data, config, run_dir: Path, ctx: Context, scale: Scale):
    """Fine-tune the shared low-fidelity model on N r2scan frames, embeddings and convolutions frozen (paper 3.3)."""
    from mf_calc.train import TRANSFER_FROZEN, FrameDataset
    from mf_calc.train.baselines import train_plain

    pretrained = low_fidelity_model(run.n_low, run.seed, scale, data, ctx)
    high = take(data.high, pick(len(data.high), run.n_high, run.seed, "high"))
    model = train_plain(FrameDataset(high), HIGH, config, run_dir, init_state=pretrained.state_dict(),
                        freeze=TRANSFER_FROZEN, resume=has_checkpoint(run_dir))
    return model, {"n_high_frames": len(high), "n_low_frames": len(data.low) if run.n_low is None else run.n_low,
                   "low_model": f"low-nl{count_text(run.n_low)}-s{run.seed}"}


def fit_delta(run: Run, data: Data, config, run_dir: Path, ctx: Context, scale: Scale):
    """The shared low-fidelity model + a Δ model on min(N, max_paired) paired structures."""
    from mf_calc.train import DeltaModel, FrameDataset
    from mf_calc.train.baselines import DELTA, delta_frames, train_plain

    low_model = low_fidelity_model(run.n_low, run.seed, scale, data, ctx)
    n_pairs = len(data.paired_high)
    n = min(n_pairs if run.n_high is None else run.n_high, scale.max_paired, n_pairs)
    idx = pick(n_pairs, resolve(n, n_pairs), run.seed, "paired")
    pairs = FrameDataset(take(data.paired_low, idx) + take(data.paired_high, idx))
    delta_config = replace(config, targets=config.targets.replace("m", ""))
    delta = train_plain(FrameDataset(delta_frames(pairs, LOW, HIGH)), DELTA, delta_config, run_dir,
                        resume=has_checkpoint(run_dir))
    return DeltaModel(low_model.to(delta.device), delta), {
        "n_high_frames": len(data.high) if run.n_high is None else run.n_high, "n_paired_frames": len(idx),
        "n_low_frames": len(data.low) if run.n_low is None else run.n_low,
        "low_model": f"low-nl{count_text(run.n_low)}-s{run.seed}"}


FITTERS = {"single": fit_single, "mf": fit_mf, "transfer": fit_transfer, "delta": fit_delta}


def prediction_errors(preds: Sequence[dict], frames: Sequence) -> dict[str, float]:
    """MAE/RMSE of predictions (``MFCHGNet.predict`` / ``DeltaModel.predict`` dicts) against frame labels,
    in ``metrics.evaluate``'s units; magmoms only when predicted (else NaN)."""
    from ase.stress import voigt_6_to_full_3x3_stress

    from mf_calc.train.dataset import EV_A3_TO_GPA

    errors: dict[str, list] = {t: [] for t in TARGETS}
    for p, f in zip(preds, frames):
        if f.energy is not None:
            errors["e"].append([1000.0 * (p["energy_per_atom"] - f.energy / len(f.atoms))])
        if f.forces is not None:
            errors["f"].append(1000.0 * (p["forces"] - f.forces).ravel())
        if f.stress is not None:
            errors["s"].append(EV_A3_TO_GPA * (p["stress"] - voigt_6_to_full_3x3_stress(f.stress)).ravel())
        if f.magmoms is not None and "magmoms" in p:
            errors["m"].append(p["magmoms"] - np.abs(f.magmoms))
    row: dict[str, float] = {}
    for t in TARGETS:
        err = np.concatenate(errors[t]) if errors[t] else np.array([])
        row[f"{t}_mae"] = float(np.abs(err).mean()) if err.size else float("nan")
        row[f"{t}_rmse"] = float(np.sqrt(np.square(err).mean())) if err.size else float("nan")
        row[f"{t}_n"] = len(errors[t]) if t in "es" else sum(len(e) for e in errors[t]) // (3 if t == "f" else 1)
    return row


def test_set_errors(model, data: Data) -> dict[str, float]:
    """Errors on the r2scan test split at fidelity r2scan."""
    from mf_calc.train import DeltaModel, evaluate

    if isinstance(model, DeltaModel):
        frames = data.test.frames
        return prediction_errors(model.predict([f.atoms for f in frames]), frames)
    return evaluate(model, data.test.graphs(model))[HIGH]


def run_one(spec: Run, data: Data, scale: Scale, ctx: Context) -> dict:
    """Train one run (resuming its checkpoint if interrupted), test it, return its record."""
    config = train_config(scale, spec, ctx.device, ctx.progress)
    run_dir = ctx.work_dir / spec.key
    resumed = has_checkpoint(run_dir)  # an interrupted run continues: its time_s covers the rest only
    start = time.perf_counter()
    model, counts = FITTERS[spec.method](spec, data, config, run_dir, ctx, scale)
    train_s = time.perf_counter() - start
    metrics = test_set_errors(model, data)
    tidy(run_dir)
    return {
        "key": spec.key, "method": spec.method, "modules": spec.modules, "n_high": count_text(spec.n_high),
        "n_low": count_text(spec.n_low), "seed": spec.seed, **counts, "n_test_frames": len(data.test),
        "metrics": metrics, "train_s": train_s, "time_s": time.perf_counter() - start, "resumed": resumed,
        "scale": scale.name,
        "check": check_of(spec, scale, data, config), "model_dir": str(run_dir / "best"),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "torch_device": str(device_of(model)),
    }


def device_of(model) -> object:
    return getattr(model, "device", None) or model.delta.device


# ====================================================================== the sweep: plan, estimate, run

class RunStore:
    """Finished runs as ``<out>/runs/<key>.json``."""

    def __init__(self, out: Path):
        self.dir = Path(out) / "runs"

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def load(self, key: str) -> dict | None:
        path = self.path(key)
        return json.loads(path.read_text()) if path.is_file() else None

    def save(self, record: dict) -> None:
        write_json(self.path(record["key"]), record, indent=1)

    def finished(self, run: Run, scale: Scale, data: Data, device: str) -> bool:
        """True when the run's record exists and matches this configuration; a mismatch is an error."""
        record = self.load(run.key)
        if record is None:
            return False
        want = check_of(run, scale, data, train_config(scale, run, device, False))
        have = stored_check(record.get("check")) or {}
        if have != want:
            differ = sorted(k for k in want if have.get(k) != want[k])
            raise ValueError(f"{self.path(run.key)} was made with another configuration or data (differs in {differ}); "
                             f"use another --out or remove that folder")
        return True


def frames_of(run: Run, sizes: dict[str, int], scale: Scale) -> int:
    """Training frames of a run (the Δ model's paired frames for Δ)."""
    n_high = sizes["high"] if run.n_high is None else run.n_high
    n_low = sizes["low"] if run.n_low is None else run.n_low
    if run.method == "delta":
        return min(n_high, scale.max_paired, sizes.get("paired", 0))
    return n_high + (n_low if run.method == "mf" else 0)


def low_stages(runs: Iterable[Run]) -> set[tuple]:
    return {(r.n_low, r.seed) for r in runs if r.method in ("transfer", "delta")}


def work_units(runs: Sequence[Run], sizes: dict[str, int], scale: Scale, low_done: Callable[[tuple], bool]) -> float:
    """Structure-epochs of training (incl. shared low-fidelity models not yet trained) + test evaluations."""
    units = sum(frames_of(r, sizes, scale) for r in runs) * scale.epochs
    n_low = lambda n: sizes["low"] if n is None else n  # noqa: E731
    units += sum(n_low(s[0]) for s in low_stages(runs) if not low_done(s)) * scale.epochs
    return units * 1.05 + len(runs) * sizes["test"] / 3  # validation ≈ 5 %; evaluation ≈ 1/3 of a training step


def resolved_device(device: str) -> str:
    from mf_calc.train.distributed import resolve_device

    return resolve_device(device).type


def fmt_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe_plan(plan: list[Run], pending: list[Run], scale: Scale, data: Data, device: str, ctx: Context) -> str:
    speed = scale.speed.get(resolved_device(device), 1.0)
    units = work_units(pending, data.sizes, scale, lambda s: low_model_done(ctx, s))
    lows = [s for s in low_stages(pending) if not low_model_done(ctx, s)]
    per_exp = ", ".join(f"{name} {len({r.key for r in plan if r.experiment == name})}"
                        for name in dict.fromkeys(r.experiment for r in plan))
    sizes = ", ".join(f"{k} {v}" for k, v in data.sizes.items())
    return (f"scale {scale.name}: {scale.about}\n"
            f"data {data.root} ({sizes} frames){' [SYNTHETIC development data]' if data.synthetic else ''}\n"
            f"plan: {len(unique_runs(plan))} distinct training runs (per experiment: {per_exp}; shared runs counted once), "
            f"{len(unique_runs(plan)) - len(pending)} already finished, {len(pending)} to train"
            f"{f' + {len(lows)} shared low-fidelity model(s)' if lows else ''}\n"
            f"estimate: ≈{units:,.0f} structure-epochs ≈ {fmt_duration(units / speed)} at {speed:g} structures/s "
            f"(reference speed of this scale's model on {resolved_device(device)}; refined as runs finish)")


def low_model_done(ctx: Context, stage: tuple) -> bool:
    return (ctx.work_dir / f"low-nl{count_text(stage[0])}-s{stage[1]}" / "done.json").is_file()


def short_metrics(metrics: dict) -> str:
    return " ".join(f"{t.upper()} {metrics[f'{t}_mae']:.3g}" for t in TARGETS
                    if metrics.get(f"{t}_mae") is not None and math.isfinite(metrics[f"{t}_mae"]))


def run_pending(pending: list[Run], data: Data, scale: Scale, ctx: Context, store: RunStore) -> int:
    """Train the pending runs in order, saving each record as soon as it finishes; returns how many ran."""
    done_units, done_s = 0.0, 0.0
    for i, run in enumerate(pending, 1):
        remaining = pending[i - 1:]
        print(f"[{i}/{len(pending)}] {run.experiment} {run.label} N={count_text(run.n_high)} "
              f"n_low={count_text(run.n_low)} seed {run.seed} ({run.key})", flush=True)
        units = work_units([run], data.sizes, scale, lambda s: low_model_done(ctx, s))
        record = run_one(run, data, scale, ctx)
        store.save(record)
        done_units, done_s = done_units + units, done_s + record["time_s"]
        left = work_units(remaining[1:], data.sizes, scale, lambda s: low_model_done(ctx, s))
        print(f"    done in {fmt_duration(record['time_s'])}: test MAE {short_metrics(record['metrics'])} "
              f"(meV/atom, meV/Å, GPa, μB); ETA {fmt_duration(left * done_s / max(done_units, 1e-9))}", flush=True)
    return len(pending)


# ====================================================================== aggregation

def group_key(run: Run) -> tuple:
    return (run.experiment, run.label, run.n_high, run.n_low)


def aggregate(plan: list[Run], store: RunStore) -> list[dict]:
    """Mean ± std (sample std, over seeds) of every metric per (experiment, label, N, n_low); seeds without
    a finished run are left out (``n_seeds`` says how many there are)."""
    groups: dict[tuple, list[tuple[Run, dict]]] = {}
    for run in plan:
        record = store.load(run.key)
        groups.setdefault(group_key(run), [])
        if record is not None:
            groups[group_key(run)].append((run, record))
    rows = []
    for (experiment, label, n_high, n_low), members in groups.items():
        first = next((r for r in plan if group_key(r) == (experiment, label, n_high, n_low)))
        records = [rec for _, rec in members]
        row = {"experiment": experiment, "label": label, "method": first.method, "modules": first.modules,
               "n_high": count_text(n_high), "n_low": count_text(n_low), "n_seeds": len(records),
               "seeds": [run.seed for run, _ in members]}
        for count in ("n_high_frames", "n_low_frames"):
            row[count] = records[0][count] if records else None
        for t in TARGETS:
            for stat in STATS:
                values = np.array([nan_if_none(rec["metrics"].get(f"{t}_{stat}")) for rec in records], dtype=float)
                row[f"{t}_{stat}_mean"], row[f"{t}_{stat}_std"] = mean_std(values)
        row["time_s_mean"] = float(np.mean([rec["time_s"] for rec in records])) if records else float("nan")
        rows.append(row)
    return rows


def nan_if_none(value) -> float:
    return float("nan") if value is None else float(value)


def mean_std(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else float("nan")


def find(rows: list[dict], **conds) -> dict | None:
    return next((r for r in rows if all(r[k] == v for k, v in conds.items())), None)


def write_tables(rows: list[dict], out: Path, meta: dict) -> None:
    columns = list(rows[0]) if rows else []
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows({**r, "seeds": " ".join(map(str, r["seeds"]))} for r in rows)
    write_json(out / "results.json", {**meta, "rows": rows}, indent=1)


# ====================================================================== plots

def label_text(label: str, math_text: bool = False) -> str:
    """Display name: methods by name, ablation variants as letters (C̄ as $\\bar{C}$ in plots)."""
    if label in METHOD_NAMES:
        return METHOD_NAMES[label]
    if label.endswith(BAR) and math_text:
        return rf"$\bar{{\mathrm{{{label[0]}}}}}$"
    return label


def _panels(title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    fig.suptitle(title + "  (teacher labels, not DFT)", fontsize=10)
    return plt, fig, axes


def plot_curves(rows: list[dict], x_key: str, series_key: str, path: Path, title: str, xlabel: str,
                stat: str = "mae", logx: bool = True) -> None:
    """Four panels (e, f, s, m): ``stat`` vs ``x_key`` per series, error bars = std over seeds, log y."""
    plt, fig, axes = _panels(title)
    series = list(dict.fromkeys(r[series_key] for r in rows))
    ticks = sorted({float(r[x_key]) for r in rows if r[x_key] is not None})
    for ax, t in zip(axes, TARGETS):
        name, unit = TARGET_INFO[t]
        for s in series:
            pts = sorted((r[x_key], r[f"{t}_{stat}_mean"], r[f"{t}_{stat}_std"]) for r in rows
                         if r[series_key] == s and r[x_key] is not None and math.isfinite(r[f"{t}_{stat}_mean"]))
            if not pts:
                continue
            x, y, err = (np.array(v, dtype=float) for v in zip(*pts))
            ax.errorbar(x, y, yerr=np.nan_to_num(err), marker="o", capsize=3, label=label_text(str(s), True))
        if logx:
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
        ax.set_yscale("log")
        plain = plt.FuncFormatter(lambda v, _: f"{v:.3g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{name} {stat.upper()} ({unit})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ablation(rows: list[dict], path: Path, title: str) -> None:
    """Four bar panels (e, f, s, m MAE) over the ablation variants, error bars = std over seeds."""
    plt, fig, axes = _panels(title)
    labels = [r["label"] for r in rows]
    for ax, t in zip(axes, TARGETS):
        name, unit = TARGET_INFO[t]
        mean = np.array([r[f"{t}_mae_mean"] for r in rows], dtype=float)
        std = np.nan_to_num(np.array([r[f"{t}_mae_std"] for r in rows], dtype=float))
        ax.bar(range(len(rows)), np.nan_to_num(mean), yerr=std, capsize=3,
               color=["0.6" if lab == "N" else "C1" if lab == "F" else "C0" for lab in labels])
        ax.set_xticks(range(len(rows)), [label_text(lab, True) for lab in labels])
        ax.set_ylabel(f"{name} MAE ({unit})")
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_plots(rows: list[dict], out: Path) -> list[str]:
    """The PNGs of the experiments present in ``rows``; returns their file names."""
    written = []

    def of(experiment):
        return [r for r in rows if r["experiment"] == experiment and r["n_seeds"]]

    if of("lc"):
        for stat in STATS:
            plot_curves(of("lc"), "n_high_frames", "label", out / f"lc_{stat}.png",
                        f"Learning curves: single-fidelity vs MF-CHGNet, test {stat.upper()} at r2scan",
                        "r2scan training frames N", stat)
            written.append(f"lc_{stat}.png")
    if of("lf"):
        lf = [{**r, "series": f"N = {r['n_high']}"} for r in of("lf")]
        plot_curves(lf, "n_low_frames", "series", out / "lf_mae.png",
                    "MF-CHGNet vs number of low-fidelity (pbe_u) frames, test MAE at r2scan",
                    "pbe_u training frames (0 = single-fidelity)", logx=False)
        written.append("lf_mae.png")
    if of("ablation"):
        plot_ablation(of("ablation"), out / "ablation_mae.png",
                      f"Ablation of the fidelity-dependent modules at N = {of('ablation')[0]['n_high']}, test MAE")
        written.append("ablation_mae.png")
    if of("tl"):
        plot_curves(of("tl"), "n_high_frames", "label", out / "tl_mae.png",
                    "MF-CHGNet vs transfer learning vs Δ-learning, test MAE at r2scan", "r2scan training frames N")
        written.append("tl_mae.png")
    return written


# ====================================================================== README: tables and findings

def cell(row: dict, t: str, stat: str) -> str:
    mean, std = row[f"{t}_{stat}_mean"], row[f"{t}_{stat}_std"]
    if mean is None or not math.isfinite(mean):
        return "–"
    return f"{mean:.3g}" if std is None or not math.isfinite(std) else f"{mean:.3g} ± {std:.2g}"


def markdown_table(rows: list[dict], first: Sequence[tuple[str, str]]) -> str:
    """One markdown table: the ``first`` (key, header) columns, then MAE and RMSE of e, f, s, m."""
    head = [h for _, h in first] + [f"{TARGET_INFO[t][0]} {stat.upper()} ({TARGET_INFO[t][1]})"
                                    for t in TARGETS for stat in STATS] + ["seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        values = [label_text(str(r[k])) if r[k] != "" else "none" for k, _ in first]
        values += [cell(r, t, s) for t in TARGETS for s in STATS]
        lines.append("| " + " | ".join(values + [str(r["n_seeds"])]) + " |")
    return "\n".join(lines)


TABLE_COLUMNS = {
    "lc": [("n_high", "N"), ("label", "method")],
    "lf": [("n_high", "N"), ("n_low", "n_low"), ("label", "method")],
    "ablation": [("label", "variant"), ("modules", "modules")],
    "tl": [("n_high", "N"), ("label", "method")],
}
TABLE_TITLES = {
    "lc": "Learning curves (paper Fig. 2)", "lf": "Low-fidelity size sweep (paper Fig. 3)",
    "ablation": "Ablation of the fidelity-dependent modules (paper Fig. 4)",
    "tl": "MF-CHGNet vs transfer learning vs Δ-learning (paper Fig. 5)",
}


def ordered(rows: list[dict], experiment: str) -> list[dict]:
    return [r for r in rows if r["experiment"] == experiment]


def mae(row: dict | None, t: str) -> float:
    value = None if row is None else row.get(f"{t}_mae_mean")
    return float("nan") if value is None else float(value)


def scatter_note(a: dict, b: dict, t: str) -> str:
    """' (within the seed scatter)' when the means differ by less than the sum of the stds."""
    sa, sb = a.get(f"{t}_mae_std"), b.get(f"{t}_mae_std")
    if sa is None or sb is None or not (math.isfinite(sa) and math.isfinite(sb)):
        return ""
    return " (within the seed scatter)" if abs(mae(a, t) - mae(b, t)) < sa + sb else ""


def compare(better: str, a: dict, other: str, b: dict, t: str, where: str) -> str:
    """'A beats B on forces at X by r× (a vs b unit)' or 'A does not beat B ...', computed from the rows."""
    name, unit = TARGET_INFO[t]
    ratio = mae(b, t) / mae(a, t)
    on = f"on {name} {where}".strip()
    verdict = f"beats {other} {on} by {ratio:.2f}×" if ratio > 1 else f"does not beat {other} {on}"
    numbers = f"{mae(a, t):.3g} vs {mae(b, t):.3g} {unit}" + ("" if ratio > 1 else f", {ratio:.2f}×")
    return f"{better} {verdict}: {numbers}{scatter_note(a, b, t)}"


def lc_findings(rows: list[dict]) -> list[str]:
    single = [r for r in rows if r["label"] == "single" and r["n_seeds"]]
    mf = [r for r in rows if r["label"] == "mf" and r["n_seeds"]]
    ns = [r["n_high"] for r in single if find(mf, n_high=r["n_high"])]
    if not ns:
        return []
    out = []
    for n in dict.fromkeys((ns[0], ns[-1])):
        s, m = find(single, n_high=n), find(mf, n_high=n)
        wins = [TARGET_INFO[t][0] for t in TARGETS if mae(m, t) < mae(s, t)]
        out.append(compare("MF", m, "single-fidelity", s, "f", f"at N={n}") + "; MF has the lower MAE on "
                   + (", ".join(wins) if wins else "none") + " of the four targets there.")
    for label, series in (("single-fidelity", single), ("MF", mf)):
        first, last = series[0], series[-1]
        if first is not last:
            out.append(f"{label}: force MAE {mae(first, 'f'):.3g} → {mae(last, 'f'):.3g} meV/Å from N={first['n_high']} "
                       f"to N={last['n_high']} ({'falls' if mae(last, 'f') < mae(first, 'f') else 'does not fall'}).")
    return out


def lf_findings(rows: list[dict]) -> list[str]:
    out = []
    for n in dict.fromkeys(r["n_high"] for r in rows):
        series = [r for r in rows if r["n_high"] == n and r["n_seeds"]]
        if len(series) < 2:
            continue
        first, last = series[0], series[-1]
        f = [mae(r, "f") for r in series]
        monotone = all(b <= a for a, b in zip(f, f[1:]))
        out.append(f"At N={n}, going from {first['n_low_frames']} to {last['n_low_frames']} low-fidelity frames changes "
                   f"the force MAE from {f[0]:.3g} to {f[-1]:.3g} meV/Å ({f[0] / f[-1]:.2f}×), "
                   f"{'monotonically' if monotone else 'not monotonically'}; energy MAE "
                   f"{mae(first, 'e'):.3g} → {mae(last, 'e'):.3g} meV/atom.")
    return out


def ablation_score(row: dict, ref: dict) -> float:
    """Mean over e, f, s, m of MAE / MAE of N (the paper's 'comprehensive accuracy'; < 1 = better than N)."""
    ratios = [mae(row, t) / mae(ref, t) for t in TARGETS if math.isfinite(mae(row, t) / mae(ref, t))]
    return float(np.mean(ratios)) if ratios else float("nan")


def ablation_findings(rows: list[dict]) -> list[str]:
    ref = find(rows, label="N")
    rows = [r for r in rows if r["n_seeds"]]
    if ref is None or not ref["n_seeds"] or len(rows) < 2:
        return []
    scores = {r["label"]: ablation_score(r, ref) for r in rows if r["label"] != "N"}
    ranking = sorted(scores, key=scores.get)
    better = [v for v in ranking if scores[v] < 1]
    out = ["Mean MAE ratio to N over the four targets (lower is better): "
           + ", ".join(f"{v} {scores[v]:.2f}" for v in ranking) + ".",
           f"Better than N on that score: {', '.join(better) if better else 'none'}; "
           f"worse: {', '.join(v for v in ranking if v not in better) or 'none'}; best: {ranking[0]}"
           + (" (F, all modules, as in the paper)." if ranking[0] == "F" else " (not F, unlike the paper).")]
    full = find(rows, label="F")
    for v in ("C" + BAR, "E" + BAR):
        other = find(rows, label=v)
        if full and other:
            out.append(compare("F", full, v, other, "e", "") + ".")
    return out


def tl_findings(rows: list[dict]) -> list[str]:
    out = []
    ns = list(dict.fromkeys(r["n_high"] for r in rows if r["n_seeds"]))
    for t in ("f", "m"):
        best = []
        for n in ns:
            cand = [r for r in rows if r["n_high"] == n and r["n_seeds"] and math.isfinite(mae(r, t))]
            if cand:
                best.append((n, min(cand, key=lambda r: mae(r, t))["label"]))
        if best:
            wins = [n for n, lab in best if lab == "mf"]
            out.append(f"Lowest {TARGET_INFO[t][0]} MAE: " + ", ".join(f"N={n}: {METHOD_NAMES[lab]}" for n, lab in best)
                       + f" (MF best at {len(wins)} of {len(best)} N).")
    if ns:
        mf, tr = find(rows, n_high=ns[0], label="mf"), find(rows, n_high=ns[0], label="transfer")
        if mf and tr and mf["n_seeds"] and tr["n_seeds"]:
            out.append(compare("MF", mf, "transfer learning", tr, "m", f"at N={ns[0]}") + ".")
    return out


FINDINGS = {"lc": lc_findings, "lf": lf_findings, "ablation": ablation_findings, "tl": tl_findings}


def caveats(rows: list[dict], scale: Scale, synthetic: bool) -> list[str]:
    out = []
    if synthetic:
        out.append("**This output was made on synthetic development data labelled by a random tiny MF-CHGNet, not on "
                   "the benchmark data: its numbers mean nothing.**")
    if scale.name == "smoke":
        out.append("Smoke scale: a tiny model trained for a few steps on a handful of frames; it only exercises the "
                   "code, and the comparisons below are noise.")
    seeds = {r["n_seeds"] for r in rows}
    if seeds and min(seeds) < 2:
        out.append("Some configurations have fewer than 2 finished seeds: no scatter is available for them, so "
                   "differences may be noise.")
    missing = sum(1 for r in rows if r["n_seeds"] == 0)
    if missing:
        out.append(f"{missing} configuration(s) have no finished run yet (shown as –).")
    return out


def readme_text(rows: list[dict], scale: Scale, meta: dict, plots: list[str], synthetic: bool) -> str:
    model = ", ".join(f"{k}={v}" for k, v in scale.model.items()) or "paper sizes (64 features, 4 convolutions, 31+31 bases)"
    parts = [
        f"# MF-CHGNet training experiments — scale `{scale.name}`", "",
        TEACHER_SENTENCE, "",
        f"Written by `benchmarks/experiments.py` on {meta['written']}. Exact command of this report:", "",
        f"    {meta['command']}", "",
        "All commands that wrote into this folder (`commands.txt`; training runs are resumed and shared, "
        "so each run was trained by one of them):", "",
        *[f"    {line}" for line in meta["commands"]], "",
        f"Scale `{scale.name}`: {scale.about}. Model from scratch: {model}; {meta['epochs']} epochs; paper Table 1 "
        f"optimisation (Adam, lr 0.005, cosine, batch 4, Huber, efsm 1:1:0.1:0.1); seeds {meta['seeds']} (the "
        f"seeds column says how many finished); experiments {meta['experiments']}; N values: "
        + "; ".join(f"{name} {list(values)}" for name, values in (("lc", scale.lc_n), ("lf", scale.lf_n_high),
                                                                  ("tl", scale.tl_n), ("ablation", [scale.ablation_n]))
                    if name in meta["experiments"]) + "; "
        f"low-fidelity frames in lc/ablation/tl runs: {count_text(scale.n_low)}; 10 % of each fidelity's frames "
        f"held out for best-epoch selection. Data: `{meta['data']}` "
        f"({', '.join(f'{k} {v}' for k, v in meta['sizes'].items())} frames). Test: the r2scan test split "
        f"({meta['sizes'].get('test')} frames) at fidelity r2scan. Device: {meta['device']}.", "",
        "Errors are mean ± sample std over seeds (one seed: mean only). Units: energy meV/atom, forces meV/Å "
        "(per component), stress GPa (per 3×3 component), magmoms μB. Δ-learning predicts no magmoms (–). "
        "In the lf sweep n_low = 0 is the single-fidelity model.", "",
        "## What we see", "",
    ]
    notes = caveats(rows, scale, synthetic)
    for name in FINDINGS:
        notes += [f"*{name}*: {s}" for s in FINDINGS[name](ordered(rows, name))]
    parts += [f"- {n}" for n in notes] or ["- no finished runs yet"]
    for name, title in TABLE_TITLES.items():
        if ordered(rows, name):
            parts += ["", f"## {title}", "", markdown_table(ordered(rows, name), TABLE_COLUMNS[name])]
    if plots:
        parts += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    parts += ["", "## Files", "",
              "`runs/<run>.json`: one training run each (config, data hashes, frame counts, test metrics, time); "
              "`results.csv` / `results.json`: the tables above; `work/`: training folders (best models; not tracked). "
              "Rerunning the command skips finished runs; `--report-only` rebuilds this report.", ""]
    return "\n".join(parts)


def report(plan: list[Run], out: Path, scale: Scale, meta: dict, synthetic: bool) -> list[dict]:
    """results.csv / results.json, the plots and README.md from the finished runs of ``plan``."""
    rows = aggregate(plan, RunStore(out))
    write_tables(rows, out, meta)
    plots = make_plots(rows, out)
    (out / "README.md").write_text(readme_text(rows, scale, meta, plots, synthetic))
    return rows


# ====================================================================== synthetic data (tests and development)

def write_synthetic_data(out_dir, n_high: int = 10, n_low: int = 10, n_test: int = 4, n_paired: int = 4,
                         seed: int = 0, supercell=(1, 1, 1)) -> Path:
    """The benchmark file set, labelled by a random tiny MF-CHGNet (not the benchmark teachers): for tests.

    Writes the five ``DATA_FILES`` and ``SYNTHETIC.json``; low fidelity without magmoms, as in the benchmark.
    """
    import ase.io
    import torch
    from ase.calculators.singlepoint import SinglePointCalculator

    from mf_calc.model.mfchgnet import MFCHGNet
    from mf_calc.structures import lmfp
    from mf_calc.train import teacher_frames

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    teacher = MFCHGNet(fidelities=(LOW, HIGH), modules="EMRC", **TINY_MODEL).eval()

    def structures(n, offset):
        atoms = []
        for k in range(offset, offset + n):
            a = lmfp(x_li=(1.0, 0.75, 0.5, 0.25)[k % 4], y_mn=(0.0, 0.25, 0.5, 0.75)[(k // 4) % 4],
                     supercell=supercell, seed=seed + k)
            a.rattle(0.05, seed=seed + k)
            atoms.append(a)
        return atoms

    def write(role, atoms, fidelity):
        frames = teacher_frames(teacher, atoms, fidelity, fidelity, labels="efs" if fidelity == LOW else "efsm")
        images = []
        for f in frames:
            a = f.atoms.copy()
            a.info["fidelity"] = f.fidelity
            a.calc = SinglePointCalculator(a, energy=f.energy, forces=f.forces, stress=f.stress, magmoms=f.magmoms)
            images.append(a)
        ase.io.write(out / DATA_FILES[role], images, format="extxyz")

    paired = structures(n_paired, 3000)
    write("high", structures(n_high, 0), HIGH)
    write("low", structures(n_low, 1000), LOW)
    write("test", structures(n_test, 2000), HIGH)
    write("paired_high", paired, HIGH)
    write("paired_low", paired, LOW)
    (out / SYNTHETIC_MARKER).write_text(json.dumps({"teacher": "random tiny MFCHGNet", "seed": seed}) + "\n")
    return out


# ====================================================================== command line

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python benchmarks/experiments.py", description=__doc__.split("\n\n")[0],
        epilog="Scales: " + "; ".join(f"{s.name}: {s.about}" for s in SCALES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", required=True, choices=list(SCALES))
    p.add_argument("--experiments", help=f"comma-separated of {','.join(EXPERIMENTS)} (default: the scale's)")
    p.add_argument("--seeds", type=int, nargs="+", help="default: the scale's (smoke 0; cpu, paper 0 1 2)")
    p.add_argument("--data", default=str(HERE / "data"), help="folder of the benchmark files (default benchmarks/data)")
    p.add_argument("--out", help="output folder (default benchmarks/results/experiments_<scale>)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--epochs", type=int, help="override the scale's epochs (use a new --out)")
    p.add_argument("--n-high", help="comma-separated N values kept from the scale's lc/lf/tl sizes, e.g. 50,100 "
                                    "(runs are shared, so a later run without it only adds the rest)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (1 is fastest on a busy 2-core machine)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the estimate, train nothing")
    p.add_argument("--report-only", action="store_true", help="train nothing; rebuild tables, plots and README")
    p.add_argument("--verbose", action="store_true", help="per-epoch progress of every training run")
    args = p.parse_args(argv)
    if args.experiments:
        args.experiments = [e.strip() for e in args.experiments.split(",") if e.strip()]
        unknown = sorted(set(args.experiments) - set(EXPERIMENTS))
        if unknown:
            p.error(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}")
    if args.n_high:
        try:
            args.n_high = tuple(int(x) for x in args.n_high.split(",") if x.strip())
        except ValueError:
            p.error(f"--n-high must be comma-separated integers, got {args.n_high!r}")
    return args


def restrict_n(scale: Scale, keep: tuple) -> Scale:
    """The scale with only the N values in ``keep`` in its lc, lf and tl sweeps (ablation N unchanged)."""
    def pick(values):
        return tuple(n for n in values if n in keep)
    if not (set(keep) & (set(scale.lc_n) | set(scale.lf_n_high) | set(scale.tl_n))):
        raise SystemExit(f"--n-high {list(keep)} keeps none of scale {scale.name}'s N values "
                         f"{sorted(set(scale.lc_n) | set(scale.tl_n), key=str)}")
    return replace(scale, lc_n=pick(scale.lc_n), lf_n_high=pick(scale.lf_n_high), tl_n=pick(scale.tl_n))


def main(argv: Sequence[str] | None = None) -> dict:
    """Plan, train what is not finished, report. Returns {"trained", "skipped", "out", "rows"}."""
    command = "python benchmarks/experiments.py " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    args = parse_args(argv)
    scale = SCALES[args.scale]
    if args.epochs:
        scale = replace(scale, epochs=args.epochs)
    if args.n_high:
        scale = restrict_n(scale, args.n_high)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    experiments = args.experiments or list(scale.experiments)
    seeds = tuple(args.seeds) if args.seeds else scale.seeds
    out = Path(args.out) if args.out else HERE / "results" / f"experiments_{scale.name}"
    data = load_data(args.data, scale, paired="tl" in experiments)
    plan = build_plan(experiments, scale, seeds, data.sizes)
    store = RunStore(out)
    ctx = Context(work_dir=out / "work", device=args.device, progress=args.verbose)
    pending = [r for r in unique_runs(plan) if not store.finished(r, scale, data, args.device)]
    print(describe_plan(plan, pending, scale, data, args.device, ctx), flush=True)
    if args.dry_run:
        return {"trained": 0, "skipped": len(unique_runs(plan)) - len(pending), "out": out, "rows": []}
    out.mkdir(parents=True, exist_ok=True)
    (out / ".gitignore").write_text("work/\n")
    with open(out / "commands.txt", "a") as fh:  # every command that wrote into this folder, in order
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {command}\n")
    start = time.perf_counter()
    trained = 0 if args.report_only else run_pending(pending, data, scale, ctx, store)
    meta = {"scale": scale.name, "command": command, "experiments": experiments, "seeds": list(seeds),
            "epochs": scale.epochs, "model": scale.model, "data": str(data.root), "sizes": data.sizes,
            "synthetic_data": data.synthetic, "device": resolved_device(args.device),
            "written": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(),
            "commands": (out / "commands.txt").read_text().splitlines(),
            "units": {t: u for t, (_, u) in TARGET_INFO.items()}, "labels": TEACHER_SENTENCE.strip("*")}
    rows = report(plan, out, scale, meta, data.synthetic)
    print(f"{trained} run(s) trained in {fmt_duration(time.perf_counter() - start)}, "
          f"{len(unique_runs(plan)) - len(pending)} skipped (finished before); results in {out}", flush=True)
    return {"trained": trained, "skipped": len(unique_runs(plan)) - len(pending), "out": out, "rows": rows}


if __name__ == "__main__":
    main()
