"""``mf-calc train`` and ``mf-calc evaluate``."""

from __future__ import annotations

import argparse

from mf_calc.train.config import INITS, TrainConfig, read_mapping
from mf_calc.train.model_setup import PARTS

DATA_HELP = """\
Data and units: extended XYZ (*.xyz/*.extxyz, optionally .gz/.bz2/.xz), ASE database (*.db),
vasprun*.xml or OUTCAR*, read with mf_calc.data.read_frames. Labels in ASE units: total energy eV,
forces eV/Å, stress eV/Å³ (ASE sign, Voigt xx yy zz yz xz xy), magmoms μB. Missing labels are
left out of the loss and the metrics, never taken as zero. Reported errors: energy meV/atom,
forces meV/Å, stress GPa, magmoms μB (MAE and RMSE over the frames having the label)."""

TRAIN_EPILOG = DATA_HELP + """

Fidelity order of the model (lowest first, highest last): --fidelities if given, else the order in
which fidelities first appear in the --data arguments; list the low-fidelity data first.
From a trained model folder (--init MODEL_DIR) the model may gain fidelities: --new-fidelity NEW=EXISTING
starts NEW as an exact copy of EXISTING (e.g. --new-fidelity gpaw_afm=pbe_u); list every fidelity to keep in
--fidelities.
Files written to --out: train_config.json, checkpoint.pt (each epoch), history.json, metrics.csv,
best/ (best validation score on the highest fidelity) and final/ (model folders for MFCHGNet.load).
Several processes: torchrun --nproc_per_node N -m mf_calc.cli train ... (--batch-size is per process)."""


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("train", help="train a multi-fidelity model on labelled DFT frames",
                       description="Train MF-CHGNet (defaults: paper Table 1).", epilog=TRAIN_EPILOG, formatter_class=fmt)
    p.add_argument("--data", action="append", required=True, metavar="FILE[:FIDELITY]",
                   help="labelled frames; FIDELITY names their level of theory (else the frames' 'fidelity' info key); "
                        "repeatable")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--config", help="JSON or YAML file of training options (TrainConfig fields); flags override it")
    p.add_argument("--init", metavar="{" + ",".join(INITS) + ",MODEL_DIR}",
                   help="start from random weights, a pretrained CHGNet, or a trained model folder (default scratch)")
    p.add_argument("--modules", help="fidelity-dependent modules, letters of EMRC; '' = plain CHGNet (default EMRC)")
    p.add_argument("--fidelities", help="comma-separated model fidelities, lowest first")
    p.add_argument("--new-fidelity", action="append", metavar="NEW=EXISTING",
                   help="with --init MODEL_DIR: add fidelity NEW to that model as an exact copy of its fidelity "
                        "EXISTING before training (its composition model is refitted); repeatable")
    p.add_argument("--freeze", help=f"comma-separated model parts not trained, of: {', '.join(PARTS)}")
    p.add_argument("--targets", help="trained targets, letters of efsm (default efsm)")
    p.add_argument("--epochs", type=int, help="default 60")
    p.add_argument("--batch-size", type=int, help="structures per step and process (default 4)")
    p.add_argument("--lr", type=float, help="peak learning rate of the cosine schedule (default 0.005)")
    p.add_argument("--seed", type=int, help="seed of initialisation, split and shuffling (default 0)")
    p.add_argument("--val-fraction", type=float, help="validation share of each fidelity's frames (default 0.1)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out (same options)")
    p.set_defaults(func=run_train)

    e = sub.add_parser("evaluate", help="errors of a model on labelled frames", epilog=DATA_HELP, formatter_class=fmt)
    e.add_argument("model", metavar="MODEL", help="model folder (config.json + weights.pt) or shipped model name")
    e.add_argument("--data", required=True, metavar="FILE", help="labelled frames")
    e.add_argument("--fidelity", required=True, help="model fidelity to predict at; the labels are taken as this fidelity")
    e.add_argument("--json", metavar="OUT", help="also write the errors to this JSON file")
    e.add_argument("--batch-size", type=int, default=16, help="structures per forward pass (default 16)")
    e.add_argument("--by", metavar="KEY", help="also per group of frames with the same info[KEY] (e.g. x_li): the "
                   "errors and the mean signed energy error, model - DFT (meV/atom)")
    e.set_defaults(func=run_evaluate)


