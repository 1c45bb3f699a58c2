"""Convergence of the two GPAW fidelities (plane-wave cutoff and k-mesh) and finite-difference label checks.

Two frames (the first strained + rattled cell and the first MD snapshot of ``data/dft/inputs/afm_test.extxyz``)
are labelled with variants of the shipped specs ``gpaw_afm`` and ``gpaw_nonmag`` (mf_calc.label, resumable,
one folder per variant under ``data/dft/convergence/``):

    cutoff   350 / 450 / 600 / 800 eV at the fidelity's k-mesh; reference 800 eV
    k-mesh   (1, 2, 2) vs (2, 3, 4) at 450 eV (the k error barely depends on the cutoff; 600 eV with
             (2, 3, 4) costs ~6x a production frame)
    SCF      the fidelity's settings with its retry mixer (Pulay, β 0.02) from the first try: SCF iterations
             against the default mixer (``afm_600_retry_mixer`` vs ``afm_600``)

The variants above ran before the specs had a force criterion and keep GPAW's default SCF criteria (energy,
density, eigenstates), so their records stay valid; the SCF noise they leave in forces (≈ 5 meV/Å MAE) is
small next to the cutoff and k errors they measure. The ``*_fcrit`` variants use the shipped spec's criteria
(with its force criterion): ``afm_600_fcrit_retry_mixer`` vs ``afm_600_fcrit`` shows whether two mixers now
converge to the same forces.

``--report`` compares every finished variant with its reference: energy per atom, the energy difference
between the two frames, forces (MAE, max), stress (MAE, max, GPa), magmoms and the net force per frame; and
(``superseded.json``) every production label against the label an earlier spec gave the same frame.
The gate for production: gpaw_afm forces at 600 eV within 30 meV/Å (MAE) of 800 eV and of the denser k-mesh.
A stress more than 1 GPa off the converged value is masked in that fidelity's spec (``"stress": false``).

``--fd FIDELITY`` runs the finite-difference check (forces of atom 0 and of the first Fe/Mn atom, where the
Hubbard U acts, and the stress where the spec labels it, vs central differences of the free energy; 13 SCF
runs, 25 with stress) on the first frame and stores it as ``data/dft/convergence/fd_FIDELITY.json``.

    taskset -c 1 python benchmarks/dft_convergence.py --variants afm_600,afm_800 --report
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import ase.io  # noqa: E402
import numpy as np  # noqa: E402
from ase.units import GPa  # noqa: E402

from mf_calc.atomic import write_json  # noqa: E402
from mf_calc.label import LabelOptions, LabelSpec, LabelStore, finite_difference_check, label_frames  # noqa: E402
from mf_calc.label.store import record_to_atoms  # noqa: E402

DATA = Path(__file__).parent / "data" / "dft"
OUT = DATA / "convergence"
BASE = {"afm": "gpaw_afm", "nonmag": "gpaw_nonmag"}
U_RAMP = [0.0, 1.0]  # fractions of U of the ramp variants (mf_calc.label.u_ramp)


class Variant(NamedTuple):
    """A convergence variant of a shipped spec. ``spec_criteria=False``: GPAW's default SCF criteria, as when
    the variant was first run; ``retry_mixer``: the spec's retry settings from the first try; ``u_ramp``: None
    keeps the shipped spec's (a variant that has run keeps the spec it ran with, see :func:`run`)."""

    family: str
    ecut: float
    kpts: list[int] | None = None  # None: the fidelity's own k-mesh
    retry_mixer: bool = False
    spec_criteria: bool = False
    u_ramp: list[float] | None = None


VARIANTS = {f"{fam}_{ecut}": Variant(fam, ecut) for fam in BASE for ecut in (350, 450, 600, 800)}
VARIANTS |= {f"{fam}_450_k234": Variant(fam, 450, [2, 3, 4]) for fam in BASE}
VARIANTS |= {f"{fam}_450_k{''.join(map(str, k))}": Variant(fam, 450, k)
             for fam, k in (("afm", [1, 2, 2]), ("nonmag", [1, 1, 2]))}
# SCF robustness: the fidelity's settings with its retry mixer from the first try (same converged result)
VARIANTS |= {f"{fam}_{ecut}_retry_mixer": Variant(fam, ecut, retry_mixer=True)
             for fam, ecut in (("afm", 600), ("nonmag", 350))}
VARIANTS |= {f"afm_600_fcrit{tail}": Variant("afm", 600, retry_mixer=retry, spec_criteria=True)
             for tail, retry in (("", False), ("_retry_mixer", True))}
