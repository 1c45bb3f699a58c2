"""Real-DFT LMFP data at two fidelities (GPAW PBE+U): ``gpaw_nonmag`` (cheap, non-spin-polarised) and
``gpaw_afm`` (spin-polarised from the antiferromagnetic olivine start), labelled with mf_calc.label.

Configurations (the 28-atom olivine cell with 0-4 Li removed: 24-28 atoms, ``lmfp(x, y, supercell=(1, 1, 1))``,
x_Li and y_Mn in {0, 1/4, 1/2, 3/4, 1} with random site choice) are relaxed (cell and positions) with the shipped
model, then become either a short NVT trajectory (5 snapshots, 300-1000 K, driven by the shipped model) or a
strained (±2 %) and rattled (0.02-0.06 Å) cell. Sets, from disjoint configurations:

    afm_test     30 frames, gpaw_afm only: the fixed test split nothing trains on
    paired       90 frames, labelled at both fidelities (gpaw_afm training frames; Δ-learning, fidelity gap)
    nonmag_only 210 frames, gpaw_nonmag only
    nonmag_extra 10 frames, gpaw_nonmag only: added in sitting 9 so that the gpaw_nonmag frames reach the
                 issue's 300 after the SCF failures of the first 300 (recorded, left out)

The unlabelled inputs are made once and committed (``data/dft/inputs/*.extxyz``): the labels of a frame
must never depend on which model happens to be shipped when a later sitting resumes. Labelling runs in
rounds of ``--chunk`` frames per (set, fidelity), so partial data covers every set; each finished frame
is a record in ``data/dft/raw/SET_FIDELITY/records`` (commit them) and is never computed again.
``--collect`` (also done at the end of every run) merges the finished frames into

    data/dft/lmfp_gpaw_nonmag.extxyz.gz  lmfp_gpaw_afm_train.extxyz.gz  lmfp_gpaw_afm_test.extxyz.gz

Run in the background on one core, for as long as it may (it stops cleanly between frames when
``--hours`` are used up; a killed run loses only the frame in progress):

    taskset -c 1 python benchmarks/make_dft_data.py --fidelities gpaw_nonmag --hours 2
    taskset -c 0 python benchmarks/make_dft_data.py --fidelities gpaw_afm --until 14:20

Set-up: ``make dft`` (GPAW). The gpaw_afm fidelity is produced only after its convergence check
(``benchmarks/dft_convergence.py``) passed; ``--fidelities`` chooses what a sitting labels.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import ase.io  # noqa: E402
import numpy as np  # noqa: E402
from ase import Atoms, units  # noqa: E402

from mf_calc.label.run import hours_until  # noqa: E402

DATA = Path(__file__).parent / "data" / "dft"
INPUTS, RAW = DATA / "inputs", DATA / "raw"
SETS = {"afm_test": 30, "paired": 90, "nonmag_only": 210, "nonmag_extra": 10}  # frames per set (new sets go last:
# a set's index seeds its inputs)
LABELS = {"afm_test": ("gpaw_afm",), "paired": ("gpaw_nonmag", "gpaw_afm"), "nonmag_only": ("gpaw_nonmag",),
          "nonmag_extra": ("gpaw_nonmag",)}
OUTPUTS = {"lmfp_gpaw_nonmag": [("paired", "gpaw_nonmag"), ("nonmag_only", "gpaw_nonmag"),
                                ("nonmag_extra", "gpaw_nonmag")],
           "lmfp_gpaw_afm_train": [("paired", "gpaw_afm")], "lmfp_gpaw_afm_test": [("afm_test", "gpaw_afm")]}
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
SNAPSHOTS, MD_EQUIL, MD_EVERY, T_RANGE = 5, 100, 25, (300.0, 1000.0)
STRAIN, RATTLE = 0.02, (0.02, 0.06)


# ----------------------------------------------------------------------------- unlabelled inputs
def make_inputs(name: str, n_frames: int, seed: int, calc) -> list[Atoms]:
    """The unlabelled frames of one set: half MD snapshots (whole trajectories), half strained + rattled."""
    from mf_calc import lmfp
    from mf_calc.workflows.relax import RelaxSettings, relax

    set_index = list(SETS).index(name)
    n_traj = n_frames // (2 * SNAPSHOTS)
    units_ = ["md"] * n_traj + ["strain"] * (n_frames - n_traj * SNAPSHOTS)
    np.random.default_rng([seed, set_index]).shuffle(units_)
    frames = []
    for i, kind in enumerate(units_):
        rng = np.random.default_rng([seed, set_index, i])
        x_li, y_mn = (float(v) for v in rng.choice(FRACTIONS, size=2))
        atoms = lmfp(x_li=x_li, y_mn=y_mn, supercell=(1, 1, 1), seed=int(rng.integers(2**31)))
        atoms, summary = relax(atoms, calc, RelaxSettings(fmax=0.05, steps=400))
        info = {"config_id": f"{name}-{i:03d}", "kind": kind, "x_li": x_li, "y_mn": y_mn,
                "relax_converged": summary["converged"]}
        if kind == "strain":
            eps = np.triu(rng.uniform(-STRAIN, STRAIN, size=(3, 3)))
            eps += np.triu(eps, 1).T
            atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
            sigma = float(rng.uniform(*RATTLE))
            atoms.positions += rng.normal(0.0, sigma, size=atoms.positions.shape)
            frames.append(_bare(atoms, info | {"rattle_sigma_A": sigma}))
        else:
            frames += _trajectory(atoms, calc, rng, info)
    return frames


def _trajectory(atoms: Atoms, calc, rng, info: dict) -> list[Atoms]:
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    temperature = float(rng.uniform(*T_RANGE))
    atoms = atoms.copy()
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.01 / units.fs, fixcm=False, rng=rng)
    dyn.run(MD_EQUIL)
    frames = []
    for _ in range(SNAPSHOTS):
        dyn.run(MD_EVERY)
        frames.append(_bare(atoms, info | {"T_K": temperature, "md_step": dyn.nsteps,
                                           "trajectory": info["config_id"]}))
    return frames


def _bare(atoms: Atoms, info: dict) -> Atoms:
    out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True, info=dict(info))
    out.wrap()
    return out


def inputs(seed: int) -> dict[str, list[Atoms]]:
    """Every set's unlabelled frames: read from data/dft/inputs, made (and written) only where absent."""
    missing = [name for name in SETS if not (INPUTS / f"{name}.extxyz").is_file()]
    if missing:
        import torch

        from mf_calc import MFCalculator, load_model
        from mf_calc.atomic import atomic_write

        torch.set_num_threads(1)
        calc = MFCalculator(load_model())
        for name in missing:
            frames = make_inputs(name, SETS[name], seed, calc)
            atomic_write(INPUTS / f"{name}.extxyz", lambda fh, frames=frames: ase.io.write(fh, frames, format="extxyz"))
            print(f"inputs: {name} {len(frames)} frames (model {calc.model.metadata.get('name')})", flush=True)
    return {name: ase.io.read(INPUTS / f"{name}.extxyz", ":") for name in SETS}


