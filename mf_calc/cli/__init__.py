"""Command line: ``mf-calc <command>``. Each command (or family of commands) lives in its own module of this
package and registers here; ``args`` holds the options and set-up they share. The library below never prints:
its notes and progress go through ``logging``, which :func:`main` shows."""

from __future__ import annotations

import argparse
import logging
import sys

from mf_calc.cli.demo import register as register_demo
from mf_calc.cli.export import register as register_export
from mf_calc.cli.hull import register as register_hull
from mf_calc.cli.label import register as register_label
from mf_calc.cli.learn import register as register_learn
from mf_calc.cli.neb import register as register_neb
from mf_calc.cli.train import register as register_train
from mf_calc.cli.workflows import register as register_workflows
from mf_calc.threads import configure_threads

REGISTRARS = [register_demo, register_train, register_workflows, register_label, register_neb, register_hull,
              register_learn, register_export]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mf-calc",
        description="Multi-fidelity CHGNet force field for Li-ion cathodes (LMFP). Units: eV, Å, eV/Å, GPa, μB.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for register in REGISTRARS:
        register(sub)
    for command in sub.choices.values():
        if not any("--threads" in action.option_strings for action in command._actions):
            command.add_argument("--threads", type=int, default=None,
                                 help="torch CPU threads (default: the cores not busy with other work)")
    return parser


def show_messages() -> None:
    """Print the library's notes and progress messages (``logging`` at INFO) to stderr, as the commands do."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_messages()
    try:
        configure_threads(args.threads)
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"mf-calc {args.command}: error: {exc}", file=sys.stderr)
        return 2

