"""Shared command-line options for the md_examples scripts (not part of the mf_calc package)."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def parser(description: str, out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small cells / few steps: 1-2 min on 2 CPU cores")
    p.add_argument("--model", default=None, help="model name or folder (default: the shipped default)")
    p.add_argument("--fidelity", default=None, help="fidelity name (default: the highest)")
    p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: the cores not busy with other work; see mf_calc.threads)")
    return p


def setup(args):
    """Apply --threads, load the calculator (fails fast on a bad model/fidelity), make the output folder."""
    from mf_calc.cli import show_messages
    from mf_calc.threads import configure_threads
    from mf_calc.workflows.io import resolve_calculator

    show_messages()
    configure_threads(args.threads)

    calc = resolve_calculator(args.model, args.fidelity)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return calc, out
