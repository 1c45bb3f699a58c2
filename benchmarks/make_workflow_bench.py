"""DFT benchmark of what the workflows compute (never trained on): ``gpaw_afm`` single points of structures
that the workflows make with the DFT-trained model, resumable.

Parts (each a file of inputs, made once with the model and then fixed, and a labelling folder):

    hull_fe    every symmetry-distinct Li/vacancy ordering of Li_xFePO4 in the 28-atom cell, relaxed (cell and
               positions, fmax 0.05 eV/Å) with the model: DFT formation energies and the DFT hull
    ev         LiFePO4 and FePO4 relaxed, then at 5 volumes (0.96-1.04 V0, positions relaxed at fixed cell):
               DFT E(V) and bulk moduli
    md         snapshots 200 fs apart of 300 K and 600 K NPT runs of delithiated cells (x 1/4-3/4, y_Mn 0-1; site
               arrangements from seeds the training sets never used): near-equilibrium forces
    hull_fe_co the mixed-valence orderings of hull_fe (0 < x < 1) again from a charge-ordered magnetic start (the
               Fe nearest each Li starts as high-spin Fe2+, 4 μB, the others as Fe3+, 5 μB, with the olivine AFM
               signs) and no U ramp: the spec's ramp may leave the extra electrons delocalised over several Fe;
               per structure the lower-energy converged solution is the label (both are recorded)
    hull_mnfe  the same as hull_fe for Li_x(Mn1/2Fe1/2)PO4
    neb        the LiFePO4 [010] vacancy hop of ``mf-calc neb --quick`` (55 atoms): the initial end point and the
               climbing image, so the DFT barrier along the model's path
    relax      DFT relaxations (GPAW, BFGS, fixed cell, fmax 0.05 eV/Å; ``mf_calc.label.relax``, resumable) of
               FePO4, LiFePO4 and the lowest-energy x = 1/2 ordering of hull_fe (from the magnetic start of its
               lower-energy solution): how far the single-point shortcut of the hull parts moves E_f

Inputs: ``data/dft/workflow_bench/inputs/PART.extxyz`` (model energy, forces and magmoms of each frame in
``info``/arrays, so a report compares without rerunning the model); labels in
``data/dft/workflow_bench/raw/PART`` (one record per frame; commit them as they land). A rerun skips what is
finished. Run in the background on one core:

    taskset -c 1 python benchmarks/make_workflow_bench.py --parts hull_fe hull_fe_co ev md hull_mnfe neb relax --until 19:50

The same command on another core (``taskset -c 0 ...``) shares the work: each frame and each relaxation is
claimed by one live process, and the other goes on to the next.

``--inputs-only`` makes the inputs and stops (the model runs take minutes). Set-up: ``make dft`` (GPAW).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import ase.io  # noqa: E402
import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

from mf_calc.label.run import hours_until  # noqa: E402

BENCH = Path(__file__).parent / "data" / "dft" / "workflow_bench"
INPUTS, RAW, WORK = BENCH / "inputs", BENCH / "raw", BENCH / "model_runs"
MODEL, FIDELITY, SPEC = "lmfp-dft", "gpaw_afm", "gpaw_afm"
PARTS = ("hull_fe", "hull_fe_co", "ev", "md", "hull_mnfe", "neb", "relax")
RELAX_FMAX, RELAX_STEPS = 0.05, 100
VOLUME_SCALES = (0.96, 0.98, 1.0, 1.02, 1.04)
MD_CASES = [(x, y, t) for t in (300.0, 600.0) for x, y in ((0.25, 0.0), (0.5, 0.5), (0.75, 1.0))]
MD_SEED0 = 9000  # site arrangements from seeds the training inputs (seeds < 1000) never used
MD_SNAPSHOTS, MD_EQUILIBRATE_FS, MD_SPACING_FS = 4, 400, 200


class NotReady(RuntimeError):
    """A part's inputs depend on DFT labels of other parts that are not finished."""


def calculator():
    from mf_calc import MFCalculator, load_model

    return MFCalculator(load_model(MODEL), fidelity=FIDELITY)


