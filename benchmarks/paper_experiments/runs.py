"""Training one run (single, MF, transfer, Δ), reusing finished runs, and the sweep with its time estimate.

Errors on the test split (at the high fidelity) come from ``mf_calc.train.metrics.evaluate`` for every method (the Δ model
included); MAE and RMSE of energy (meV/atom), forces (meV/Å, per component), stress (GPa, per 3×3
component) and magmoms (μB).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from mf_calc.atomic import write_json
from mf_calc.train.dataset import SPLIT_PROTOCOL, TARGETS

from .data import Data, pick, take
from .plan import WARM, Run, Scale, count_text, resolve, unique_runs

FILES_USED = {"single": ("high", "test"), "mf": ("high", "low", "test"), "transfer": ("high", "low", "test"),
              "delta": ("low", "paired_high", "paired_low", "test")}


def base_config(scale: Scale, seed: int, fidelities: tuple[str, ...], modules: str = "", device: str = "auto",
                progress: bool = False, init: str = "scratch", low_fraction: float | None = None,
                frozen: bool = False):
    """TrainConfig: paper Table 1 defaults, from ``init`` (scratch or a pretrained model), the scale's model
    size and epochs; with both fidelities, ``low_fraction`` (default: the scale's) of the low-fidelity frames per
    epoch; ``frozen``: embeddings and convolutions fixed (``TRANSFER_FROZEN``)."""
    from mf_calc.train import TRANSFER_FROZEN, TrainConfig

    model = dict(scale.model) if init == "scratch" else {}  # a warm start has the pretrained model's sizes
    share = scale.share_of(low_fraction)
    fraction = {scale.low: share} if share < 1 and scale.low in fidelities[:-1] else {}
    return TrainConfig(init=init, modules=modules, fidelities=fidelities, model=model, fidelity_fraction=fraction,
                       freeze=TRANSFER_FROZEN if frozen else (), epochs=scale.epochs_of(init), seed=seed,
                       device=device, progress=progress)


def train_config(scale: Scale, run: Run, device: str = "auto", progress: bool = False):
    fidelities = (scale.low, scale.high) if run.method == "mf" else (scale.high,)
    return base_config(scale, run.seed, fidelities, run.modules, device, progress, run.init, run.low_fraction,
                       run.frozen)


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
                    "max_test": scale.max_test, "max_paired": scale.max_paired if run.method == "delta" else None,
                    "validation_split": SPLIT_PROTOCOL})


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


def low_model_name(n_low: int | None, seed: int) -> str:
    """The folder (under ``work/``) of the shared low-fidelity model of (n_low, seed)."""
    return f"low-nl{count_text(n_low)}-s{seed}"


def low_fidelity_model(n_low: int | None, seed: int, scale: Scale, data: Data, ctx: Context):
    """Plain CHGNet on the low-fidelity frames: transfer learning's pre-training and Δ-learning's low model.

    Trained once per (n_low, seed) into ``work/low-nl<n>-s<seed>/`` (resumable) and reused afterwards.
    """
    from mf_calc.model.mfchgnet import MFCHGNet
    from mf_calc.train import FrameDataset
    from mf_calc.train.baselines import train_plain

    name = low_model_name(n_low, seed)
    if name in ctx.low_models:
        return ctx.low_models[name]
    run_dir = ctx.work_dir / name
    config = base_config(scale, seed, (scale.low,), device=ctx.device, progress=ctx.progress)
    check = as_json({"train_config": config_dict(config), "files": {"low": data.files["low"]},
                     "validation_split": SPLIT_PROTOCOL})
    done = run_dir / "done.json"
    if done.is_file():
        if stored_check(json.loads(done.read_text()).get("check")) != check:
            raise ValueError(f"{done}: this low-fidelity model was made with another configuration or data; "
                             f"use another --out or remove that folder")
        model = MFCHGNet.load(run_dir / "best")
    else:
        start = time.perf_counter()
        frames = take(data.low, pick(len(data.low), n_low, seed, "low"))
        model = train_plain(FrameDataset(frames), scale.low, config, run_dir, resume=has_checkpoint(run_dir))
        write_json(done, {"check": check, "n_low_frames": len(frames), "time_s": time.perf_counter() - start}, indent=1)
        tidy(run_dir)
    ctx.low_models[name] = model
    return model


def fit_single(run: Run, data: Data, config, run_dir: Path, ctx: Context, scale: Scale):
    from mf_calc.train import train_single_fidelity

    frames = take(data.high, pick(len(data.high), run.n_high, run.seed, "high"))
    model = train_single_fidelity(frames, config, run_dir, high=scale.high, resume=has_checkpoint(run_dir))
    return model, {"n_high_frames": len(frames), "n_low_frames": 0}


def fit_mf(run: Run, data: Data, config, run_dir: Path, ctx: Context, scale: Scale):
    low = take(data.low, pick(len(data.low), run.n_low, run.seed, "low"))
    high = take(data.high, pick(len(data.high), run.n_high, run.seed, "high"))
    from mf_calc.train import FrameDataset, train_multi_fidelity

    trainer = train_multi_fidelity(FrameDataset(low + high), config, run_dir, resume=has_checkpoint(run_dir))
    return trainer.best_model(), {"n_high_frames": len(high), "n_low_frames": len(low)}


def fit_transfer(run: Run, data: Data, config, run_dir: Path, ctx: Context, scale: Scale):
    """Fine-tune the shared low-fidelity model on N high-fidelity frames, embeddings and convolutions frozen (paper 3.3)."""
    from mf_calc.train import TRANSFER_FROZEN, FrameDataset
    from mf_calc.train.baselines import train_plain

    pretrained = low_fidelity_model(run.n_low, run.seed, scale, data, ctx)
    high = take(data.high, pick(len(data.high), run.n_high, run.seed, "high"))
    model = train_plain(FrameDataset(high), scale.high, config, run_dir, init_state=pretrained.state_dict(),
                        freeze=TRANSFER_FROZEN, resume=has_checkpoint(run_dir))
    return model, {"n_high_frames": len(high), "n_low_frames": len(data.low) if run.n_low is None else run.n_low,
                   "low_model": low_model_name(run.n_low, run.seed)}


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
    delta = train_plain(FrameDataset(delta_frames(pairs, scale.low, scale.high)), DELTA, delta_config, run_dir,
                        resume=has_checkpoint(run_dir))
    return DeltaModel(low_model.to(delta.device), delta, scale.high), {
        "n_high_frames": len(data.high) if run.n_high is None else run.n_high, "n_paired_frames": len(idx),
        "n_low_frames": len(data.low) if run.n_low is None else run.n_low,
        "low_model": low_model_name(run.n_low, run.seed)}


FITTERS = {"single": fit_single, "mf": fit_mf, "transfer": fit_transfer, "delta": fit_delta}


def test_set_errors(model, data: Data, scale: Scale) -> dict[str, float]:
    """Errors on the test split at the high fidelity (``train.metrics.evaluate``, Δ model included)."""
    from mf_calc.train import evaluate

    return evaluate(model, data.test.graphs(model))[scale.high]


def run_one(spec: Run, data: Data, scale: Scale, ctx: Context) -> dict:
    """Train one run (resuming its checkpoint if interrupted), test it, return its record."""
    config = train_config(scale, spec, ctx.device, ctx.progress)
    run_dir = ctx.work_dir / spec.key
    resumed = has_checkpoint(run_dir)  # an interrupted run continues: its time_s covers the rest only
    start = time.perf_counter()
    model, counts = FITTERS[spec.method](spec, data, config, run_dir, ctx, scale)
    train_s = time.perf_counter() - start
    metrics = test_set_errors(model, data, scale)
    tidy(run_dir)
    return {
        "key": spec.key, "method": spec.method, "modules": spec.modules, "n_high": count_text(spec.n_high),
        "n_low": count_text(spec.n_low), "seed": spec.seed, **counts, "n_test_frames": len(data.test),
        "metrics": metrics, "train_s": train_s, "time_s": time.perf_counter() - start, "resumed": resumed,
        "scale": scale.name,
        "check": check_of(spec, scale, data, config), "model_dir": str(run_dir / "best"),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "torch_device": str(model.device),
    }


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


# ====================================================================== the sweep: estimate and run

def frames_of(run: Run, sizes: dict[str, int], scale: Scale) -> float:
    """Training frames per epoch of a run (the Δ model's paired frames for Δ; an MF run's low-fidelity frames
    times its share per epoch, by default the scale's ``low_fraction``)."""
    n_high = sizes["high"] if run.n_high is None else run.n_high
    n_low = sizes["low"] if run.n_low is None else run.n_low
    if run.method == "delta":
        return min(n_high, scale.max_paired, sizes.get("paired", 0))
    return n_high + (n_low * scale.share_of(run.low_fraction) if run.method == "mf" else 0)


def low_stages(runs: Iterable[Run]) -> set[tuple]:
    return {(r.n_low, r.seed) for r in runs if r.method in ("transfer", "delta")}


def estimated_seconds(runs: Sequence[Run], sizes: dict[str, int], scale: Scale, device: str,
                      low_done: Callable[[tuple], bool]) -> float:
    """Training time at the scale's reference speeds: structure-epochs of each run (and of the shared
    low-fidelity models not yet trained) over the speed of its model size, + test evaluations."""
    seconds = sum(frames_of(r, sizes, scale) * scale.epochs_of(r.init) / scale.speed_of(r.init, device) for r in runs)
    n_low = lambda n: sizes["low"] if n is None else n  # noqa: E731
    seconds += sum(n_low(s[0]) for s in low_stages(runs) if not low_done(s)) * scale.epochs / scale.speed_of(
        "scratch", device)
    evaluations = len(runs) * sizes["test"] / 3 / scale.speed_of("scratch", device)  # ≈ 1/3 of a training step
    return seconds * 1.05 + evaluations  # validation ≈ 5 %


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
    kind = resolved_device(device)
    seconds = estimated_seconds(pending, data.sizes, scale, kind, lambda s: low_model_done(ctx, s))
    speeds = f"{scale.speed_of('scratch', kind):g} structures/s"
    if any(r.init != "scratch" for r in pending) and scale.warm_speed:
        speeds += f" (warm-started: {scale.speed_of(WARM, kind):g})"
    lows = [s for s in low_stages(pending) if not low_model_done(ctx, s)]
    per_exp = ", ".join(f"{name} {len({r.key for r in plan if r.experiment == name})}"
                        for name in dict.fromkeys(r.experiment for r in plan))
    sizes = ", ".join(f"{k} {v}" for k, v in data.sizes.items())
    return (f"scale {scale.name}: {scale.about}\n"
            f"data {data.root} ({sizes} frames){' [SYNTHETIC development data]' if data.synthetic else ''}\n"
            f"plan: {len(unique_runs(plan))} distinct training runs (per experiment: {per_exp}; shared runs counted once), "
            f"{len(unique_runs(plan)) - len(pending)} already finished, {len(pending)} to train"
            f"{f' + {len(lows)} shared low-fidelity model(s)' if lows else ''}\n"
            f"estimate: ≈{fmt_duration(seconds)} at {speeds} (reference speeds of this scale's models on {kind}; "
            f"refined as runs finish)")


def low_model_done(ctx: Context, stage: tuple) -> bool:
    return (ctx.work_dir / low_model_name(*stage) / "done.json").is_file()


def short_metrics(metrics: dict) -> str:
    return " ".join(f"{t.upper()} {metrics[f'{t}_mae']:.3g}" for t in TARGETS
                    if metrics.get(f"{t}_mae") is not None and math.isfinite(metrics[f"{t}_mae"]))


def run_pending(pending: list[Run], data: Data, scale: Scale, ctx: Context, store: RunStore) -> int:
    """Train the pending runs in order, saving each record as soon as it finishes; returns how many ran."""
    kind = resolved_device(ctx.device)
    estimated, done_s = 0.0, 0.0
    for i, run in enumerate(pending, 1):
        remaining = pending[i - 1:]
        print(f"[{i}/{len(pending)}] {run.experiment} {run.label} N={count_text(run.n_high)} "
              f"n_low={count_text(run.n_low)} seed {run.seed} ({run.key})", flush=True)
        expected = estimated_seconds([run], data.sizes, scale, kind, lambda s: low_model_done(ctx, s))
        record = run_one(run, data, scale, ctx)
        store.save(record)
        estimated, done_s = estimated + expected, done_s + record["time_s"]
        left = estimated_seconds(remaining[1:], data.sizes, scale, kind, lambda s: low_model_done(ctx, s))
        print(f"    done in {fmt_duration(record['time_s'])}: test MAE {short_metrics(record['metrics'])} "
              f"(meV/atom, meV/Å, GPa, μB); ETA {fmt_duration(left * done_s / max(estimated, 1e-9))}", flush=True)
    return len(pending)
