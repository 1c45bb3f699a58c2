"""Models shipped with mf_calc, loaded by name (no downloads).

- ``lmfp-mf`` (the default): MF-CHGNet (modules EMRC) for LMFP cathodes with fidelities ``pbe_u`` and
  ``r2scan``, warm-started from CHGNet 0.3.0 and trained on the teacher-labelled LMFP benchmark
  (``benchmarks/data``); recipe and test errors in ``mf_calc/pretrained/lmfp-mf/MODEL_CARD.md``.
- ``lmfp-dft``: CHGNet 0.3.0 fine-tuned on real DFT (GPAW PBE+U, fidelity ``gpaw_afm``, magmom scale ``gpaw_afm``);
  not the default; how it was chosen, recipe and test errors in ``mf_calc/pretrained/lmfp-dft/MODEL_CARD.md``.
- ``lmfp-dft-al``: the same with a larger energy loss weight and the ``gpaw_afm`` labels that active learning
  (``mf-calc learn``) chose; not the default; data, recipe and DFT workflow-benchmark scores in its model card.
- ``lmfp-dft-al-mf``: the multi-fidelity counterpart of ``lmfp-dft-al`` (modules EMRC, fidelities ``gpaw_nonmag``
  → ``gpaw_afm``, the non-spin-polarised DFT frames as the low fidelity); not the default; its card says how it
  compares with ``lmfp-dft-al``.
- ``chgnet-0.3.0``: MF-CHGNet warm start of pretrained CHGNet 0.3.0 (MPtrj, PBE/PBE+U); one
  fidelity ``pbe_u``; reproduces CHGNet 0.3.0 exactly. Not trained on any LMFP data.
- ``chgnet-r2scan``: the same for CHGNet's r2SCAN transfer model; one fidelity ``r2scan``.

Folders under ``mf_calc/pretrained/`` (config.json + weights.pt) are listed as well.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mf_calc.constants import WARM_STARTS
from mf_calc.model.io import is_model_folder
from mf_calc.model.mfchgnet import MFCHGNet

log = logging.getLogger(__name__)

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
DEFAULT_MODEL = "lmfp-mf"


def available_models() -> list[str]:
    """Names accepted by ``load_model``."""
    shipped = sorted(p.name for p in PRETRAINED_DIR.glob("*") if is_model_folder(p))
    return shipped + sorted(WARM_STARTS)


def load_model(name_or_path: str | Path | None = None) -> MFCHGNet:
    """Load a shipped model by name, or a model folder by path (a training run folder gives its ``best``
    model); None gives the default model."""
    name = DEFAULT_MODEL if name_or_path is None else name_or_path
    shipped = isinstance(name, str) and is_model_folder(PRETRAINED_DIR / name)
    if name == DEFAULT_MODEL and not shipped:
        raise FileNotFoundError(f"the default model {name!r} is missing from {PRETRAINED_DIR} (a broken install?); "
                                f"reinstall mf_calc, or load one of {sorted(WARM_STARTS)} by name")
    if shipped:
        return MFCHGNet.load(PRETRAINED_DIR / name)
    if isinstance(name, str) and name in WARM_STARTS:
        chgnet_name, fidelities = WARM_STARTS[name]
        model = MFCHGNet.from_chgnet(chgnet_name, fidelities=fidelities, modules="EMRC")
        model.metadata["name"] = name
        return model.eval()
    if Path(name).exists():
        path = Path(name)
        if not is_model_folder(path) and is_model_folder(path / "best"):
            log.warning("note: %s is a training run folder; using its best model %s (the last epoch's is %s)",
                        path, path / "best", path / "final")
            path = path / "best"
        return MFCHGNet.load(path)
    raise ValueError(f"unknown model {str(name)!r}: not a model folder, nor one of {available_models()}")