def _bare(atoms: Atoms, info: dict) -> Atoms:
    """Structure only, with the model's prediction and provenance (``info``) for the report."""
    calc = atoms.calc
    out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
    out.info.update(info, model=MODEL, model_fidelity=FIDELITY)
    if calc is not None:
        out.info["model_energy"] = float(atoms.get_potential_energy())
        out.arrays["model_forces"] = np.array(atoms.get_forces())
        out.arrays["model_magmoms"] = np.array(atoms.get_magnetic_moments())
    return out


def build_hull(y_mn: float, part: str) -> list[Atoms]:
    from mf_calc.structures import lmfp
    from mf_calc.workflows.hull import HullSettings, formation_hull, record_atoms

    host = lmfp(1.0, y_mn, supercell=(1, 1, 1), seed=0)
    result = formation_hull(host, calculator, WORK / part, HullSettings(max_per_x=1000, fmax=0.05), progress=False)
    import json

    calc, frames = calculator(), []
    for key, x, ef in zip(result["keys"], result["x"], result["formation_energy_eV"]):
        record = json.loads((Path(result["folder"]) / f"{key}.json").read_text())
        atoms = record_atoms(record)
        atoms.calc = calc
        frames.append(_bare(atoms, {"part": part, "x_li": x, "y_mn": y_mn, "ordering": key,
                                    "multiplicity": record["multiplicity"] or 0, "model_ef_eV_fu": ef,
                                    "n_fu": result["n_fu"], "relax_converged": record["converged"]}))
    return frames


def build_ev() -> list[Atoms]:
    from mf_calc.structures import lmfp
    from mf_calc.workflows.relax import RelaxSettings, relax

    calc, frames = calculator(), []
    for name, x in (("LiFePO4", 1.0), ("FePO4", 0.0)):
        relaxed, _ = relax(lmfp(x, 0.0, supercell=(1, 1, 1)), calc, RelaxSettings(fmax=0.01, steps=1000))
        for scale in VOLUME_SCALES:
            strained = relaxed.copy()
            strained.set_cell(relaxed.cell.array * scale ** (1 / 3), scale_atoms=True)
            atoms, summary = relax(strained, calc, RelaxSettings(fmax=0.01, relax_cell=False, steps=1000))
            frames.append(_bare(atoms, {"part": "ev", "material": name, "volume_scale": scale,
                                        "volume_A3": float(atoms.get_volume()), "relax_converged": summary["converged"]}))
    return frames