# ----------------------------------------------------------------------------- labelling and merging
def label(frames: dict[str, list[Atoms]], fidelities: list[str], chunk: int, hours: float, workers: int,
          reuse_scf: bool = False) -> None:
    """Rounds of ``chunk`` more frames per (set, fidelity) until everything is labelled or time is up.

    ``reuse_scf``: start each MD snapshot's SCF from the previous snapshot's converged state. Off by default:
    on the same three gpaw_nonmag snapshots a fresh start needed 45 SCF iterations on average against 70 when
    reusing, for the same labels (0.2 meV/Å MAE apart; ``dft_convergence.py --fresh``, SITTINGS.md sitting 3)."""
    from mf_calc.label import LabelOptions, label_frames

    jobs = [(name, fid) for name in SETS for fid in LABELS[name] if fid in fidelities]
    deadline = time.time() + 3600 * hours
    upto = {job: 0 for job in jobs}
    while time.time() < deadline and any(upto[(n, f)] < len(frames[n]) for n, f in jobs):
        for name, fid in jobs:
            upto[(name, fid)] = min(upto[(name, fid)] + chunk, len(frames[name]))
            # one call per round and set: labels what is missing up to `upto` (finished frames are skipped); all
            # frames are passed so that summary.json counts the whole set
            options = LabelOptions(workers, "trajectory" if reuse_scf else None, progress=False, deadline=deadline)
            sources = [f"inputs/{name}.extxyz:{i}" for i in range(len(frames[name]))]
            summary = label_frames(frames[name], fid, fid, RAW / f"{name}_{fid}", options, sources=sources,
                                   only=range(upto[(name, fid)]))
            print(f"{time.strftime('%H:%M')} {name} {fid}: {summary['n_ok']} ok, {summary['n_failed']} failed "
                  f"of {len(frames[name])}", flush=True)
            if time.time() >= deadline:
                break


