"""``mf-calc export``: one fidelity of a model as a plain single-fidelity model and as a chgnet model file."""

from __future__ import annotations

from pathlib import Path

CHGNET_SUFFIXES = (".pt", ".pth", ".tar")


def register(sub) -> None:
    p = sub.add_parser("export", help="export one fidelity as a plain model (mf_calc folder and chgnet file)",
                       description="Fold one fidelity of a multi-fidelity model into a plain model that computes "
                                   "the same energies, forces, stress and magmoms.")
    p.add_argument("model", nargs="?", default=None, help="model name or folder (default: the shipped default)")
    p.add_argument("--fidelity", default=None, help="fidelity name or index (default: the highest)")
    p.add_argument("--out", required=True,
                   help="a folder (gets model/ -- an mf_calc model folder for MFCHGNet.load -- and chgnet.pt, for "
                        "chgnet's CHGNet.from_file), or a file ending in .pt/.pth/.tar (the chgnet file only)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mf_calc.hub import load_model
    from mf_calc.model.export import save_chgnet

    model = load_model(args.model)
    name = model.fidelities.name(args.fidelity)  # a name, or an index given as text
    out = Path(args.out)
    if out.suffix in CHGNET_SUFFIXES:
        written = [save_chgnet(model, name, out)]
    else:
        out.mkdir(parents=True, exist_ok=True)
        model.select_fidelity(name).save(out / "model")
        written = [out / "model", save_chgnet(model, name, out / "chgnet.pt")]
    print(f"fidelity {name!r} of {model.metadata.get('name', args.model or 'the default model')} -> "
          + ", ".join(map(str, written)))
    return 0
