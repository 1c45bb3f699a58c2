"""The output folder of a labelling run: one JSON record per input frame, written atomically.

Layout of ``OUT``::

    run.json            fidelity and the full spec (with its hash); a rerun with another spec or
                        fidelity is refused instead of mixing labels
    records/00012.json  one per finished input frame: status "ok" (labels) or "failed" (the reason
                        of every attempt); wall seconds and SCF iterations in both
    logs/               the calculator's text logs (GPAW)
    labelled.extxyz     the frames with status "ok", in input order, readable by mf_calc.data.read_frames
    summary.json        counts (input, ok, failed, pending), failures with reasons, timing statistics

Labels in ASE units: energy = the force-consistent free energy (eV; what the forces are derivatives of;
the σ→0 extrapolated energy is kept as ``info["energy_extrapolated"]``), forces eV/Å, stress eV/Å³
(ASE sign, Voigt; absent where the spec does not label stress), magmoms μB (spin-polarised runs only).
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from mf_calc.atomic import atomic_write, json_safe, write_json
from mf_calc.label.spec import LabelSpec

RECORD_FORMAT = "mf_calc.label.record/1"
DATA_FILE = "labelled.extxyz"
SUMMARY_FILE = "summary.json"


def structure_hash(atoms: Atoms) -> str:
    """sha256 (16 hex digits) of atomic numbers, positions and cell rounded to 1e-6 Å."""
    h = hashlib.sha256()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    for array in (atoms.positions, atoms.cell.array):
        h.update(np.round(np.asarray(array, dtype=float), 6).tobytes())
    return h.hexdigest()[:16]


class LabelStore:
    """Records of one fidelity's labelling run in ``out``."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.records = self.out / "records"
        self.logs = self.out / "logs"

    def open(self, fidelity: str, spec: LabelSpec) -> None:
        """Create the folder, or check that an existing one was made with the same fidelity and spec."""
        run_file = self.out / "run.json"
        if run_file.is_file():
            run = json.loads(run_file.read_text())
            if run["fidelity"] != fidelity or run["spec_hash"] != spec.hash:
                raise ValueError(
                    f"{self.out} holds labels of fidelity {run['fidelity']!r} with spec {run['spec_hash']} "
                    f"(see its run.json); this run asks for {fidelity!r} with spec {spec.hash}. "
                    "Use another --out folder for other settings.")
        else:
            write_json(run_file, {"fidelity": fidelity, "spec_hash": spec.hash, "spec": spec.to_dict()})
        self.records.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)

    def run_info(self) -> dict:
        run_file = self.out / "run.json"
        if not run_file.is_file():
            raise FileNotFoundError(f"{self.out} is not a labelling folder (no run.json)")
        return json.loads(run_file.read_text())

    def path(self, index: int) -> Path:
        return self.records / f"{index:05d}.json"

    def read(self, index: int) -> dict | None:
        path = self.path(index)
        return json.loads(path.read_text()) if path.is_file() else None

    def all_records(self) -> list[dict]:
        """Every record, in input order."""
        return sorted((json.loads(p.read_text()) for p in self.records.glob("*.json")), key=lambda r: r["index"])

    def write(self, record: dict) -> None:
        path = self.path(record["index"])
        atomic_write(path, lambda fh: json.dump(json_safe({"format": RECORD_FORMAT} | record), fh, allow_nan=False))
        path.with_suffix(".running").unlink(missing_ok=True)

    def claim(self, index: int) -> bool:
        """Mark a frame as being labelled by this process; False when another live process has claimed it
        or its record exists (several runs may share one folder). The mark goes when the record is written."""
        return claim(self.path(index).with_suffix(".running"), self.path(index))

    def clear_running(self) -> None:
        """Remove marks left by processes that ended (a stopped run); those frames are labelled again."""
        for marker in self.records.glob("*.running"):
            if not _alive(_owner(marker)):
                marker.unlink(missing_ok=True)

    def record_died_workers(self, frames, fidelity: str, spec: LabelSpec, sources) -> list[int]:
        """Record as failed every frame still marked running after its worker process died; return them."""
        died = sorted(int(m.stem) for m in self.records.glob("*.running") if not _alive(_owner(m)))
        for index in died:
            record = new_record(index, sources[index], frames[index], fidelity, spec)
            record["attempts"] = [{"seconds": 0.0, "scf_iterations": None, "retry": False,
                                   "error": "worker process died while this frame was in progress (killed, out of "
                                            "memory or a crash inside the calculator, here or in another worker, "
                                            "which stops the pool); --retry-failed runs it again"}]
            record.update(status="failed", restarted_from_previous=False)
            self.write(record)
        return died

    def check_input(self, index: int, atoms: Atoms, record: dict) -> None:
        """Refuse a record whose structure is not the input frame at ``index`` (the input file changed)."""
        if record["structure_hash"] != structure_hash(atoms):
            raise ValueError(f"{self.path(index)} holds a different structure than input frame {index}: the input "
                             "frames changed since that label was made. Label changed inputs into a new --out folder.")

    def collect(self, n_input: int | None = None) -> dict:
        """Write ``labelled.extxyz`` (status-ok frames, input order) and ``summary.json``; return the summary."""
        run = self.run_info()
        records = self.all_records()
        ok = [r for r in records if r["status"] == "ok"]
        failed = [r for r in records if r["status"] == "failed"]
        frames = [record_to_atoms(r, run["fidelity"]) for r in ok]
        atomic_write(self.out / DATA_FILE, lambda fh: ase.io.write(fh, frames, format="extxyz"))
        seconds = np.array([r["seconds"] for r in records], dtype=float)
        iterations = np.array([r["scf_iterations"] for r in ok if r["scf_iterations"] is not None], dtype=float)
        summary = {
            "fidelity": run["fidelity"], "spec_hash": run["spec_hash"],
            "n_input": n_input, "n_ok": len(ok), "n_failed": len(failed),
            "n_pending": None if n_input is None else n_input - len(records),
            "n_ok_after_retry": sum(len(r["attempts"]) > 1 for r in ok),
            "failures": [{"index": r["index"], "source": r["source"], "errors": [a["error"] for a in r["attempts"]]}
                         for r in failed],
            "seconds_per_frame": _stats(seconds),
            "scf_iterations": _stats(iterations),
            "seconds_total": float(seconds.sum()),
        }
        write_json(self.out / SUMMARY_FILE, summary)
        return summary


