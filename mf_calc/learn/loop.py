"""One active-learning round, every step written to disk so that a rerun continues where it stopped.

A round r in ``DIR/round_RR/``:

1. ``committee/m{k}/`` -- K models fine-tuned from the starting model, seeds differing, on the base data and
   every frame labelled in rounds < r (``mf_calc.train``); member 0 is the round's model, the only one needed
   once the picks are made.
2. ``explore/`` and ``candidates.extxyz`` -- MD, relaxations and NEB bands driven by member 0 (:mod:`mf_calc.learn.explore`).
3. ``selection.json`` and ``selected.extxyz`` -- the committee's force deviation and energy spread of every
   candidate and the picks (:mod:`mf_calc.learn.select`: uncertain forces, and with ``endpoints`` relaxed
   structures of uncertain energy or, ``endpoints_by: hull``, lowest against their end members' tie line by
   member 0, kept as ``above_tie_line_meV_fu``), or random picks at the same budget (``select: random``).
4. ``labels/`` -- DFT labels of the picks (``mf_calc.label``; one record per frame, resumable). A run with
   ``low_fidelity`` (the MF arm) also labels the ``low_fidelity.cap`` most uncertain candidates (random ones in
   the random arm) with the cheap spec (``selected_low.extxyz``, ``labels_low/``), after the scarce labels.
5. ``evaluation.json`` and ``report.md`` -- member 0's errors on the evaluation files, the data used, the DFT
   core-hours spent.

Arms of one study can share a sibling run's rounds: ``candidates_from`` takes its candidates (the random control
picks from the committee arm's explored frames: selection is then the only difference), ``picks_from`` also its
picks and labels at the run's fidelity (an MF arm trained on the same scarce DFT as the fine-tune arm, plus its
own cheap labels). A run that shares labels the shared picks into the sibling's folder (both runs may label
there at once) and waits for what the sibling has not written yet.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ase.io
import numpy as np

from mf_calc.atomic import atomic_write, write_json
from mf_calc.constants import dataclass_from_dict
from mf_calc.learn.explore import ExploreSettings, explore
from mf_calc.learn.select import (
    SelectSettings,
    energy_spread,
    force_deviation,
    lowest_per_family,
    pick_endpoints,
    pick_random,
    pick_uncertain,
    relaxation_ends,
)
from mf_calc.learn.tie_line import tie_line_scores

log = logging.getLogger(__name__)
SETTINGS_FILE = "learn.json"
STEPS = ("train", "explore", "select", "label", "evaluate")


class Waiting(RuntimeError):
    """A round needs a file that the sibling run it shares with has not written yet."""


@dataclass(frozen=True)
class LowFidelity:
    """Cheap labels for an MF arm: the ``cap`` most uncertain candidates at ``fidelity``, made with ``spec``."""

    fidelity: str
    spec: str
    cap: int

    def __post_init__(self):
        if self.cap < 1:
            raise ValueError(f"low_fidelity cap must be >= 1, got {self.cap}")


@dataclass(frozen=True)
class Target:
    """One fidelity a round labels: its picks file, label folder, spec and cap."""

    fidelity: str
    spec: str
    cap: int
    suffix: str  # "" for the run's fidelity, "_low" for the cheap one

    @property
    def picks_file(self) -> str:
        return f"selected{self.suffix}.extxyz"

    @property
    def labels_dir(self) -> str:
        return f"labels{self.suffix}"


@dataclass(frozen=True)
class LearnSettings:
    """An active-learning run. ``data``: labelled files (``FILE[:FIDELITY]``) every round trains on; ``evaluate``:
    labelled files the round's model is scored on (never trained on); ``train``: TrainConfig fields for the
    committee (``init`` is ``model``); ``select``: ``committee`` or ``random``; ``low_fidelity``: LowFidelity
    fields, or empty for a run that labels at one fidelity; ``candidates_from`` / ``picks_from``: a sibling run
    folder (relative to this run's parent folder) whose candidates / candidates, picks and labels at
    ``fidelity`` this run's rounds reuse."""

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
    low_fidelity: dict = field(default_factory=dict)
    candidates_from: str = ""
    picks_from: str = ""

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
        if self.low_fidelity and LowFidelity(**self.low_fidelity).fidelity == self.fidelity:
            raise ValueError(f"low_fidelity must be another fidelity than the run's {self.fidelity!r}")
        if self.picks_from and self.candidates_from not in ("", self.picks_from):
            raise ValueError(f"picks_from {self.picks_from!r} shares that run's candidates too; candidates_from "
                             f"{self.candidates_from!r} names another run")

    @property
    def targets(self) -> list[Target]:
        """The fidelities a round labels, the scarce one first."""
        targets = [Target(self.fidelity, self.spec, SelectSettings(**self.selection).cap, "")]
        if self.low_fidelity:
            low = LowFidelity(**self.low_fidelity)
            targets.append(Target(low.fidelity, low.spec, low.cap, "_low"))
        return targets

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


def source_run(directory, settings: LearnSettings, what: str) -> Path:
    """The run whose rounds hold this run's ``what``: "candidates", or "picks" (the picks and labels at the run's
    fidelity); a sibling run where the settings share them, else this run."""
    name = settings.picks_from or (settings.candidates_from if what == "candidates" else "")
    return Path(directory).parent / name if name else Path(directory)


def labels_run(directory, settings: LearnSettings, target: Target) -> Path:
    """The run whose round folders hold ``target``'s labels: the picks' source for the run's fidelity, else this
    run."""
    return source_run(directory, settings, "picks") if target.suffix == "" else Path(directory)


def _shared_file(directory, settings: LearnSettings, index: int, what: str, name: str) -> Path | None:
    """Round ``index``'s file ``name`` of the sibling run that holds ``what``; None when this run makes its own;
    Waiting when the sibling has not written it yet."""
    source = source_run(directory, settings, what)
    if source == Path(directory):
        return None
    path = round_dir(source, index) / name
    if not path.is_file():
        raise Waiting(f"{path} is not written yet: this run shares the {what} of run {source}, round {index}; "
                      "run that round first")
    return path


def next_round(directory) -> int:
    """The first round without a report."""
    index = 0
    while (round_dir(directory, index) / "report.md").is_file():
        index += 1
    return index


def labelled_so_far(directory, settings: LearnSettings, before: int, targets: list[Target] | None = None) -> list:
    """Frames (``mf_calc.data.Frame``) labelled in rounds < ``before`` for ``targets`` (default: all)."""
    from mf_calc.data import read_frames

    frames = []
    for index in range(before):
        for target in settings.targets if targets is None else targets:
            path = round_dir(labels_run(directory, settings, target), index) / target.labels_dir / "labelled.extxyz"
            if path.is_file() and path.stat().st_size:
                frames += read_frames(path, fidelity=target.fidelity)
    return frames


def _training_data(directory, settings: LearnSettings, index: int):
    from mf_calc.train.dataset import FrameDataset, read_dataset

    return FrameDataset(read_dataset(list(settings.data)).frames + labelled_so_far(directory, settings, index))


def train_committee(directory, settings: LearnSettings, index: int, count: int | None = None) -> list[Path]:
    """The first ``count`` (default: all) member model folders (``best/``) of round ``index``, training those not
    finished yet."""
    from mf_calc.train.baselines import train_multi_fidelity
    from mf_calc.train.checkpoint import training_finished
    from mf_calc.train.config import TrainConfig

    out = round_dir(directory, index) / "committee"
    data = None
    members = []
    for k in range(settings.committee if count is None else count):
        folder = out / f"m{k}"
        if not training_finished(folder):
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

    path = _shared_file(directory, settings, index, "candidates", "candidates.extxyz") or \
        round_dir(directory, index) / "candidates.extxyz"
    if not path.is_file():
        calc = MFCalculator(_load(members[0]), fidelity=settings.fidelity)
        frames = explore(calc, ExploreSettings(**settings.explore), seed=settings.seed * 1000 + index,
                         folder=round_dir(directory, index) / "explore")
        atomic_write(path, lambda fh: ase.io.write(fh, frames, format="extxyz"))
    return ase.io.read(path, ":")


def _picks(settings: LearnSettings, target: Target, index: int, candidates: list, spreads: dict, earlier) -> list[int]:
    """Picks for ``target`` among the candidates its spec labels in the cell's k-point convention; ``spreads``: the
    committee's force deviation (``force``, eV/Å) and energy spread (``energy``, meV/atom) per candidate, and
    with ``endpoints_by: hull`` member 0's energy above the tie line (``hull``, meV/fu) of relaxation end points.
    Relaxed end points come first: frames are labelled in file order, and a round cut short by a session's end
    should have the frames the hull ranking is aimed at."""
    from mf_calc.label.spec import LabelSpec

    spec = LabelSpec.load(target.spec)
    other = [i for i, atoms in enumerate(candidates) if not spec.same_kpoint_convention(atoms)]
    choose = SelectSettings(**(settings.selection | {"cap": target.cap}))
    seed = settings.seed * 1000 + index
    if settings.select == "random":
        picks = pick_random(len(candidates), choose.cap, seed=seed, avoid=other)
        ends = np.setdiff1d(np.asarray(relaxation_ends(candidates), dtype=int), [*other, *picks])
        extra = np.random.default_rng(seed + 1).permutation(ends)[:choose.endpoints].tolist()
        return sorted(int(i) for i in extra) + picks
    allowed = {what: np.array(spread, dtype=float) for what, spread in spreads.items()}
    for spread in allowed.values():
        spread[other] = np.nan  # outside every trust window
    picks = pick_uncertain(candidates, allowed["force"], choose, exclude=earlier)
    ranking = lowest_per_family(candidates, allowed["hull"]) if choose.endpoints_by == "hull" else allowed["energy"]
    return pick_endpoints(candidates, ranking, choose, taken=picks, exclude=earlier) + picks  # labelled in this order


def _choose(directory, settings: LearnSettings, index: int, candidates: list, spreads: dict, shared: Path | None) -> dict:
    """Picks (candidate indices) per target suffix: the sibling run's at the run's fidelity where they are shared
    (``shared``: its picks file), this run's own otherwise."""
    picks = {}
    for target in settings.targets:
        if shared is not None and target.suffix == "":
            picks[""] = json.loads((shared.parent / "selection.json").read_text())["picks"]
        else:
            earlier = [f.atoms for f in labelled_so_far(directory, settings, index, [target])]
            picks[target.suffix] = _picks(settings, target, index, candidates, spreads, earlier)
    return picks


def _write_picks(path: Path, candidates: list, picks: list[int], deviation, index: int) -> None:
    chosen = [candidates[i] for i in picks]
    for i, atoms in zip(picks, chosen):
        atoms.info.update(candidate=i, deviation_eV_A=float(deviation[i]), al_round=index)
    atomic_write(path, lambda fh: ase.io.write(fh, chosen, format="extxyz"))


def _tie_line(settings: LearnSettings, member: Path, candidates: list) -> dict:
    """``{"hull": meV/fu above the tie line of every relaxation end point by ``member``}`` where the committee
    arm ranks its end points so (``endpoints_by: hull``); empty otherwise."""
    choose = SelectSettings(**settings.selection)
    if settings.select != "committee" or not choose.endpoints or choose.endpoints_by != "hull":
        return {}
    from mf_calc.calculator import MFCalculator

    calc = MFCalculator(_load(member), fidelity=settings.fidelity)
    return {"hull": tie_line_scores(candidates, relaxation_ends(candidates), calc)}


def select_step(directory, settings: LearnSettings, index: int, members: list[Path], candidates: list) -> dict:
    """The frames to label per fidelity (``selected.extxyz``, ``selected_low.extxyz``), and ``selection.json``
    with every candidate's committee force deviation and the picks (or random picks at the same budget,
    ``select: random``, the control arm)."""
    folder = round_dir(directory, index)
    targets = settings.targets
    if not all((folder / t.picks_file).is_file() for t in targets):
        predictions = [_load(m).predict(candidates, fidelity=settings.fidelity, task="ef") for m in members]
        deviation = force_deviation([[p["forces"] for p in per_model] for per_model in predictions])
        spread = energy_spread([[float(p["energy"]) for p in per_model] for per_model in predictions], candidates)
        scores = {"force": deviation, "energy": spread, **_tie_line(settings, members[0], candidates)}
        shared = _shared_file(directory, settings, index, "picks", targets[0].picks_file)  # after selection.json
        picks = _choose(directory, settings, index, candidates, scores, shared)
        hull = {"above_tie_line_meV_fu": [None if np.isnan(v) else float(v) for v in scores["hull"]]} \
            if "hull" in scores else {}
        write_json(folder / "selection.json", {"deviation_eV_A": deviation.tolist(),
                                               "energy_spread_meV_atom": spread.tolist(), **hull, "picks": picks[""],
                                               **({"picks_low": picks["_low"]} if "_low" in picks else {}),
                                               "select": settings.select,
                                               "settings": asdict(SelectSettings(**settings.selection))})
        for t in targets:
            if shared is not None and t.suffix == "":  # the sibling's file: the same frames, so the same labels
                shutil.copyfile(shared, folder / t.picks_file)
            else:
                _write_picks(folder / t.picks_file, candidates, picks[t.suffix], deviation, index)
    return {t.suffix: ase.io.read(folder / t.picks_file, ":") if (folder / t.picks_file).stat().st_size else []
            for t in targets}


def label_step(directory, settings: LearnSettings, index: int, selected: dict, deadline: float | None,
               give_up: int | None = None) -> dict:
    """DFT labels of the picks, the scarce fidelity first (``give_up``: see ``LabelOptions``); the label summary
    per target suffix."""
    from mf_calc.label.run import LabelOptions, label_frames

    summaries = {}
    for target in settings.targets:
        frames = selected[target.suffix]
        out = round_dir(labels_run(directory, settings, target), index) / target.labels_dir
        if not frames:
            out.mkdir(parents=True, exist_ok=True)
            (out / "labelled.extxyz").write_text("")
            summaries[target.suffix] = {"n_ok": 0, "n_failed": 0, "n_pending": 0, "seconds_total": 0.0}
            continue
        sources = [f"round_{index:02d}/{target.picks_file}:{i}" for i in range(len(frames))]
        summaries[target.suffix] = label_frames(frames, target.fidelity, target.spec, out,
                                                LabelOptions(progress=False, deadline=deadline, give_up=give_up),
                                                sources=sources)
    return summaries


def _labelling(directory, settings: LearnSettings, index: int, selection: dict, summaries: dict) -> dict:
    """Per fidelity: frames trained on from earlier rounds, picked, labelled, failed, DFT core-hours."""
    out = {}
    for target in settings.targets:
        summary = summaries[target.suffix]
        out[target.fidelity] = {"trained_on": len(labelled_so_far(directory, settings, index, [target])),
                                "picked": len(selection["picks" + target.suffix]), "labelled": summary["n_ok"],
                                "failed": summary["n_failed"], "dft_core_hours": summary["seconds_total"] / 3600}
    return out


def evaluate_step(directory, settings: LearnSettings, index: int, members: list[Path], summaries: dict) -> dict:
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
    labelling = _labelling(directory, settings, index, selection, summaries)
    main = labelling[settings.fidelity]
    sources = {what: source_run(directory, settings, what) for what in ("candidates", "picks")}
    result = {"round": index, "model": str(members[0]), "select": settings.select,
              "shared": {what: str(run) for what, run in sources.items() if run != Path(directory)},
              "trained_on_labelled_frames": main["trained_on"], "candidates": len(deviation), "picked": main["picked"],
              "deviation_eV_A": {"median": float(np.median(deviation)), "max": float(deviation.max())}
              if len(deviation) else {},
              "labelled": main["labelled"], "failed": main["failed"],
              "dft_core_hours": sum(v["dft_core_hours"] for v in labelling.values()), "by_fidelity": labelling,
              "errors": errors}
    write_json(round_dir(directory, index) / "evaluation.json", result)
    return result


def format_report(result: dict) -> str:
    lines = [f"# Active-learning round {result['round']}", "",
             f"- model: `{result['model']}` (trained on the base data and {result['trained_on_labelled_frames']} "
             "frames labelled in earlier rounds)",
             f"- explored {result['candidates']} candidate frames; picked {result['picked']} ({result['select']}); "
             f"committee force deviation median {result['deviation_eV_A'].get('median', float('nan')):.3f}, max "
             f"{result['deviation_eV_A'].get('max', float('nan')):.3f} eV/Å",
             *(f"- {what} shared with run `{run}`" for what, run in result.get("shared", {}).items()),
             *(f"- {fid}: trained on {v['trained_on']} frames of earlier rounds, picked {v['picked']}, labelled "
               f"{v['labelled']} ({v['failed']} failed), {v['dft_core_hours']:.2f} DFT core-hours"
               for fid, v in result["by_fidelity"].items()),
             "", "| evaluation file | energy MAE (meV/atom) | forces MAE (meV/Å) | magmoms MAE (μB) |", "|---|---|---|---|"]
    for item, e in result["errors"].items():
        cells = " | ".join("–" if key not in e else f"{e[key]:.3g}" for key in ("e_mae", "f_mae", "m_mae"))
        lines.append(f"| `{item}` | {cells} |")
    return "\n".join(lines) + "\n"


def run_round(directory, settings: LearnSettings, index: int, deadline: float | None = None,
              give_up: int | None = None) -> dict | None:
    """Run (or continue) round ``index``; return its evaluation, or None when DFT labels are still pending.
    ``deadline`` and ``give_up``: see ``LabelOptions``."""
    selected_already = all((round_dir(directory, index) / t.picks_file).is_file() for t in settings.targets)
    members = train_committee(directory, settings, index, 1 if selected_already else None)  # after selection: m0
    candidates = explore_step(directory, settings, index, members)
    selected = select_step(directory, settings, index, members, candidates)
    summaries = label_step(directory, settings, index, selected, deadline, give_up)
    pending = sum(summary["n_pending"] for summary in summaries.values())
    if pending:
        log.info("round %d: %d of %d frames still to label", index, pending, sum(map(len, selected.values())))
        return None
    result = evaluate_step(directory, settings, index, members, summaries)
    atomic_write(round_dir(directory, index) / "report.md", lambda fh: fh.write(format_report(result)))
    return result