# the production settings (spec criteria and mixer) at the reference cutoff: the cutoff check with what labels
VARIANTS["afm_800_fcrit"] = Variant("afm", 800, spec_criteria=True)
# the production settings with a Hubbard-U ramp: one DFT+U solution at both cutoffs?
VARIANTS |= {f"afm_{ecut}_ramp": Variant("afm", ecut, spec_criteria=True, u_ramp=U_RAMP) for ecut in (600, 800)}
# (variant compared, reference variant); a report row is named after its variant, or "VARIANT vs REFERENCE"
# when an earlier pair has that variant already
COMPARISONS = [*((f"{fam}_{e}", f"{fam}_800") for fam in BASE for e in (350, 450, 600)),
               ("afm_450_k122", "afm_450_k234"), ("nonmag_450_k112", "nonmag_450_k234"),
               ("afm_600_retry_mixer", "afm_600"), ("nonmag_350_retry_mixer", "nonmag_350"),
               ("afm_600_fcrit_retry_mixer", "afm_600_fcrit"), ("afm_600_fcrit", "afm_600"),
               ("afm_600_fcrit", "afm_800_fcrit"), ("afm_600_ramp", "afm_800_ramp"), ("afm_600_ramp", "afm_600_fcrit"),
               ("afm_800_ramp", "afm_800_fcrit")]


def variant_spec(name: str) -> LabelSpec:
    variant = VARIANTS[name]
    base = LabelSpec.load(BASE[variant.family]).to_dict()
    settings = base["settings"] | {"mode": base["settings"]["mode"] | {"ecut": variant.ecut}}
    if not variant.spec_criteria:
        settings.pop("convergence", None)
    if variant.kpts is not None:
        settings["kpts"] = {"size": variant.kpts}
    if variant.retry_mixer:
        settings |= base["retry"]
    if variant.u_ramp is not None:
        base["u_ramp"] = variant.u_ramp
    base["stress"] = True  # the checks measure stress convergence, whatever the production spec labels
    return LabelSpec.from_dict(base | {"settings": settings})


#: the convergence frames: the first strained + rattled cell and the first MD snapshot of the test inputs
CONVERGENCE_KINDS = ("strain", "md")


def frames() -> list:
    """The convergence frames (``CONVERGENCE_KINDS``) of the test inputs."""
    test = ase.io.read(DATA / "inputs" / "afm_test.extxyz", ":")
    return [next(a for a in test if a.info["kind"] == kind) for kind in CONVERGENCE_KINDS]


def run(names: list[str], indices: list[int]) -> None:
    """Label the chosen convergence frames with each variant; a variant that has run keeps the spec it first
    ran with (its run.json), so its frames stay comparable after the production spec changed."""
    for name in names:
        try:
            spec = LabelSpec.from_dict(LabelStore(OUT / name).run_info()["spec"])
        except FileNotFoundError:  # a variant not run yet
            spec = variant_spec(name)
        summary = label_frames(frames(), f"conv_{name}", spec, OUT / name, LabelOptions(progress=False), only=indices)
        print(f"{name}: {summary['n_ok']} ok, {summary['n_failed']} failed, "
              f"{summary['seconds_per_frame'].get('mean', float('nan')):.0f} s/frame", flush=True)


def _labels(name: str) -> dict:
    """The finished frames of a variant by source, read from its records (also while a run is going on)."""
    store = LabelStore(OUT / name)
    if not store.records.is_dir():
        return {}
    frames = {}
    for record in store.all_records():
        if record["status"] == "ok":
            labels = record["labels"]
            arrays = {k: None if labels.get(k) is None else np.array(labels[k]) for k in ("forces", "stress", "magmoms")}
            frames[record["source"]] = SimpleNamespace(atoms=record_to_atoms(record, name), energy=labels["energy"],
                                                       **arrays)
    return frames