def collect() -> dict[str, int]:
    """Merge the finished frames into the three data files (gzip with a fixed header); frames per file."""
    from mf_calc.label import LabelStore
    from mf_calc.label.store import record_to_atoms

    counts = {}
    for stem, parts in OUTPUTS.items():
        frames = []
        for name, fid in parts:
            store = LabelStore(RAW / f"{name}_{fid}")
            if store.records.is_dir():
                frames += [record_to_atoms(r, fid) for r in store.all_records() if r["status"] == "ok"]
        counts[stem] = len(frames)
        if frames:
            write_gz(DATA / f"{stem}.extxyz.gz", frames)
        else:  # e.g. every frame superseded by a new spec: no stale file
            (DATA / f"{stem}.extxyz.gz").unlink(missing_ok=True)
    return counts


def write_gz(path: Path, frames: list[Atoms]) -> None:
    """extxyz in gzip with a fixed header (mtime 0, reproducible bytes), written atomically."""
    from mf_calc.atomic import atomic_write

    def write(fh):
        with gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz, io.TextIOWrapper(gz) as text:
            ase.io.write(text, frames, format="extxyz")

    atomic_write(path, write, binary=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fidelities", default="gpaw_nonmag,gpaw_afm", help="comma-separated fidelities to label")
    ap.add_argument("--hours", type=float, default=1e9, help="stop starting new frames after this many hours")
    ap.add_argument("--until", metavar="HH:MM", help="stop starting new frames at this local time (the nearest: one up "
                                                     "to 12 h ago has passed; with --hours, whichever is first)")
    ap.add_argument("--chunk", type=int, default=10, help="frames per (set, fidelity) and round")
    ap.add_argument("--workers", type=int, default=1, help="worker processes, one core each")
    ap.add_argument("--reuse-scf", action="store_true",
                    help="start MD snapshots from the previous snapshot's SCF state (measured slower: see label(); "
                         "gpaw_afm's Hubbard-U ramp starts every frame from scratch regardless)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--inputs-only", action="store_true", help="make the unlabelled inputs and stop")
    ap.add_argument("--collect", action="store_true", help="only merge finished frames into the data files")
    args = ap.parse_args(argv)
    fidelities = [f for f in args.fidelities.split(",") if f]
    unknown = set(fidelities) - {"gpaw_nonmag", "gpaw_afm"}
    if unknown:
        ap.error(f"unknown fidelities {sorted(unknown)}; choose from gpaw_nonmag, gpaw_afm")
    hours = args.hours if args.until is None else min(args.hours, hours_until(args.until))
    if not args.collect:
        frames = inputs(args.seed)
        if not args.inputs_only:
            label(frames, fidelities, args.chunk, hours, args.workers, args.reuse_scf)
    print("collected:", collect(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
