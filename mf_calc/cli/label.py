"""``mf-calc label``: DFT labels for a file of frames at one named fidelity, resumable."""

from __future__ import annotations

import argparse
import json

EPILOG = """\
SPEC is a JSON file or the name of a shipped spec (gpaw_afm, gpaw_nonmag, vasp_afm):
  {"calculator": "gpaw" or "module:Class" (any ASE calculator, e.g. "ase.calculators.vasp:Vasp"),
   "settings": {keyword arguments of the calculator},
   "magnetic_start": "afm-olivine" | "ferro" | "none" | "input",
   "stress": true | false (false: stress not labelled),
   "retry": {settings for one more try after a failure} or null}

Output in --out: records/NNNNN.json (one per input frame, written as soon as it is done: status ok or
failed with the reason, wall seconds, SCF iterations), labelled.extxyz (the ok frames, for
`mf-calc train --data OUT/labelled.extxyz`), summary.json, logs/. Running the same command again
skips finished frames (--retry-failed tries the failed ones again) and refuses a folder made with
another spec or fidelity. Units: energy eV (force-consistent free energy; the sigma->0 extrapolated
energy is info key energy_extrapolated), forces eV/Å, stress eV/Å³ (ASE sign), magmoms μB
(spin-polarised specs only).

GPAW is optional: install it with `make dft`. One worker uses one core; give a background run one
core with `taskset -c 1 mf-calc label ...`."""


def register(sub) -> None:
    p = sub.add_parser("label", help="label frames with DFT (any ASE calculator; GPAW built in), resumable",
                       description="Label every frame of FRAMES at one fidelity with an ASE calculator.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("frames", help="structures to label (extxyz, traj, any format ase.io.read reads; all frames)")
    p.add_argument("--fidelity", required=True, help="name of the fidelity these labels make (e.g. gpaw_afm)")
    p.add_argument("--spec", required=True, help="spec JSON file or shipped spec name")
    p.add_argument("--out", required=True, help="output folder (created; reused on a rerun)")
    p.add_argument("--workers", type=int, default=1, help="worker processes, one core each (default 1)")
    p.add_argument("--group-key", default=None,
                   help="info key of frames that share a calculator when consecutive, e.g. a trajectory id: each "
                        "SCF then starts from the previous frame's converged state (default: none)")
    p.add_argument("--retry-failed", action="store_true", help="try frames recorded as failed again")
    p.add_argument("--check", action="store_true",
                   help="instead of labelling: compare the forces of atom 0 of the first frame (and the stress, "
                        "when the spec labels it) with finite differences of the free energy (7 calculations, 12 "
                        "more for stress) and print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dft_run_options(p)
    p.set_defaults(func=cmd_label)


def deadline(until: str | None) -> float | None:
    """The ``time.time()`` of ``--until HH:MM`` (None without)."""
    import time

    from mf_calc.label.run import hours_until

    return time.time() + 3600 * hours_until(until) if until else None


def add_dft_run_options(p) -> None:
    """The DFT-run options of ``label`` and ``learn``: --until and --give-up."""
    p.add_argument("--until", metavar="HH:MM", help="start no DFT frame after this local time (the nearest such "
                                                    "time; up to 12 hours ago means now); a rerun labels the rest")
    p.add_argument("--give-up", type=int, default=None, metavar="N",
                   help="GPAW: give up an SCF (first try or retry) whose density error has not halved for N "
                        "iterations, so the spec's retry starts, or the frame is recorded as failed, at once instead "
                        "of after maxiter (default off; `python benchmarks/scf_stalls.py LOGS` shows the stretches "
                        "in converged SCFs)")


def cmd_label(args) -> int:
    from mf_calc.atomic import json_safe
    from mf_calc.label.spec import LabelSpec
    from mf_calc.structures import read_structures

    spec = LabelSpec.load(args.spec)
    frames = read_structures(args.frames)
    if args.check:
        from mf_calc.label.checks import finite_difference_check

        result = finite_difference_check(frames[0], spec, stress=spec.stress)
        print(json.dumps(json_safe(result), indent=1))
        return 0
    from mf_calc.label.run import LabelOptions, label_frames

    sources = [f"{args.frames}:{i}" for i in range(len(frames))]
    options = LabelOptions(args.workers, args.group_key, args.retry_failed, progress=not args.quiet,
                           deadline=deadline(args.until), give_up=args.give_up)
    summary = label_frames(frames, args.fidelity, spec, args.out, options, sources=sources)
    print(f"{summary['fidelity']}: {summary['n_ok']} labelled, {summary['n_failed']} failed, "
          f"{summary['n_pending']} pending of {summary['n_input']} -> {args.out}/labelled.extxyz")
    for failure in summary["failures"]:
        print(f"  failed {failure['source']}: {' | '.join(failure['errors'])}")
    return 0