def report() -> dict:
    """Differences of every finished variant to its reference, written to convergence/report.{json,md}."""
    rows = {}
    for name, ref_name in COMPARISONS:
        key = name if name not in rows else f"{name} vs {ref_name}"
        test, ref = _labels(name), _labels(ref_name)
        both = sorted(set(test) & set(ref))
        if not both:
            continue
        t, r = [test[k] for k in both], [ref[k] for k in both]
        de = np.array([(a.energy - b.energy) / len(a.atoms) for a, b in zip(t, r)])
        df = np.concatenate([(a.forces - b.forces).ravel() for a, b in zip(t, r)])
        ds = np.concatenate([(a.stress - b.stress) / GPa for a, b in zip(t, r)])
        row = {"reference": ref_name, "frames": len(both),
               "seconds_per_frame": float(np.mean([a.atoms.info["seconds"] for a in t])),
               "energy_offset_meV_atom": float(de.mean() * 1e3),
               "relative_energy_error_meV_atom": float((de.max() - de.min()) * 1e3),
               "forces_mae_meV_A": float(np.abs(df).mean() * 1e3), "forces_max_meV_A": float(np.abs(df).max() * 1e3),
               "stress_mae_GPa": float(np.abs(ds).mean()), "stress_max_GPa": float(np.abs(ds).max()),
               "net_force_eV_A": [float(np.abs(a.forces.sum(0)).max()) for a in t],
               "scf_iterations": [int(a.atoms.info["scf_iterations"]) for a in t],
               "reference_scf_iterations": [int(b.atoms.info["scf_iterations"]) for b in r]}
        if all(a.magmoms is not None for a in t + r):
            row["magmoms_max_muB"] = float(max(np.abs(a.magmoms - b.magmoms).max() for a, b in zip(t, r)))
        rows[key] = row
    write_json(OUT / "report.json", rows)
    lines = ["| variant | reference | frames | s/frame | ΔE offset (meV/atom) | ΔE between frames (meV/atom) | "
             "F MAE / max (meV/Å) | S MAE / max (GPa) | magmoms max (μB) | net force per frame (eV/Å) | "
             "SCF iterations (reference) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        mag = f"{r['magmoms_max_muB']:.3f}" if "magmoms_max_muB" in r else "–"
        lines.append(f"| {name} | {r['reference']} | {r['frames']} | {r['seconds_per_frame']:.0f} | "
                     f"{r['energy_offset_meV_atom']:.1f} | {r['relative_energy_error_meV_atom']:.2f} | "
                     f"{r['forces_mae_meV_A']:.1f} / {r['forces_max_meV_A']:.1f} | {r['stress_mae_GPa']:.2f} / "
                     f"{r['stress_max_GPa']:.2f} | {mag} | {', '.join(f'{x:.3f}' for x in r['net_force_eV_A'])} | "
                     f"{', '.join(map(str, r['scf_iterations']))} ({', '.join(map(str, r['reference_scf_iterations']))}) |")
    (OUT / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for fidelity in BASE.values():  # the relabellings of reused snapshots, from their finished frames
        for kind in RELABELLINGS:
            if (OUT / f"{kind}_{fidelity}" / "records").is_dir():
                relabel_rows(fidelity, kind)
    superseded_rows()
    return rows


def fd_check(fidelity: str) -> dict:
    spec = LabelSpec.load(fidelity)
    frame = frames()[0]
    first_tm = next(i for i, s in enumerate(frame.get_chemical_symbols()) if s in ("Fe", "Mn"))
    result = finite_difference_check(frame, spec, atom_indices=(0, first_tm), stress=spec.stress)
    write_json(OUT / f"fd_{fidelity}.json", result)
    print(json.dumps({k: v for k, v in result.items() if "max" in k or k == "seconds"}))
    return result


def input_frame(source: str):
    """The unlabelled input frame a record's ``source`` (``inputs/SET.extxyz:INDEX``) names."""
    path, index = source.rsplit(":", 1)
    return ase.io.read(DATA / path, int(index))


def _reused_stores(fidelity: str) -> list[Path]:
    """Production folders of ``fidelity`` with MD snapshots, current (``raw/``) then superseded by a later spec
    (``superseded/``), paired set first."""
    return [d for top in ("raw", "superseded") for d in sorted((DATA / top).glob(f"*_{fidelity}*"),
                                                                key=lambda d: not d.name.startswith("paired_"))]


def reused_snapshots(fidelity: str, n: int = 3) -> list[dict]:
    """The first ``n`` production MD snapshots of :func:`_reused_stores` that started from the previous
    snapshot's converged state (each record with its folder as ``record["store"]``)."""
    return [r | {"store": store} for store in _reused_stores(fidelity) for r in LabelStore(store).all_records()
            if r["status"] == "ok" and r.get("restarted_from_previous")][:n]


RELABELLINGS = {"fresh": "from scratch with the spec the reused production snapshots had",
                "ramp": f"from scratch with that spec and a Hubbard-U ramp {U_RAMP}"}


def relabel_spec(fidelity: str, kind: str) -> LabelSpec:
    """The spec of a relabelling (see RELABELLINGS): the one its folder ran with, else derived from the spec of
    the reused production snapshots."""
    try:
        return LabelSpec.from_dict(LabelStore(OUT / f"{kind}_{fidelity}").run_info()["spec"])
    except FileNotFoundError:
        spec = LabelSpec.from_dict(LabelStore(reused_snapshots(fidelity, 1)[0]["store"]).run_info()["spec"])
        return spec if kind == "fresh" else LabelSpec.from_dict(spec.to_dict() | {"u_ramp": U_RAMP})


def relabel_check(fidelity: str, kind: str, n: int = 3) -> dict:
    """Reproducibility of the labels on the same frames: the :func:`reused_snapshots` are labelled again (``kind``
    of RELABELLINGS) into ``convergence/KIND_FIDELITY/``; then :func:`relabel_rows`."""
    reused = reused_snapshots(fidelity, n)
    if not reused:
        raise SystemExit(f"no {fidelity} production frame started from a previous snapshot yet")
    label_frames([input_frame(r["source"]) for r in reused], fidelity, relabel_spec(fidelity, kind),
                 OUT / f"{kind}_{fidelity}", LabelOptions(progress=False), sources=[r["source"] for r in reused])
    return relabel_rows(fidelity, kind, n)


def _differences(new: dict, old: dict, tag: str) -> dict:
    """Energy (meV/atom) and forces (MAE, max meV/Å) of record ``new`` minus record ``old``, keys ending in tag."""
    df = 1000 * np.abs(np.array(new["labels"]["forces"]) - np.array(old["labels"]["forces"]))
    return {f"energy_diff_meV_per_atom{tag}": 1000 * (new["labels"]["energy"] - old["labels"]["energy"]) / len(df),
            f"forces_mae_meV_A{tag}": float(df.mean()), f"forces_max_meV_A{tag}": float(df.max())}


def relabel_rows(fidelity: str, kind: str, n: int = 3) -> list[dict]:
    """SCF iterations, seconds and label differences of every finished relabelling against its production
    record (and, for the ramp, against the fresh relabelling), written to ``KIND_FIDELITY.json``."""
    production = {r["source"]: r for r in reused_snapshots(fidelity, n)}
    fresh = {}
    if kind != "fresh" and (OUT / f"fresh_{fidelity}" / "records").is_dir():
        fresh = {r["source"]: r for r in LabelStore(OUT / f"fresh_{fidelity}").all_records() if r["status"] == "ok"}
    rows = []
    for new in LabelStore(OUT / f"{kind}_{fidelity}").all_records():
        old = production[new["source"]]
        row = {"source": old["source"], "iterations_reused": old["scf_iterations"], "seconds_reused": old["seconds"],
               f"iterations_{kind}": new["scf_iterations"], f"seconds_{kind}": new["seconds"],
               f"status_{kind}": new["status"]}
        if new["status"] == "ok":
            row |= _differences(new, old, "")
            if new["source"] in fresh:
                row |= _differences(new, fresh[new["source"]], "_vs_fresh")
        rows.append(row)
    write_json(OUT / f"{kind}_{fidelity}.json", rows)
    print(json.dumps(rows, indent=1))
    return rows


def superseded_rows() -> list[dict]:
    """Production labels against the labels an earlier spec gave the same frames (``superseded/SET_FIDELITY_*``
    beside ``raw/SET_FIDELITY``): energy and force differences, SCF iterations and seconds of both, per frame;
    written to ``superseded.json``."""
    rows = []
    for old_dir in sorted(p for p in (DATA / "superseded").glob("*") if (p / "records").is_dir()):
        current = [d for d in (DATA / "raw").glob("*") if old_dir.name.startswith(f"{d.name}_")]
        if not current:
            continue
        new = {r["source"]: r for r in LabelStore(current[0]).all_records() if r["status"] == "ok"}
        for old in LabelStore(old_dir).all_records():
            if old["status"] == "ok" and old["source"] in new:
                now = new[old["source"]]
                rows.append({"superseded": old_dir.name, "source": old["source"],
                             "iterations": now["scf_iterations"], "iterations_superseded": old["scf_iterations"],
                             "seconds": now["seconds"], "seconds_superseded": old["seconds"],
                             **_differences(now, old, "")})
    write_json(OUT / "superseded.json", rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument("--frames", default="0,1", help="which of the two convergence frames to label (0: strained + "
                    "rattled, 1: MD snapshot), comma-separated")
    ap.add_argument("--fd", action="append", default=[], choices=list(BASE.values()),
                    help="finite-difference label check of this fidelity (repeatable)")
    ap.add_argument("--fresh", action="append", default=[], choices=list(BASE.values()),
                    help="A/B of wave-function reuse along MD: relabel 3 reused production snapshots from scratch")
    ap.add_argument("--ramp", action="append", default=[], choices=list(BASE.values()),
                    help=f"relabel the same 3 snapshots from scratch with a Hubbard-U ramp {U_RAMP}")
    ap.add_argument("--report", action="store_true", help="compare finished variants with their references")
    args = ap.parse_args(argv)
    names = [n for n in args.variants.split(",") if n]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        ap.error(f"unknown variants {sorted(unknown)}")
    run(names, [int(i) for i in args.frames.split(",")])
    for fidelity in args.fd:
        fd_check(fidelity)
    for kind in RELABELLINGS:
        for fidelity in getattr(args, kind):
            relabel_check(fidelity, kind)
    if args.report:
        report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
