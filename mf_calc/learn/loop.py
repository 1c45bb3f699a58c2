"""One active-learning round, every step written to disk so that a rerun continues where it stopped.

A round r in ``DIR/round_RR/``:

1. ``committee/m{k}/`` -- K models fine-tuned from the starting model, seeds differing, on the base data and
   every frame labelled in rounds < r (``mf_calc.train``); member 0 is the round's model, the only one needed
   once the picks are made.
2. ``explore/`` and ``candidates.extxyz`` -- MD and relaxations driven by member 0 (:mod:`mf_calc.learn.explore`).
3. ``selection.json`` and ``selected.extxyz`` -- the committee's force deviation of every candidate and the picks
   (:mod:`mf_calc.learn.select`), or random picks at the same budget (``select: random``, the control arm).
4. ``labels/`` -- DFT labels of the picks (``mf_calc.label``; one record per frame, resumable).
5. ``evaluation.json`` and ``report.md`` -- member 0's errors on the evaluation files, the data used, the DFT
   core-hours spent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ase.io
import numpy as np

from mf_calc.atomic import atomic_write, write_json
from mf_calc.constants import dataclass_from_dict
from mf_calc.learn.explore import ExploreSettings, explore
from mf_calc.learn.select import SelectSettings, force_deviation, pick_random, pick_uncertain

log = logging.getLogger(__name__)
SETTINGS_FILE = "learn.json"
STEPS = ("train", "explore", "select", "label", "evaluate")


@dataclass(frozen=True)
class LearnSettings:
    """An active-learning run. ``data``: labelled files (``FILE[:FIDELITY]``) every round trains on; ``evaluate``:
    labelled files the round's model is scored on (never trained on); ``train``: TrainConfig fields for the
    committee (``init`` is ``model``); ``select``: ``committee`` or ``random``."""

    model: str
    data: tuple[str, ...]
    fidelity: str = "gpaw_afm"
    spec: str = "gpaw_afm"
    committee: int = 3
    select: str = "committee"
    train: dict = field(default_factory=dict)
    explore: dict = field(default_factory=dict)
    selection: dict = field(default_factory=dict)
    evaluate: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "data", tuple(self.data))
        object.__setattr__(self, "evaluate", tuple(self.evaluate))
        if self.select not in ("committee", "random"):
            raise ValueError(f"select must be 'committee' or 'random', got {self.select!r}")
        if self.committee < 2:
            raise ValueError(f"a committee needs at least 2 models, got {self.committee}")
        if "init" in self.train:
            raise ValueError("train: 'init' is the settings' 'model'")
        ExploreSettings(**self.explore)
        SelectSettings(**self.selection)

    @classmethod
    def from_dict(cls, data: dict) -> LearnSettings:
        return dataclass_from_dict(cls, data, "learn setting")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def open_run(directory, settings: LearnSettings | None = None) -> LearnSettings:
    """The settings of the run in ``directory``: written there by the first call, checked by later ones."""
    path = Path(directory) / SETTINGS_FILE
    if path.is_file():
        saved = LearnSettings.from_dict(json.loads(path.read_text()))
        if settings is not None and settings.to_dict() != saved.to_dict():
            raise ValueError(f"{directory} is an active-learning run with other settings (see {path}); use another "
                             "folder for other settings")
        return saved
    if settings is None:
        raise FileNotFoundError(f"{path} does not exist: give the settings of a new run")
    write_json(path, settings.to_dict())
    return settings


def round_dir(directory, index: int) -> Path:
    return Path(directory) / f"round_{index:02d}"


def next_round(directory) -> int:
    """The first round without a report."""
    index = 0
    while (round_dir(directory, index) / "report.md").is_file():
        index += 1
    return index


def labelled_so_far(directory, settings: LearnSettings, before: int) -> list:
    """Frames (``mf_calc.data.Frame``) labelled in rounds < ``before``, at the run's fidelity."""
    from mf_calc.data import read_frames

    frames = []
    for index in range(before):
        path = round_dir(directory, index) / "labels" / "labelled.extxyz"
        if path.is_file() and path.stat().st_size:
            frames += read_frames(path, fidelity=settings.fidelity)
    return frames


def _training_data(directory, settings: LearnSettings, index: int):
    from mf_calc.train.dataset import FrameDataset, read_dataset

    return FrameDataset(read_dataset(list(settings.data)).frames + labelled_so_far(directory, settings, index))


def train_committee(directory, settings: LearnSettings, index: int, count: int | None = None) -> list[Path]:
    """The first ``count`` (default: all) member model folders (``best/``) of round ``index``, training those not
    finished yet."""
    from mf_calc.train.baselines import train_multi_fidelity
    from mf_calc.train.config import TrainConfig

    out = round_dir(directory, index) / "committee"
    data = None
    members = []
    for k in range(settings.committee if count is None else count):
        folder = out / f"m{k}"
        if not (folder / "best" / "config.json").is_file():
            data = data or _training_data(directory, settings, index)
            cfg = TrainConfig.from_dict({"progress": False} | settings.train
                                        | {"init": settings.model, "seed": settings.seed * 1000 + k})
            train_multi_fidelity(data, cfg, folder, resume=(folder / "checkpoint.pt").exists())
        members.append(folder / "best")
    return members


def _load(member):
    from mf_calc.model.mfchgnet import MFCHGNet

    return MFCHGNet.load(member)


