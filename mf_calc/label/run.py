"""Label frames at one fidelity with any ASE calculator: resumable, one atomic record per frame, workers.

``label_frames(frames, fidelity, spec, out)`` labels every input frame that has no record in ``out`` yet and
then writes ``out/labelled.extxyz`` and ``out/summary.json`` (see :mod:`mf_calc.label.store`).

- A rerun skips finished frames (ok or failed; ``retry_failed=True`` tries the failed ones again).
- A frame whose calculation raises (an SCF that does not converge, a crash inside the calculator) is tried
  once more with the spec's ``retry`` settings on a fresh calculator; if that fails too it is recorded as
  failed with both reasons and left out of the data -- never dropped silently, never replaced.
- ``group_key``: consecutive frames with the same ``atoms.info[group_key]`` (e.g. the snapshots of one MD
  trajectory) share one calculator, so each SCF starts from the previous frame's converged state
  (wave functions and density in GPAW). Each record says whether it did (``restarted_from_previous``). A spec
  with a ``u_ramp`` starts every frame from scratch: its labels must not depend on the frame before.
- A frame with ``info["supercell"]`` (m1, m2, m3) is a supercell of the cell the spec's k-point grid is for:
  GPAW gets that grid folded into its Brillouin zone (:mod:`mf_calc.label.kpoints`), recorded as ``supercell``.
- ``workers > 1``: groups are shared out over that many processes, one BLAS/OpenMP thread each. Separate runs
  (another core, a later sitting) may also share one ``out`` folder: each frame is claimed by one live
  process at a time, and a frame that another process finished is not computed again.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ase import Atoms
from tqdm import tqdm

from mf_calc.label.kpoints import frame_supercell
from mf_calc.label.spec import LabelSpec
from mf_calc.label.store import LabelStore, new_record
from mf_calc.label.u_ramp import ramp_scf

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "OMP_WAIT_POLICY": "PASSIVE"}


@dataclass(frozen=True)
class LabelOptions:
    """How frames are labelled. workers: processes (one BLAS/OpenMP thread each); group_key: consecutive frames
    with the same ``info[group_key]`` share a calculator; retry_failed: try frames recorded as failed again;
    deadline (a ``time.time()`` value): no frame group is started after it, the frames left stay pending;
    give_up: a GPAW SCF (first try or retry) whose density error has not halved for this many iterations fails at
    once, and the spec's retry follows where there is one (``mf_calc.label.stall``), None: off."""

    workers: int = 1
    group_key: str | None = None
    retry_failed: bool = False
    progress: bool = True
    deadline: float | None = None
    give_up: int | None = None

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.give_up is not None and self.give_up < 2:
            raise ValueError(f"give_up must be >= 2 SCF iterations, got {self.give_up}")


def label_frames(frames: Sequence[Atoms], fidelity: str, spec: LabelSpec | str | Path, out: str | Path,
                 options: LabelOptions = LabelOptions(), sources: Sequence[str] | None = None,
                 only: Sequence[int] | None = None) -> dict:
    """Label ``frames`` at ``fidelity`` with ``spec`` (a LabelSpec, a spec file or a shipped spec name) into
    ``out``; return the summary (counts of ok, failed and pending frames, timings). ``sources``: a name per
    frame for records and errors; ``only``: label just the frames at these indices (the others stay pending;
    records keep each frame's own index)."""
    spec = spec if isinstance(spec, LabelSpec) else LabelSpec.load(spec)
    if not isinstance(fidelity, str) or not fidelity:
        raise ValueError(f"fidelity must be a non-empty name, got {fidelity!r}")
    sources = list(sources) if sources is not None else [f"frame {i}" for i in range(len(frames))]
    for i, atoms in enumerate(frames):
        if len(atoms) == 0:
            raise ValueError(f"{sources[i]}: empty structure (0 atoms)")
    _ = spec.calculator_class  # fail now, not in a worker, when the calculator cannot be imported
    store = LabelStore(out)
    store.open(fidelity, spec)
    store.clear_running()  # marks left by a run that was stopped: those frames are simply labelled again
    todo = _todo(store, frames, only, options.retry_failed)
    # a Hubbard-U ramp starts every frame from scratch: its labels must not depend on the frame before
    groups = _groups(todo, frames, None if spec.u_ramp is not None else options.group_key)
    jobs = [[(i, frames[i], sources[i]) for i in group] for group in groups]
    bar = tqdm(total=len(todo), desc=f"label {fidelity}", unit="frame", disable=not options.progress or not todo)
    if options.workers == 1 or len(jobs) <= 1:
        for job in jobs:
            if options.deadline is not None and time.time() >= options.deadline:
                break
            for _ in label_group(job, fidelity, spec, store.out, options.give_up):
                bar.update()
    else:
        _label_in_pool(jobs, (fidelity, spec, store), (frames, sources), options, bar)
    bar.close()
    return store.collect(n_input=len(frames))


