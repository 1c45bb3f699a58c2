"""``mf-calc learn``: one active-learning round per call, resumable."""

from __future__ import annotations

import argparse
import json

from mf_calc.cli.label import add_dft_run_options, deadline

EPILOG = """\
SETTINGS (JSON, needed on the first call; kept in DIR/learn.json and checked on later calls):
  {"model": starting model (name or folder), "data": ["FILE[:FIDELITY]", ...] labelled training files,
   "fidelity": "gpaw_afm", "spec": "gpaw_afm" (label spec: shipped name or file), "committee": 3,
   "select": "committee" | "random" (the control arm at the same DFT budget),
   "train": {TrainConfig fields, e.g. "epochs": 10, "lr": 3e-4, "modules": ""},
   "explore": {"cells": [[1,2,1],[1,1,2],[2,1,1]], "x_li": [...], "y_mn": [...], "temperatures_K": [...],
               "trajectories": 6, "md_steps": 1000, "interval": 20, "relaxations": 3,
               "hops": 0 (NEB bands of [010] Li-vacancy hops)},
   "selection": {"lower": 0.05, "upper": 0.6 (trust window of the committee force deviation, eV/Å),
                 "cap": 10 (frames labelled per round), "min_distance": 0.05 (fingerprint),
                 "per_source": 2 (most picks from one trajectory),
                 "endpoints": 0 (also label that many relaxed end points), "endpoints_by": "spread" (largest
                 committee energy spread first) | "hull" (lowest energy above the end members' tie line by
                 member 0 first: the orderings its hull would hold)},
   "evaluate": ["FILE", ...] labelled files never trained on, "seed": 0,
   "low_fidelity": {"fidelity": "gpaw_nonmag", "spec": "gpaw_nonmag", "cap": 24} (optional, an MF arm: also
                   label that many candidates with the cheap spec, after the scarce ones; both train the next round),
   "candidates_from": "RUN" (optional: a sibling run folder beside DIR, e.g. the committee arm, whose
                   candidates each round selects from instead of exploring),
   "picks_from": "RUN" (optional: also its picks and labels at "fidelity"; this run labels them into RUN's
                   folder too and adds only its low_fidelity labels)}

Each step writes to DIR/round_RR/ (committee/, explore/, candidates.extxyz, selection.json, selected.extxyz,
labels/, with low_fidelity also selected_low.extxyz and labels_low/, evaluation.json, report.md); a rerun
continues the unfinished round where it stopped; a run that shares a sibling's round waits (exits 0 with a
message) until the sibling has written what it needs. DFT labelling stops starting frames at --until (a later call
labels the rest)."""


def register(sub) -> None:
    p = sub.add_parser("learn", help="one active-learning round: train a committee, explore, select, label, evaluate",
                       description="Run or continue one round of active learning in DIR.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", metavar="DIR", help="run folder (created on the first call)")
    p.add_argument("--settings", help="settings JSON file (first call; later calls: must match DIR/learn.json)")
    p.add_argument("--round", type=int, default=None, help="round to run (default: the first without a report)")
    add_dft_run_options(p)
    p.set_defaults(func=cmd_learn)


def cmd_learn(args) -> int:
    from pathlib import Path

    from mf_calc.learn.loop import LearnSettings, Waiting, next_round, open_run, run_round

    given = LearnSettings.from_dict(json.loads(Path(args.settings).read_text())) if args.settings else None
    settings = open_run(args.directory, given)
    index = next_round(args.directory) if args.round is None else args.round
    try:
        result = run_round(args.directory, settings, index, deadline=deadline(args.until), give_up=args.give_up)
    except Waiting as err:
        print(f"round {index}: waiting for a sibling run: {err}")
        return 0
    if result is None:
        print(f"round {index}: DFT labels still pending; run the same command again to continue")
        return 0
    print(f"round {index} done: {result['labelled']} frames labelled ({result['dft_core_hours']:.2f} core-hours); "
          f"report {Path(args.directory) / f'round_{index:02d}' / 'report.md'}")
    return 0