def claim(marker: Path, done: Path) -> bool:
    """Create ``marker`` holding this process's id: True when this process may do the work whose result is
    ``done``; False when ``done`` exists or another live process holds the marker (a marker of an ended process
    is taken over)."""
    for _ in range(2):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _alive(_owner(marker)):
                return False
            marker.unlink(missing_ok=True)  # left by a process that ended: take it over
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        if done.is_file():  # finished by another process meanwhile
            marker.unlink(missing_ok=True)
            return False
        return True
    return False


def _owner(marker: Path) -> int | None:
    try:
        return int(marker.read_text() or 0) or None
    except (OSError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists (on this machine)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (ended, not yet reaped by its parent) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _stats(values: np.ndarray) -> dict[str, Any]:
    if len(values) == 0:
        return {"n": 0}
    return {"n": len(values), "mean": float(values.mean()), "median": float(np.median(values)),
            "min": float(values.min()), "max": float(values.max())}


def new_record(index: int, source: str, atoms: Atoms, fidelity: str, spec: LabelSpec) -> dict:
    """A record of the input frame, without results yet."""
    info = {k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float, bool, list))}
    return {"index": index, "source": source, "structure_hash": structure_hash(atoms), "fidelity": fidelity,
            "spec_hash": spec.hash, "numbers": atoms.numbers.tolist(), "positions": atoms.positions.tolist(),
            "cell": atoms.cell.array.tolist(), "pbc": atoms.pbc.tolist(), "info": info,
            "versions": {"mf_calc": version("mf_calc"), "calculator": spec.code_version()},
            "status": None, "labels": None, "attempts": [], "seconds": 0.0, "scf_iterations": None}


def record_to_atoms(record: dict, fidelity: str) -> Atoms:
    """The labelled frame of an "ok" record: structure, single-point results and provenance in ``info``."""
    labels = record["labels"]
    atoms = Atoms(numbers=record["numbers"], positions=record["positions"], cell=record["cell"], pbc=record["pbc"])
    atoms.info.update(record["info"])
    if "supercell" in record:
        atoms.info["supercell"] = list(record["supercell"])
    atoms.info.update(fidelity=fidelity, spec_hash=record["spec_hash"], source=record["source"],
                      energy_extrapolated=labels["energy_extrapolated"], seconds=record["seconds"],
                      scf_iterations=-1 if record["scf_iterations"] is None else record["scf_iterations"],
                      mf_calc_version=record["versions"]["mf_calc"], code_version=record["versions"]["calculator"])
    results = {"energy": labels["energy"], "free_energy": labels["energy"], "forces": np.array(labels["forces"])}
    for key in ("stress", "magmoms"):
        if labels.get(key) is not None:
            results[key] = np.array(labels[key])
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms
