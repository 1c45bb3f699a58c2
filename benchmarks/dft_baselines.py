"""How close to DFT is what ships today? Errors of the shipped and pretrained models on the gpaw_afm test split.

Models: CHGNet 0.3.0 (fidelity pbe_u), CHGNet r2scan (r2scan) and the shipped ``lmfp-mf`` at both of its
fidelities. Each model's composition model at the evaluated fidelity is first corrected (least squares of
the model's energy errors on element counts, ``fit_composition(residual=True)``) on the gpaw_afm *training*
frames, since GPAW's absolute energies have another reference than the codes the models learned from; forces,
stress and magmom errors do not depend on that refit. Magmoms are compared as
magnitudes (the models predict |m|; the antiferromagnetic labels carry signs).

    python benchmarks/dft_baselines.py     # -> benchmarks/results/dft_baselines.{json,md}
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from mf_calc.atomic import write_json
from mf_calc.data import read_frames
from mf_calc.hub import load_model
from mf_calc.model.composition import element_counts
from mf_calc.train.dataset import FrameDataset
from mf_calc.train.metrics import evaluate

DATA = Path(__file__).parent / "data" / "dft"
MIN_TRAIN = 10  # gpaw_afm training frames needed before energies are refitted and reported
RESULTS = Path(__file__).parent / "results"
MODELS = [("CHGNet 0.3.0", "chgnet-0.3.0", "pbe_u"), ("CHGNet r2scan", "chgnet-r2scan", "r2scan"),
          ("lmfp-mf", "lmfp-mf", "pbe_u"), ("lmfp-mf", "lmfp-mf", "r2scan")]


def errors(name: str, fidelity: str, train: list, test: list) -> dict:
    """MAE/RMSE of model ``name`` at ``fidelity`` on ``test`` after refitting its composition on ``train``
    (without training frames the energies keep the model's own reference and are not reported)."""
    model = load_model(name)
    if train:
        model.fit_composition([f.atoms for f in train], [f.energy for f in train], fidelity, residual=True)
    data = FrameDataset([replace(f, fidelity=fidelity) for f in test])
    return evaluate(model, data.graphs(model))[fidelity] | {"f_scale": force_scale(model, fidelity, test)}


def force_scale(model, fidelity: str, frames: list) -> float:
    """Least-squares factor s of DFT forces ≈ s · model forces over all components: above 1 where the model's
    energy surface is softer than DFT's (B. Deng et al., "Overcoming systematic softening in universal machine
    learning interatomic potentials by fine-tuning", 2024)."""
    predicted = np.concatenate([p["forces"] for p in model.predict([f.atoms for f in frames], fidelity, task="f")])
    labels = np.concatenate([f.forces for f in frames])
    return float((labels * predicted).sum() / (predicted * predicted).sum())


def spans(train: list, test: list) -> bool:
    """Whether every test composition is a linear combination of training compositions (element counts), so
    that refitted per-element reference energies determine the test energies."""
    counts = element_counts([f.atoms.numbers for f in train + test])
    return np.linalg.matrix_rank(counts[:len(train)]) == np.linalg.matrix_rank(counts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=RESULTS / "dft_baselines")
    args = ap.parse_args(argv)
    train_file = DATA / "lmfp_gpaw_afm_train.extxyz.gz"
    train = read_frames(train_file) if train_file.is_file() else []  # none before paired gpaw_afm frames exist
    test = read_frames(DATA / "lmfp_gpaw_afm_test.extxyz.gz")
    if len(train) < MIN_TRAIN or not spans(train, test):  # a reference fit says little about other compositions
        train = []
    rows = {f"{label} @ {fid}": errors(name, fid, train, test) for label, name, fid in MODELS}
    write_json(args.out.with_suffix(".json"), {"n_train": len(train), "n_test": len(test), "rows": rows})
    refit = (f"composition refitted on {len(train)} gpaw_afm training frames" if train else
             f"fewer than {MIN_TRAIN} gpaw_afm training frames, or compositions that do not span the test "
             "compositions, yet: no composition refit and no energy errors")
    lines = [f"Errors on the gpaw_afm test split ({len(test)} frames; {refit}). Energy meV/atom, forces meV/Å, "
             "stress GPa (not labelled: –), |magmoms| μB; F DFT / model: least-squares factor of the DFT forces over "
             "the model's (> 1: a softer energy surface than DFT's). Command: `python benchmarks/dft_baselines.py`.", "",
             "| model @ fidelity | E MAE | F MAE | F RMSE | F DFT / model | S MAE | M MAE |",
             "|---|---|---|---|---|---|---|"]
    for key, r in rows.items():
        energy = f"{r['e_mae']:.1f}" if train else "–"
        stress = f"{r['s_mae']:.2f}" if r["s_n"] else "–"
        lines.append(f"| {key} | {energy} | {r['f_mae']:.0f} | {r['f_rmse']:.0f} | {r['f_scale']:.2f} | {stress} "
                     f"| {r['m_mae']:.3f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
