"""Build the model a training run starts from (scratch, chgnet warm start or a trained model) and freeze parts of it."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mf_calc.constants import WARM_STARTS
from mf_calc.model.io import is_model_folder
from mf_calc.model.mfchgnet import MFCHGNet, MFConfig
from mf_calc.train.config import TrainConfig

#: Top-level parts of MFCHGNet that can be frozen by name.
PARTS = (
    "atom_embedding", "fidelity_embedding", "bond_basis_expansion", "bond_embedding", "bond_weights_ag",
    "bond_weights_bg", "angle_basis_expansion", "angle_embedding", "atom_conv_layers", "bond_conv_layers",
    "angle_layers", "site_wise", "readout_norm", "readouts",
)
#: Frozen when fine-tuning in transfer learning (paper 3.3): embeddings and atom/bond/angle convolutions.
TRANSFER_FROZEN = (
    "atom_embedding", "bond_basis_expansion", "bond_embedding", "bond_weights_ag", "bond_weights_bg",
    "angle_basis_expansion", "angle_embedding", "atom_conv_layers", "bond_conv_layers", "angle_layers",
)


def build_model(config: TrainConfig, fidelities: Sequence[str]) -> MFCHGNet:
    """A fresh model for ``config.init`` with ``fidelities`` (lowest first) and ``config.modules``;
    the random initialisation is seeded with ``config.seed``. A trained model folder as ``init`` is
    loaded as it is (continued training): its modules must match, and so must its fidelities, except those
    ``config.new_fidelities`` adds (each an exact copy of an existing one; ``MFCHGNet.with_fidelities``)."""
    torch.manual_seed(config.seed)
    fidelities = tuple(fidelities)
    if is_model_folder(config.init):
        model = MFCHGNet.load(config.init)
        if model.config.modules != config.modules:
            raise ValueError(f"init model {config.init} has modules {model.config.modules!r}; this run asks for "
                             f"{config.modules!r}")
        if config.new_fidelities or tuple(model.fidelities.names) != fidelities:
            try:
                model = model.with_fidelities(fidelities, config.new_fidelities)
            except ValueError as exc:
                raise ValueError(f"init model {config.init} has fidelities {list(model.fidelities.names)}; this run "
                                 f"asks for {list(fidelities)}: {exc}") from None
        model.metadata = {**model.metadata, "init": str(config.init)}
        return model.train()
    if config.init == "scratch":
        model = MFCHGNet(MFConfig(fidelities=fidelities, modules=config.modules, **config.model))
        model.metadata = {"init": "scratch"}
        return model
    return MFCHGNet.from_chgnet(WARM_STARTS[config.init][0], fidelities=fidelities, modules=config.modules)


def freeze(model: MFCHGNet, names: Sequence[str]) -> None:
    """Stop gradient updates of the named parts (a top-level part or a dotted path like ``readouts.0``)."""
    for name in names:
        if name in PARTS and getattr(model, name, None) is None:
            raise ValueError(f"cannot freeze {name!r}: this model has no such part (modules={model.config.modules!r})")
        try:
            part = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"cannot freeze {name!r}: no such model part; parts: {', '.join(PARTS)}") from None
        part.requires_grad_(False)