def explore_step(directory, settings: LearnSettings, index: int, members: list[Path]) -> list:
    from mf_calc.calculator import MFCalculator

    path = round_dir(directory, index) / "candidates.extxyz"
    if not path.is_file():
        calc = MFCalculator(_load(members[0]), fidelity=settings.fidelity)
        frames = explore(calc, ExploreSettings(**settings.explore), seed=settings.seed * 1000 + index,
                         folder=round_dir(directory, index) / "explore")
        atomic_write(path, lambda fh: ase.io.write(fh, frames, format="extxyz"))
    return ase.io.read(path, ":")


def select_step(directory, settings: LearnSettings, index: int, members: list[Path], candidates: list) -> list:
    """The frames to label (``selected.extxyz``), and ``selection.json`` with every candidate's deviation."""
    folder = round_dir(directory, index)
    path = folder / "selected.extxyz"
    if not path.is_file():
        forces = [[p["forces"] for p in _load(m).predict(candidates, fidelity=settings.fidelity, task="ef")]
                  for m in members]
        deviation = force_deviation(forces)
        choose = SelectSettings(**settings.selection)
        earlier = [f.atoms for f in labelled_so_far(directory, settings, index)]
        picks = (pick_uncertain(candidates, deviation, choose, exclude=earlier) if settings.select == "committee"
                 else pick_random(len(candidates), choose.cap, seed=settings.seed * 1000 + index))
        write_json(folder / "selection.json", {"deviation_eV_A": deviation.tolist(), "picks": picks,
                                               "select": settings.select, "settings": asdict(choose)})
        chosen = [candidates[i] for i in picks]
        for i, atoms in zip(picks, chosen):
            atoms.info.update(candidate=i, deviation_eV_A=float(deviation[i]), al_round=index)
        atomic_write(path, lambda fh: ase.io.write(fh, chosen, format="extxyz"))
    return ase.io.read(path, ":") if path.stat().st_size else []


def label_step(directory, settings: LearnSettings, index: int, selected: list, deadline: float | None) -> dict:
    from mf_calc.label.run import LabelOptions, label_frames

    out = round_dir(directory, index) / "labels"
    sources = [f"round_{index:02d}/selected.extxyz:{i}" for i in range(len(selected))]
    if not selected:
        out.mkdir(parents=True, exist_ok=True)
        (out / "labelled.extxyz").write_text("")
        return {"n_ok": 0, "n_failed": 0, "n_pending": 0, "seconds_total": 0.0}
    return label_frames(selected, settings.fidelity, settings.spec, out, LabelOptions(progress=False,
                                                                                      deadline=deadline), sources=sources)


def evaluate_step(directory, settings: LearnSettings, index: int, members: list[Path], summary: dict) -> dict:
    from mf_calc.data import read_frames
    from mf_calc.train.dataset import FrameDataset
    from mf_calc.train.metrics import evaluate

    model = _load(members[0])
    errors = {}
    for item in settings.evaluate:
        data = FrameDataset(read_frames(item, fidelity=settings.fidelity))
        errors[item] = evaluate(model, data.graphs(model)).get(settings.fidelity, {})
    selection = json.loads((round_dir(directory, index) / "selection.json").read_text())
    deviation = np.array(selection["deviation_eV_A"])
    result = {"round": index, "model": str(members[0]), "select": settings.select,
              "trained_on_labelled_frames": len(labelled_so_far(directory, settings, index)),
              "candidates": len(deviation), "picked": len(selection["picks"]),
              "deviation_eV_A": {"median": float(np.median(deviation)), "max": float(deviation.max())}
              if len(deviation) else {},
              "labelled": summary["n_ok"], "failed": summary["n_failed"],
              "dft_core_hours": summary["seconds_total"] / 3600, "errors": errors}
    write_json(round_dir(directory, index) / "evaluation.json", result)
    return result


def format_report(result: dict) -> str:
    lines = [f"# Active-learning round {result['round']}", "",
             f"- model: `{result['model']}` (trained on the base data and {result['trained_on_labelled_frames']} "
             "frames labelled in earlier rounds)",
             f"- explored {result['candidates']} candidate frames; picked {result['picked']} ({result['select']}); "
             f"committee force deviation median {result['deviation_eV_A'].get('median', float('nan')):.3f}, max "
             f"{result['deviation_eV_A'].get('max', float('nan')):.3f} eV/Å",
             f"- labelled {result['labelled']} ({result['failed']} failed), {result['dft_core_hours']:.2f} DFT core-hours",
             "", "| evaluation file | energy MAE (meV/atom) | forces MAE (meV/Å) | magmoms MAE (μB) |", "|---|---|---|---|"]
    for item, e in result["errors"].items():
        cells = " | ".join("–" if key not in e else f"{e[key]:.3g}" for key in ("e_mae", "f_mae", "m_mae"))
        lines.append(f"| `{item}` | {cells} |")
    return "\n".join(lines) + "\n"


def run_round(directory, settings: LearnSettings, index: int, deadline: float | None = None) -> dict | None:
    """Run (or continue) round ``index``; return its evaluation, or None when DFT labels are still pending."""
    selected_already = (round_dir(directory, index) / "selected.extxyz").is_file()
    members = train_committee(directory, settings, index, 1 if selected_already else None)  # after selection: m0
    candidates = explore_step(directory, settings, index, members)
    selected = select_step(directory, settings, index, members, candidates)
    summary = label_step(directory, settings, index, selected, deadline)
    if summary["n_pending"]:
        log.info("round %d: %d of %d frames still to label", index, summary["n_pending"], len(selected))
        return None
    result = evaluate_step(directory, settings, index, members, summary)
    atomic_write(round_dir(directory, index) / "report.md", lambda fh: fh.write(format_report(result)))
    return result
