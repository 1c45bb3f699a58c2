"""Command line: ``mf-calc <command>``. Each command lives in its own module and registers here."""

from __future__ import annotations

import argparse
import logging
import sys

from mf_calc.cli_demo import register as register_demo
from mf_calc.cli_export import register as register_export
from mf_calc.threads import configure_threads

REGISTRARS = [register_demo, register_export]


def _optional_registrars():
    """Commands of modules that may be absent in a partial install."""
    found = []
    for module, attr in (("mf_calc.train.cli", "register"), ("mf_calc.workflows.cli", "register"),
                         ("mf_calc.label.cli", "register"), ("mf_calc.workflows.cli_neb", "register"),
                         ("mf_calc.workflows.cli_hull", "register"), ("mf_calc.learn.cli", "register")):
        try:
            found.append(getattr(__import__(module, fromlist=[attr]), attr))
        except ImportError as exc:
            if exc.name is None or not exc.name.startswith("mf_calc"):
                raise
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mf-calc",
        description="Multi-fidelity CHGNet force field for Li-ion cathodes (LMFP). Units: eV, Å, eV/Å, GPa, μB.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for register in REGISTRARS + _optional_registrars():
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


if __name__ == "__main__":
    sys.exit(main())
