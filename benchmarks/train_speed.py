"""Training throughput (structures/s): mf_calc's Trainer vs chgnet's own ``chgnet.trainer.Trainer``.

Same data, model, optimiser and loss for both, in one run:
- data: N rattled LMFP 1×1×2 cells (56 atoms, mixed Li/Mn contents) labelled by CHGNet 0.3.0
  (energy, forces, stress, magmoms; via mf_calc's warm start, which reproduces CHGNet 0.3.0 exactly).
  Teacher labels, not DFT: this measures speed only.
- model: CHGNet 0.3.0 architecture and weights (mf_calc: plain CHGNet, one fidelity, modules "").
- Adam, lr 0.005, Huber (delta 0.1), targets efsm with weights 1:1:0.1:0.1, batch 4, no validation.
Each framework trains ``--epochs`` epochs; epoch 1 includes graph building (chgnet caches its graphs
from then on, mf_calc builds them once before epoch 1), later epochs are the steady state.

    .venv/bin/python benchmarks/train_speed.py [--frames 32] [--epochs 2] [--rounds 1] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "train_speed.md"


def make_frames(n: int):
    from mf_calc.model.mfchgnet import MFCHGNet
    from mf_calc.structures import lmfp
    from mf_calc.train import teacher_frames

    atoms = []
    for k in range(n):
        a = lmfp(x_li=(1.0, 0.75, 0.5, 0.25)[k % 4], y_mn=(0.0, 0.25, 0.5, 0.75)[(k // 4) % 4], supercell=(1, 1, 2), seed=k)
        a.rattle(0.05, seed=k)
        atoms.append(a)
    teacher = MFCHGNet.from_chgnet("0.3.0", fidelities=("pbe_u",), modules="")
    return teacher_frames(teacher, atoms, "pbe_u")


def time_mf_calc(frames, epochs: int, batch: int, device: str) -> dict:
    """Setup (graphs + composition fit) and per-epoch seconds of mf_calc's Trainer."""
    from mf_calc.train import FrameDataset, TrainConfig, Trainer, build_model

    cfg = TrainConfig(init="chgnet-0.3.0", modules="", fidelities=("pbe_u",), epochs=epochs, batch_size=batch,
                      val_fraction=0.0, progress=False, device=device)
    model = build_model(cfg, cfg.fidelities)
    start = time.perf_counter()
    history = Trainer(model, cfg).fit(FrameDataset(frames))
    total = time.perf_counter() - start
    epochs_s = [h["time_s"] for h in history]
    return {"setup": total - sum(epochs_s), "epochs": epochs_s, "loss": history[-1]["train_loss"]}


def time_chgnet(frames, epochs: int, batch: int, device: str) -> dict:
    """Per-epoch seconds of chgnet.trainer.Trainer._train (what Trainer.train runs each epoch)."""
    from ase.stress import voigt_6_to_full_3x3_stress
    from ase.units import GPa
    from chgnet.data.dataset import StructureData, collate_graphs
    from chgnet.model import CHGNet
    from chgnet.trainer import Trainer
    from pymatgen.io.ase import AseAtomsAdaptor
    from torch.utils.data import DataLoader

    with contextlib.redirect_stdout(io.StringIO()):
        model = CHGNet.load(model_name="0.3.0", use_device=device, verbose=False)
        data = StructureData(
            structures=[AseAtomsAdaptor.get_structure(f.atoms) for f in frames],
            energies=[f.energy / len(f.atoms) for f in frames],  # chgnet trains on eV/atom
            forces=[f.forces for f in frames],
            stresses=[voigt_6_to_full_3x3_stress(f.stress) / GPa * -10 for f in frames],  # chgnet expects VASP kBar
            magmoms=[f.magmoms for f in frames],
        )
        loader = DataLoader(data, batch_size=batch, shuffle=True, collate_fn=collate_graphs, num_workers=0)
        trainer = Trainer(model=model, targets="efsm", optimizer="Adam", scheduler="CosLR", criterion="Huber",
                          learning_rate=5e-3, epochs=epochs, use_device=device, print_freq=10**9, torch_seed=0)
        epochs_s = []
        for epoch in range(epochs):
            start = time.perf_counter()
            trainer._train(loader, epoch)
            epochs_s.append(time.perf_counter() - start)
    return {"setup": 0.0, "epochs": epochs_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--rounds", type=int, default=1, help="alternate the two trainers this many times")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frames = make_frames(args.frames)
    runs = {"mf_calc": [], "chgnet": []}
    for r in range(args.rounds):
        for name, fn in (("mf_calc", time_mf_calc), ("chgnet", time_chgnet)):
            res = fn(frames, args.epochs, args.batch_size, args.device)
            runs[name].append(res)
            epochs = ", ".join(f"{t:.2f}" for t in res["epochs"])
            print(f"round {r + 1} {name}: setup {res['setup']:.2f} s, epochs {epochs} s")

    n = args.frames

    def rate(name, which):  # structures/s, best round
        secs = [res["epochs"][0] + res["setup"] if which == "first" else statistics.mean(res["epochs"][1:] or res["epochs"])
                for res in runs[name]]
        return n / min(secs)

    rows = []
    for which, label in (("first", "epoch 1 incl. graph building"), ("steady", "later epochs (steady state)")):
        ours, theirs = rate("mf_calc", which), rate("chgnet", which)
        rows.append(f"| {label} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f}× |")
    env = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, device {args.device}"
           + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda"
              else f" ({platform.processor() or platform.machine()})"))
    text = "\n".join([
        "# Training throughput: mf_calc Trainer vs chgnet Trainer",
        "",
        f"{n} LMFP 1×1×2 frames (56 atoms), labels from CHGNet 0.3.0 (teacher labels, not DFT); CHGNet 0.3.0 "
        f"architecture and weights for both; Adam lr 0.005, Huber, efsm 1:1:0.1:0.1, batch {args.batch_size}, "
        f"{args.epochs} epochs, {args.rounds} round(s), no validation. {env}.",
        "",
        "| phase | mf_calc (structures/s) | chgnet (structures/s) | ratio |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Reproduce: `.venv/bin/python benchmarks/train_speed.py --frames {n} --epochs {args.epochs} --rounds {args.rounds}"
        + (f" --threads {args.threads}" if args.threads else "")
        + (f" --device {args.device}" if args.device != "cpu" else "") + "`",
        "",
    ])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
