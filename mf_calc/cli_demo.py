"""``mf-calc demo``: the main job — a short tour of the default model on a delithiated LMFP supercell."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="build Li0.5Mn0.5Fe0.5PO4 (1x1x2), compare fidelities, relax, run a short 300 K NPT MD (a few minutes)",
    )
    p.add_argument("--model", default=None, help="model name or folder (default: the shipped default)")
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    p.add_argument("--x-li", type=float, default=0.5, help="Li fraction kept (default 0.5)")
    p.add_argument("--y-mn", type=float, default=0.5, help="Mn fraction on transition-metal sites (default 0.5)")
    p.add_argument("--md-steps", type=int, default=None, help="NPT MD steps of 1 fs (default 1000; 100 with --quick)")
    p.add_argument("--quick", action="store_true", help="fewer relaxation and MD steps (under a minute)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mf_calc.workflows.demo import run_demo

    run_demo(model=args.model, out=args.out, quick=args.quick, x_li=args.x_li, y_mn=args.y_mn, md_steps=args.md_steps)
    return 0