def build_md() -> list[Atoms]:
    from mf_calc.structures import lmfp
    from mf_calc.workflows.md import MDOutput, MDSettings, run_md
    from mf_calc.workflows.relax import RelaxSettings, relax

    calc, frames = calculator(), []
    steps = MD_EQUILIBRATE_FS + (MD_SNAPSHOTS - 1) * MD_SPACING_FS
    for i, (x, y, temperature) in enumerate(MD_CASES):
        start, _ = relax(lmfp(x, y, supercell=(1, 1, 1), seed=MD_SEED0 + i), calc, RelaxSettings(fmax=0.05))
        traj = WORK / "md" / f"case{i}.traj"
        traj.parent.mkdir(parents=True, exist_ok=True)
        run_md(start, calc, MDSettings("npt", temperature, steps=steps, seed=MD_SEED0 + i),
               MDOutput(traj, None, MD_SPACING_FS // 2, progress=False))
        snapshots = ase.io.read(traj, ":")
        kept = [a for a in snapshots if a.info.get("md_step", 0) >= MD_EQUILIBRATE_FS
                and (a.info["md_step"] - MD_EQUILIBRATE_FS) % MD_SPACING_FS == 0]
        for atoms in kept:
            time_fs = int(atoms.info["md_step"])
            atoms = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
            atoms.calc = calc
            frames.append(_bare(atoms, {"part": "md", "x_li": x, "y_mn": y, "temperature_K": temperature,
                                        "trajectory": f"md{i}", "time_fs": time_fs, "seed": MD_SEED0 + i}))
    return frames


def build_neb() -> list[Atoms]:
    from mf_calc.structures import lmfp
    from mf_calc.workflows.neb import NEBSettings, li_barriers

    result = li_barriers(lmfp(1.0, 0.0, supercell=(1, 1, 2)), calculator, ("010",), NEBSettings(3, 0.1))["010"]
    ase.io.write(WORK / "neb_path.extxyz", result.images)
    calc, frames = calculator(), []
    for role, index in (("initial", 0), ("climbing_image", result.climbing_image)):
        atoms = result.images[index].copy()
        atoms.calc = calc
        frames.append(_bare(atoms, {"part": "neb", "role": role, "image": index, "direction": "010",
                                    "model_barrier_eV": result.barrier, "neb_converged": result.converged}))
    return frames


def build_charge_ordered() -> list[Atoms]:
    """The mixed-valence hull_fe orderings with initial moments of an Fe2+/Fe3+ arrangement (see the docstring)."""
    from mf_calc.label.magnetism import initial_magmoms

    frames = []
    for atoms in inputs("hull_fe"):
        if not 0 < atoms.info["x_li"] < 1:
            continue
        fe, li = np.flatnonzero(atoms.numbers == 26), np.flatnonzero(atoms.numbers == 3)
        signs = np.sign(initial_magmoms(atoms, "afm-olivine"))
        size = np.where(atoms.numbers == 26, 5.0, 0.0)
        for i in li:  # each Li's electron on the nearest Fe that has none yet
            d = atoms.get_distances(i, fe, mic=True) + np.where(size[fe] == 4.0, 1e9, 0.0)
            size[fe[np.argmin(d)]] = 4.0
        atoms.set_initial_magnetic_moments(signs * size)
        atoms.info["part"] = "hull_fe_co"
        frames.append(atoms)
    return frames


def charge_ordered_spec():
    """gpaw_afm's settings from the frame's own initial moments, without the U ramp."""
    from mf_calc.label.spec import LabelSpec

    spec = LabelSpec.load(SPEC).to_dict()
    spec.pop("u_ramp", None)
    spec.pop("u_ramp_convergence", None)
    return LabelSpec.from_dict(spec | {"magnetic_start": "input"})


def build_relax() -> list[Atoms]:
    """FePO4, LiFePO4 and the lowest x = 1/2 ordering of hull_fe by its DFT label (every x = 1/2 frame of hull_fe
    and hull_fe_co must be finished there: labelled, or failed on both tries), each with the magnetic start of its
    label (info ``solution``)."""
    from workflow_bench_report import labelled, lowest_solutions

    if any(unfinished(part, lambda a: a.info["x_li"] == 0.5) for part in ("hull_fe", "hull_fe_co")):
        raise NotReady("relax picks its x = 1/2 ordering by the DFT labels: label hull_fe and hull_fe_co first")
    chosen = lowest_solutions(labelled("hull_fe"), labelled("hull_fe_co"))
    half = [a for a in chosen if a.info["x_li"] == 0.5]
    best = min(half, key=lambda a: a.get_potential_energy())
    starts = {a.info["ordering"]: a for a in inputs("hull_fe") + inputs("hull_fe_co")
              if a.info["part"] == ("hull_fe_co" if best.info["solution"] == "charge_ordered" else "hull_fe")}
    frames = []
    for atoms, name in ((next(a for a in chosen if a.info["x_li"] == 0.0), "FePO4"),
                        (next(a for a in chosen if a.info["x_li"] == 1.0), "LiFePO4"), (best, "Li0.5FePO4")):
        start = starts[atoms.info["ordering"]] if atoms is best else atoms
        frame = Atoms(numbers=start.numbers, positions=start.positions, cell=start.cell, pbc=True,
                      magmoms=start.get_initial_magnetic_moments())
        frame.info.update(part="relax", name=name, x_li=atoms.info["x_li"], ordering=atoms.info["ordering"],
                          solution=atoms.info["solution"], single_point_energy=atoms.get_potential_energy())
        frames.append(frame)
    return frames


def unfinished(part: str, which=lambda atoms: True) -> list[int]:
    """Indices of the part's inputs (those ``which`` accepts) without a final record (ok or failed) yet."""
    from mf_calc.label.store import LabelStore

    store = LabelStore(RAW / part)
    done = {r["index"] for r in store.all_records()} if store.records.is_dir() else set()
    return [i for i, atoms in enumerate(inputs(part)) if which(atoms) and i not in done]


def label_needed_retry(frame: Atoms) -> bool:
    """Whether the DFT label of a relax input's start structure converged only with the spec's retry settings
    (the relaxation then starts with them: the SCF of the same solution)."""
    from mf_calc.label.store import LabelStore

    part = "hull_fe_co" if frame.info["solution"] == "charge_ordered" else "hull_fe"
    index = next(i for i, a in enumerate(inputs(part)) if a.info["ordering"] == frame.info["ordering"])
    return LabelStore(RAW / part).read(index)["attempts"][-1]["retry"]


def relax(deadline: float) -> dict:
    """DFT relaxations of the relax inputs, each in ``raw/relax/NAME`` (resumable); the counts per status."""
    from mf_calc.label.relax import DFTRelaxSettings, relax_with_spec

    counts = {"n_ok": 0, "n_failed": 0, "n_pending": 0}
    for frame in inputs("relax"):
        if time.time() >= deadline:
            counts["n_pending"] += 1
            continue
        spec = charge_ordered_spec() if frame.info["solution"] == "charge_ordered" else SPEC
        try:
            settings = DFTRelaxSettings(RELAX_FMAX, RELAX_STEPS, retry=label_needed_retry(frame))
            result = relax_with_spec(frame, spec, RAW / "relax" / frame.info["name"], settings, deadline)
        except Exception as err:  # noqa: BLE001 -- the calculator's failure: report it, go on with the others
            print(f"relax {frame.info['name']}: {type(err).__name__}: {err}", flush=True)
            counts["n_failed"] += 1
            continue
        counts["n_ok" if result is not None else "n_pending"] += 1
    return counts


BUILDERS = {"hull_fe": lambda: build_hull(0.0, "hull_fe"), "hull_mnfe": lambda: build_hull(0.5, "hull_mnfe"),
            "hull_fe_co": build_charge_ordered, "ev": build_ev, "md": build_md, "neb": build_neb,
            "relax": build_relax}


def inputs(part: str) -> list[Atoms]:
    """The part's input frames: read when made before, else made with the model and written once."""
    path = INPUTS / f"{part}.extxyz"
    if not path.is_file():
        from mf_calc.atomic import atomic_write

        WORK.mkdir(parents=True, exist_ok=True)
        frames = BUILDERS[part]()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda fh: ase.io.write(fh, frames, format="extxyz"))
    return ase.io.read(path, ":")


def label(part: str, deadline: float, give_up: int | None = None) -> dict:
    from mf_calc.label.run import LabelOptions, label_frames

    frames = inputs(part)
    sources = [f"workflow_bench/inputs/{part}.extxyz:{i}" for i in range(len(frames))]
    spec = charge_ordered_spec() if part == "hull_fe_co" else SPEC
    summary, options = {}, LabelOptions(progress=False, deadline=deadline, give_up=give_up)
    for wave in snapshot_waves(frames):
        summary = label_frames(frames, FIDELITY, spec, RAW / part, options, sources=sources, only=wave)
    return summary


def snapshot_waves(frames: list[Atoms]) -> list[list[int]]:
    """Frame indices in waves: the first snapshot of every trajectory, then the second, ...; so a part left
    unfinished covers every trajectory (frames without a trajectory form one wave)."""
    rank, waves = {}, {}
    for i, atoms in enumerate(frames):
        key = atoms.info.get("trajectory")
        n = rank[key] = rank.get(key, -1) + 1 if key is not None else 0
        waves.setdefault(n, []).append(i)
    return [waves[n] for n in sorted(waves)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS, help="parts, in this order")
    ap.add_argument("--until", metavar="HH:MM", help="start no frame after this local time")
    ap.add_argument("--hours", type=float, default=1e9, help="start no frame after this many hours")
    ap.add_argument("--inputs-only", action="store_true", help="make the inputs with the model and stop")
    ap.add_argument("--give-up", type=int, default=None, metavar="N",
                    help="give up an SCF whose density error has not halved for N iterations (the retry, if any, follows)")
    args = ap.parse_args(argv)
    from mf_calc.threads import configure_threads

    configure_threads(1)
    hours = min(args.hours, hours_until(args.until)) if args.until else args.hours
    deadline = time.time() + 3600 * hours
    for part in args.parts:
        try:
            frames = inputs(part)
        except NotReady as err:
            print(f"{part}: not started: {err}", flush=True)
            continue
        print(f"{part}: {len(frames)} input frames", flush=True)
        if args.inputs_only or time.time() >= deadline:
            continue
        s = relax(deadline) if part == "relax" else label(part, deadline, args.give_up)
        print(f"{part}: {s['n_ok']} ok, {s['n_failed']} failed, {s['n_pending']} pending", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