def _todo(store: LabelStore, frames: Sequence[Atoms], only: Sequence[int] | None, retry_failed: bool) -> list[int]:
    """Indices of the wanted frames without a record (or with a failed one, when retrying); a frame whose
    record was made from other input is refused by ``store.check_input``."""
    wanted = set(range(len(frames))) if only is None else {int(i) for i in only}
    if not wanted <= set(range(len(frames))):
        raise ValueError(f"only: indices {sorted(wanted - set(range(len(frames))))} are not among the "
                         f"{len(frames)} frames")
    todo = []
    for i in sorted(wanted):
        record = store.read(i)
        if record is not None:
            store.check_input(i, frames[i], record)
            if record["status"] == "ok" or not retry_failed:
                continue
        todo.append(i)
    return todo


def _label_in_pool(jobs: list, target: tuple, inputs: tuple, options: LabelOptions, bar) -> None:
    """The jobs shared out over ``options.workers`` processes; target: (fidelity, spec, store), inputs:
    (frames, sources). A worker that dies is recorded as failed and reported."""
    fidelity, spec, store = target
    broken = False
    with _env(ONE_THREAD), cf.ProcessPoolExecutor(min(options.workers, len(jobs)),
                                                   mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_label_group_all, job, fidelity, spec, store.out, options.deadline, options.give_up)
                   for job in jobs]
        try:
            for future in cf.as_completed(futures):
                bar.update(future.result())
        except cf.process.BrokenProcessPool:
            broken = True
    if broken:  # the pool has shut down: every worker has ended, so their marks tell what was in progress
        frames, sources = inputs
        died = store.record_died_workers(frames, fidelity, spec, sources)
        raise RuntimeError(f"a worker process died while labelling frame(s) {died} (killed, out of memory "
                           "or a crash inside the calculator); they are recorded as failed. Run the same "
                           "command again to label the rest.")


def hours_until(clock: str, now: datetime.datetime | None = None) -> float:
    """Hours from ``now`` (default: the local time) to the nearest local time ``clock`` ("HH:MM"): a time up to
    12 hours ago has passed (0: start nothing more), an earlier one means tomorrow's (after midnight)."""
    try:
        target = datetime.datetime.strptime(clock, "%H:%M").time()
    except ValueError:
        raise ValueError(f"--until wants a time HH:MM, got {clock!r}") from None
    now = now or datetime.datetime.now()
    end = datetime.datetime.combine(now.date(), target)
    if end <= now - datetime.timedelta(hours=12):
        end += datetime.timedelta(days=1)
    elif end > now + datetime.timedelta(hours=12):
        end -= datetime.timedelta(days=1)
    return max(0.0, (end - now).total_seconds() / 3600)


