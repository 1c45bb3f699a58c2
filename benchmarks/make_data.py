"""Teacher-labelled LMFP multi-fidelity benchmark data (Li_x Mn_y Fe_(1-y) PO4, 1x1x2 olivine cells).

No public LMFP DFT data exists, so configurations are labelled by the two DFT-trained models in the
chgnet wheel (via mf_calc's exact re-implementation, spot-checked against chgnet itself):
low fidelity ``pbe_u`` = CHGNet 0.3.0 (E, F, S; magmoms dropped), high fidelity ``r2scan`` =
CHGNet r2scan (E, F, S, magmoms). Frames: ~55 % rattled + strained cells, ~45 % snapshots of short
Langevin NVT MD driven by the low-fidelity teacher. Sets (paper sizes, disjoint configurations):
r2scan 1911 (10 % test), pbe_u 1736, paired 200 (labelled at both fidelities).
Deterministic for a given --seed; resumable (finished chunks in OUT/.chunks are kept and skipped).

Regenerate the committed data (about an hour on 2 CPU cores):

    python benchmarks/make_data.py --scale full
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import time
from importlib.metadata import version as _version
from pathlib import Path

import ase.io
import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.stress import full_3x3_to_voigt_6_stress
from tqdm import tqdm

try:  # ASE >= 3.29; MaxwellBoltzmannDistribution is deprecated there
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
except ImportError:
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta
    from ase.md.velocitydistribution import Stationary

from mf_calc import MFCalculator, MFCHGNet, lmfp
from mf_calc.atomic import atomic_write
from mf_calc.data import read_frames

TEACHERS = {"pbe_u": "0.3.0", "r2scan": "r2scan"}  # fidelity -> pretrained CHGNet in the chgnet wheel
# set -> {fidelity it is labelled at: output file stem}; config ids of set i are 100000 * i + 0, 1, ...
SETS = {"r2scan_test": {"r2scan": "lmfp_r2scan_test"}, "r2scan_train": {"r2scan": "lmfp_r2scan_train"},
        "pbe_u_train": {"pbe_u": "lmfp_pbe_u_train"},
        "paired": {"pbe_u": "lmfp_paired_pbe_u", "r2scan": "lmfp_paired_r2scan"}}
SCALES = {"full": (1911, 1736, 200), "smoke": (20, 16, 4)}  # (n_high, n_low, n_paired)
MD_FRACTION, STRAIN, SIGMA, T_RANGE = 0.45, 0.03, (0.02, 0.12), (300.0, 1000.0)


def set_sizes(n_high: int, n_low: int, n_paired: int) -> dict[str, int]:
    n_test = round(0.1 * n_high)
    return {"r2scan_test": n_test, "r2scan_train": n_high - n_test, "pbe_u_train": n_low, "paired": n_paired}


def plan(name: str, n_frames: int, args) -> list[tuple[int, str]]:
    """(config_id, kind) units of one set: whole MD trajectories (md_snapshots frames) and single rattled frames."""
    k = args.md_snapshots
    n_md = min(round(MD_FRACTION * n_frames / k), n_frames // k)
    kinds = ["md"] * n_md + ["rattle"] * (n_frames - n_md * k)
    np.random.default_rng([args.seed, list(SETS).index(name)]).shuffle(kinds)
    base = 100_000 * list(SETS).index(name)
    return [(base + i, kind) for i, kind in enumerate(kinds)]


def n_frames(units: list, k: int) -> int:
    return sum(1 if kind == "rattle" else k for _, kind in units)


def chunks(units: list, size: int, k: int) -> list[list]:
    """Consecutive groups of whole units holding at least ``size`` frames (the last may hold fewer)."""
    out, cur = [], []
    for unit in units:
        cur.append(unit)
        if n_frames(cur, k) >= size:
            out, cur = out + [cur], []
    return out + [cur] if cur else out


def structure(config_id: int, kind: str, args, md_model: MFCHGNet) -> list[Atoms]:
    """Unlabelled frames of one configuration; every random number comes from rng([seed, config_id])."""
    rng = np.random.default_rng([args.seed, config_id])
    n_li, n_mn = (int(v) for v in rng.integers(0, 9, size=2))
    atoms = lmfp(x_li=n_li / 8, y_mn=n_mn / 8, supercell=(1, 1, 2), seed=int(rng.integers(2**31)))
    eps = np.triu(rng.uniform(-STRAIN, STRAIN, size=(3, 3)))
    eps += np.triu(eps, 1).T  # symmetric strain, each component within +-3 %
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    info = {"config_id": config_id, "kind": kind, "x_li": n_li / 8, "y_mn": n_mn / 8}
    if kind == "rattle":
        sigma = float(rng.uniform(*SIGMA))
        atoms.positions += rng.normal(0.0, sigma, size=atoms.positions.shape)
        return [_bare(atoms, info | {"rattle_sigma_A": sigma})]
    temp = float(rng.uniform(*T_RANGE))
    atoms.calc = MFCalculator(md_model)
    thermalize_momenta(atoms, temperature_K=temp, rng=rng)
    Stationary(atoms)
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temp, friction=0.01 / units.fs, fixcm=False, rng=rng)
    dyn.run(args.md_equil)
    frames = []
    for _ in range(args.md_snapshots):
        dyn.run(args.md_every)
        frames.append(_bare(atoms, info | {"T_K": temp, "md_step": dyn.nsteps}))
    return frames


def _bare(atoms: Atoms, info: dict) -> Atoms:
    """Structure only (no momenta, calculator or builder metadata), positions wrapped into the cell."""
    out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True, info=dict(info))
    out.wrap()
    return out


def label(frames: list[Atoms], fidelity: str, teacher: MFCHGNet) -> list[Atoms]:
    """Copies of the frames with the teacher's E, F, S (and magmoms for r2scan) as single-point results."""
    out = []
    for atoms, p in zip(frames, teacher.predict(frames, task="efsm", batch_size=8)):
        atoms = atoms.copy()
        atoms.info["fidelity"] = fidelity
        res = {"energy": float(p["energy"]), "forces": p["forces"].astype(float),
               "stress": full_3x3_to_voigt_6_stress(p["stress"].astype(float))}
        if fidelity == "r2scan":
            res["magmoms"] = p["magmoms"].astype(float)
        atoms.calc = SinglePointCalculator(atoms, **res)
        out.append(atoms)
    return out


def spot_check(frames: dict[str, list], n: int) -> dict[str, dict[str, float]]:
    """Largest |stored label - chgnet CHGNet.predict_structure| on ~n/2 evenly spaced frames per fidelity."""
    from chgnet.model import CHGNet
    from pymatgen.io.ase import AseAtomsAdaptor

    out = {}
    for fid, name in TEACHERS.items():
        model = CHGNet.load(model_name=name, use_device="cpu", verbose=False)
        picked = [frames[fid][int(i)] for i in np.linspace(0, len(frames[fid]) - 1, max(n // 2, 1))]
        dev = out[fid] = {"n_frames": len(picked)}
        for f in picked:
            ref = model.predict_structure(AseAtomsAdaptor.get_structure(f.atoms))
            diffs = {"energy_eV_per_atom": f.energy / len(f.atoms) - ref["e"], "forces_eV_per_A": f.forces - ref["f"],
                     "stress_GPa": f.stress / units.GPa - full_3x3_to_voigt_6_stress(ref["s"])}  # chgnet: GPa, ASE sign
            if f.magmoms is not None:
                diffs["magmoms_muB"] = f.magmoms - ref["m"]
            for key, d in diffs.items():
                dev[key] = max(dev.get(key, 0.0), float(np.abs(d).max()))
    return out


def _write_gz(path: Path, parts: list[Path]) -> None:
    """Concatenate extxyz chunks into one gzip file with a fixed header (mtime 0): byte-reproducible."""
    def write(raw):
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            for part in parts:
                gz.write(part.read_bytes())

    atomic_write(path, write, binary=True)


def _stats(frames: list) -> dict:
    e = np.array([f.energy / len(f.atoms) for f in frames])
    f = {k: [fr.forces for fr in frames if fr.atoms.info["kind"] in k] for k in ("rattle md", "rattle", "md")}
    s = np.concatenate([f.stress for f in frames]) / units.GPa
    return {"frames": len(frames), "E_min": e.min(), "E_max": e.max(), "E_mean": e.mean(),
            "F_rms": " / ".join(f"{np.sqrt(np.mean(np.concatenate(v) ** 2)):.2f}" if v else "-" for v in f.values()),
            "F_max": max(np.abs(v).max() for v in f["rattle md"]), "S_rms": np.sqrt(np.mean(s**2)),
            "md": len(f["md"])}


def data_card(out: Path, data: dict[str, list], check: dict, args, sizes: dict) -> str:
    lines = ["# LMFP multi-fidelity benchmark data (teacher-labelled)", "",
             "**labels come from teacher models (CHGNet 0.3.0 and CHGNet r2scan), not from DFT**", "",
             "Regenerate: `python benchmarks/make_data.py --scale full` "
             f"(this data: `--seed {args.seed} --n-high {sizes['r2scan_test'] + sizes['r2scan_train']} "
             f"--n-low {sizes['pbe_u_train']} --n-paired {sizes['paired']}`).", "",
             "## How labels were made",
             "- Teachers (chgnet wheel, via `MFCHGNet.from_chgnet(name, modules='')`, float32, CPU): "
             "`pbe_u` = CHGNet 0.3.0 (trained on MPtrj, PBE/PBE+U) -> energy, forces, stress, **magmoms dropped**; "
             "`r2scan` = CHGNet r2scan (trained on MP r2SCAN) -> energy, forces, stress, magmoms.",
             "- Configurations: `lmfp(x_li=n_li/8, y_mn=n_mn/8, supercell=(1,1,2))` olivine cells "
             "(48-56 atoms), n_li and n_mn uniform in 0..8, random site choice; a random symmetric strain "
             f"(each component uniform within +-{STRAIN:.0%}). Every random number of a configuration comes from "
             "`numpy.random.default_rng([seed, config_id])`.",
             f"- `kind=rattle` (~{1 - MD_FRACTION:.0%}): Gaussian rattle, sigma uniform in {SIGMA} A "
             "(`info['rattle_sigma_A']`) "
             "of an unrelaxed, strained cell: far from equilibrium, with a heavy force tail (see max abs F below).",
             f"- `kind=md` (~{MD_FRACTION:.0%}): Langevin NVT (2 fs, friction 0.01/fs) at T uniform in {T_RANGE} K "
             f"(`info['T_K']`) driven by the pbe_u teacher (`MFCalculator`), Maxwell-Boltzmann start, "
             f"{args.md_equil} steps equilibration, then {args.md_snapshots} snapshots every {args.md_every} steps.",
             "- Every frame is labelled at its fidelity by batched `MFCHGNet.predict(task='efsm')`; paired frames at both.",
             "- Sets use disjoint configurations (config_id = 100000 * set index + i); the r2scan test split is a "
             "fixed, separately drawn set of configurations (no trajectory is shared with train).",
             "- Units: energy eV (total), forces eV/A, stress eV/A^3 (ASE sign, Voigt), magmoms muB. "
             "Read with `mf_calc.data.read_frames(path)`.",
             f"- Made with chgnet {_version('chgnet')}, torch {torch.__version__}, ase {ase.__version__}, "
             f"numpy {np.__version__}, {args.threads} torch thread(s).", "",
             "## Files and label statistics (E/atom in eV, forces in eV/A)", "",
             "| file | fidelity | frames | md frames | size (MB) | E/atom min | E/atom max | E/atom mean | F RMS all "
             "/ rattle / md | max abs F | stress RMS (GPa) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for stem, frames in data.items():
        st, size = _stats(frames), (out / f"{stem}.extxyz.gz").stat().st_size / 1e6
        lines.append(f"| {stem}.extxyz.gz | {frames[0].fidelity} | {st['frames']} | {st['md']} | {size:.2f} | "
                     f"{st['E_min']:.4f} | {st['E_max']:.4f} | {st['E_mean']:.4f} | {st['F_rms']} | "
                     f"{st['F_max']:.2f} | {st['S_rms']:.2f} |")
    lines += ["", "## Composition (frames per n_li / n_mn out of 8)", "",
              "| file | n_li = 0..8 | n_mn = 0..8 |", "|---|---|---|"]
    for stem, frames in data.items():
        h = [np.bincount([round(f.atoms.info[k] * 8) for f in frames], minlength=9) for k in ("x_li", "y_mn")]
        lines.append(f"| {stem} | {' '.join(map(str, h[0]))} | {' '.join(map(str, h[1]))} |")
    lo, hi = data["lmfp_paired_pbe_u"], data["lmfp_paired_r2scan"]
    de = np.array([(h.energy - low.energy) / len(h.atoms) for low, h in zip(lo, hi)])
    df = np.concatenate([(h.forces - low.forces).ravel() for low, h in zip(lo, hi)])
    ds = np.concatenate([h.stress - low.stress for low, h in zip(lo, hi)]) / units.GPa
    lines += ["", f"## Teacher difference on the {len(lo)} paired frames (r2scan - pbe_u)", "",
              f"- energy: mean offset {de.mean():.4f} eV/atom; MAE after removing it "
              f"{np.mean(np.abs(de - de.mean())) * 1e3:.1f} meV/atom",
              f"- forces: MAE {np.mean(np.abs(df)) * 1e3:.1f} meV/A (components)",
              f"- stress: MAE {np.mean(np.abs(ds)):.3f} GPa (Voigt components)", "",
              "## Spot-check: stored labels vs chgnet `CHGNet.predict_structure` (max abs deviation)", "",
              "| teacher | frames | energy (eV/atom) | forces (eV/A) | stress (GPa) | magmoms (muB) |",
              "|---|---|---|---|---|---|"]
    for fid, d in check.items():
        mag = f"{d['magmoms_muB']:.1e}" if "magmoms_muB" in d else "-"
        lines.append(f"| {fid} (CHGNet {TEACHERS[fid]}) | {d['n_frames']} | {d['energy_eV_per_atom']:.1e} | "
                     f"{d['forces_eV_per_A']:.1e} | {d['stress_GPa']:.1e} | {mag} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Path]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=list(SCALES), default="full", help="paper sizes or ~40 frames (smoke)")
    for opt, i in (("--n-high", 0), ("--n-low", 1), ("--n-paired", 2)):
        ap.add_argument(opt, type=int, help=f"override the scale's size (full: {SCALES['full'][i]})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    ap.add_argument("--chunk-size", type=int, default=50, help="frames per resumable chunk")
    ap.add_argument("--md-equil", type=int, default=40, help="MD equilibration steps")
    ap.add_argument("--md-every", type=int, default=5, help="MD steps between snapshots")
    ap.add_argument("--md-snapshots", type=int, default=6, help="snapshots per MD trajectory")
    ap.add_argument("--n-check", type=int, default=10, help="frames spot-checked against chgnet")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return generate(args)
    finally:
        torch.set_num_threads(threads)


def generate(args) -> dict[str, Path]:
    """Make (or resume) every chunk, merge them into the .gz files, spot-check, write the data card."""
    sizes = set_sizes(*(given if given is not None else default for given, default in
                        zip((args.n_high, args.n_low, args.n_paired), SCALES[args.scale])))
    work = args.out / ".chunks"
    work.mkdir(parents=True, exist_ok=True)
    params = {"seed": args.seed, "sizes": sizes, "md": [args.md_equil, args.md_every, args.md_snapshots],
              "chunk_size": args.chunk_size, "teachers": TEACHERS}
    pfile = work / "params.json"
    if pfile.exists() and json.loads(pfile.read_text()) != json.loads(json.dumps(params)):
        raise SystemExit(f"{work} holds chunks made with other parameters ({pfile.read_text()}); "
                         "rerun with those or delete the folder")
    pfile.write_text(json.dumps(params))
    teachers = {fid: MFCHGNet.from_chgnet(name, fidelities=(fid,), modules="") for fid, name in TEACHERS.items()}
    jobs = [(name, i, chunk) for name in SETS
            for i, chunk in enumerate(chunks(plan(name, sizes[name], args), args.chunk_size, args.md_snapshots))]
    path = lambda name, i, fid: work / f"{name}_{i:04d}_{fid}.extxyz"  # noqa: E731
    done = lambda name, i: all(path(name, i, fid).exists() for fid in SETS[name])  # noqa: E731
    t0 = time.time()
    with tqdm(total=sum(sizes.values()), unit="frame", desc="make_data") as bar:
        bar.update(sum(n_frames(u, args.md_snapshots) for name, i, u in jobs if done(name, i)))
        for name, i, chunk in jobs:
            if done(name, i):
                continue
            frames = []
            for config_id, kind in chunk:
                frames += structure(config_id, kind, args, teachers["pbe_u"])
                bar.update(1 if kind == "rattle" else args.md_snapshots)
            for fid in SETS[name]:
                labelled = label(frames, fid, teachers[fid])
                atomic_write(path(name, i, fid), lambda fh, labelled=labelled: ase.io.write(fh, labelled, format="extxyz"))
    print(f"generated in {time.time() - t0:.0f} s; merging")
    outputs = {}
    for name, files in SETS.items():
        for fid, stem in files.items():
            outputs[stem] = args.out / f"{stem}.extxyz.gz"
            _write_gz(outputs[stem], [path(n, i, fid) for n, i, _ in jobs if n == name])
    data = {stem: read_frames(p) for stem, p in outputs.items()}
    by_fid = {fid: [f for stem, fr in data.items() for f in fr if f.fidelity == fid] for fid in TEACHERS}
    check = spot_check(by_fid, args.n_check)
    (args.out / "DATA_CARD.md").write_text(data_card(args.out, data, check, args, sizes))
    bad = {fid: d for fid, d in check.items() if d["energy_eV_per_atom"] > 1e-3 or d["forces_eV_per_A"] > 1e-2}
    if bad:
        raise SystemExit(f"teacher re-implementation deviates from chgnet: {bad}; chunks kept in {work}")
    shutil.rmtree(work)
    print(json.dumps(check, indent=1))
    return outputs


if __name__ == "__main__":
    main()