def _split_list(text: str | None):
    return None if text is None else tuple(x.strip() for x in text.split(",") if x.strip())


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    """{"A": "B"} from ["A=B", ...]; a malformed item raises ValueError naming the flag."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{flag} takes NEW=EXISTING, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def train_config(args) -> TrainConfig:
    """TrainConfig from defaults < --config file < flags given on the command line."""
    values = read_mapping(args.config) if args.config else {}
    flags = {"init": args.init, "modules": args.modules, "fidelities": _split_list(args.fidelities),
             "freeze": _split_list(args.freeze), "targets": args.targets, "epochs": args.epochs,
             "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "val_fraction": args.val_fraction,
             "device": args.device}
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.new_fidelity:
        values["new_fidelities"] = values.get("new_fidelities", {}) | _pairs(args.new_fidelity, "--new-fidelity")
    if args.no_progress:
        values["progress"] = False
    return TrainConfig.from_dict(values)


def run_train(args) -> int:
    from mf_calc.train.dataset import read_dataset
    from mf_calc.train.distributed import World

    cfg = train_config(args)
    data = read_dataset(args.data)
    data.check_fidelities(cfg.fidelities or data.fidelity_names)  # before the processes start
    world = World.from_env(cfg.device)
    try:
        return _train(args, cfg, data, world)
    finally:
        world.close()


def _train(args, cfg, data, world) -> int:
    from mf_calc.train.baselines import train_multi_fidelity
    from mf_calc.train.metrics import format_report

    say = print if world.is_main else (lambda *a, **k: None)
    counts = ", ".join(f"{n}: {len(data.by_fidelity(n))}" for n in data.fidelity_names)
    say(f"data: {len(data)} frames ({counts}); model fidelities (low → high): "
        f"{list(cfg.fidelities or data.fidelity_names)}; {world.size} process(es) on {world.device}")
    trainer = train_multi_fidelity(data, cfg, args.out, world=world, resume=args.resume)
    last = trainer.history[-1] if trainer.history else {}
    say(f"done: {len(trainer.history)} epochs, best epoch {trainer.best_epoch}; models in {args.out}/best and "
        f"{args.out}/final")
    if last.get("val"):
        say("final-epoch validation errors:\n" + format_report(last["val"]))
    return 0


def run_evaluate(args) -> int:
    from mf_calc.atomic import write_json
    from mf_calc.data import read_frames
    from mf_calc.hub import load_model
    from mf_calc.train.dataset import FrameDataset
    from mf_calc.train.metrics import evaluate, format_report, grouped_errors

    model = load_model(args.model)
    name = model.fidelities.name(args.fidelity)
    data = FrameDataset(read_frames(args.data, fidelity=name))
    report = evaluate(model, data.graphs(model), batch_size=args.batch_size)
    print(f"{args.model} at fidelity {name} on {args.data} ({len(data)} frames)")
    print(format_report(report))
    result = {"model": str(args.model), "fidelity": name, "data": str(args.data), "frames": len(data),
              "errors": report.get(name, {})}
    if args.by:
        result["by"] = args.by
        result["groups"] = grouped_errors(model, data.frames, name, args.by, args.batch_size)
        print(format_groups(args.by, result["groups"]))
    if args.json:
        write_json(args.json, result)
    return 0


def format_groups(key: str, groups: dict[str, dict]) -> str:
    lines = [f"{key:<12} {'frames':>6} {'E MAE':>8} {'E bias':>8} {'F MAE':>8}   (meV/atom, meV/atom, meV/Å)"]
    for value, g in groups.items():
        cells = [g["errors"].get("e_mae"), g["energy_bias_meV_atom"], g["errors"].get("f_mae")]
        shown = " ".join("       -" if c is None else f"{c:>8.2f}" for c in cells)
        lines.append(f"{value:<12} {g['frames']:>6} {shown}")
    return "\n".join(lines)