def _groups(indices: list[int], frames: Sequence[Atoms], group_key: str | None) -> list[list[int]]:
    """Runs of consecutive indices whose frames share ``info[group_key]`` (each index alone without a key)."""
    groups: list[list[int]] = []
    for i in indices:
        key = None if group_key is None else frames[i].info.get(group_key)
        previous = groups[-1][-1] if groups else None
        if (key is not None and previous == i - 1 and frames[previous].info.get(group_key) == key):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _label_group_all(job, fidelity, spec, out, deadline=None, give_up=None) -> int:
    if deadline is not None and time.time() >= deadline:
        return 0
    return sum(1 for _ in label_group(job, fidelity, spec, out, give_up))


def label_group(job: list[tuple[int, Atoms, str]], fidelity: str, spec: LabelSpec, out: Path,
                give_up: int | None = None) -> Iterator[dict]:
    """Label the frames of one group in order, sharing one calculator while every SCF succeeds; write and
    yield each record as soon as it is finished (``give_up``: see ``LabelOptions``)."""
    store = LabelStore(out)
    calc, previous_supercell = None, None
    for index, atoms, source in job:
        supercell = frame_supercell(atoms)
        if supercell != previous_supercell:
            calc, previous_supercell = None, supercell  # other k-points: no shared calculator
        record = new_record(index, source, atoms, fidelity, spec)
        record["restarted_from_previous"] = calc is not None
        if supercell is not None:
            record["supercell"] = list(supercell)
        log = store.logs / f"{index:05d}.txt"
        if not store.claim(index):
            continue  # another process is labelling (or has labelled) this frame
        for retry in ((False, True) if spec.retry else (False,)):
            if calc is None or retry:
                calc = spec.build(log=log.with_name(f"{index:05d}_retry.txt") if retry else log, retry=retry,
                                  supercell=supercell, give_up=give_up)  # the first try's log is kept
            attempt, labels = _attempt(calc, atoms, spec, retry, give_up)
            attempt["retry"] = retry
            record["attempts"].append(attempt)
            if labels is not None:
                break
            calc = None  # never continue from a failed state
        record["seconds"] = sum(a["seconds"] for a in record["attempts"])
        record["scf_iterations"] = record["attempts"][-1]["scf_iterations"]
        record["status"] = "ok" if labels is not None else "failed"
        record["labels"] = labels
        store.write(record)
        yield record


def _attempt(calc, atoms: Atoms, spec: LabelSpec, retry: bool, give_up: int | None = None) -> tuple[dict, dict | None]:
    """One calculation with ``calc`` (built from ``spec``, with its retry settings when ``retry``): (attempt
    summary, labels or None when it raised)."""
    prepared = spec.prepare(atoms)
    prepared.calc = calc
    start = time.perf_counter()
    ramp = None
    try:
        if spec.u_ramp is not None:
            ramp = ramp_scf(prepared, spec.calculator_settings(retry, give_up), spec.u_ramp)
        labels = {"energy": prepared.get_potential_energy(force_consistent=True),
                  "energy_extrapolated": prepared.get_potential_energy(),
                  "forces": prepared.get_forces()}
        if spec.stress:
            labels["stress"] = prepared.get_stress(voigt=True)
        if spec.spin_polarized:
            labels["magmoms"] = prepared.get_magnetic_moments()
        error = None
    except Exception as err:  # the calculator's own failure (SCF not converged, crash, ...) is the record
        labels, error = None, f"{type(err).__name__}: {err}".strip()
    attempt = {"seconds": time.perf_counter() - start, "scf_iterations": _iterations(calc), "error": error}
    if ramp is not None:  # iterations of the whole ramp; the steps (fraction, energy, iterations, seconds) beside
        attempt |= {"scf_iterations": sum(step["scf_iterations"] for step in ramp), "u_ramp": ramp}
    return attempt, labels


def _iterations(calc) -> int | None:
    """SCF iterations of the last calculation (GPAW), None where the calculator does not say."""
    try:
        return int(calc.get_number_of_iterations())
    except Exception:  # not a GPAW calculator, or one that never got as far as an SCF
        return None


@contextmanager
def _env(values: dict[str, str]):
    """Set environment variables that are not set yet (inherited by spawned workers); restore afterwards."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)
