"""One fidelity of an MF-CHGNet as a plain model: a single-fidelity ``MFCHGNet`` or a ``chgnet`` ``CHGNet``.

Folding a fidelity f in is exact (the network computes the same function):

- E: X_f is added to every row of the atom embedding table (v_i^0 = X_Z + X_f for every Z);
- M: W_F[:, f] is added to the bias of the first linear layer of every gated MLP (core and gate);
- R: the readout MLP of f is kept;
- C: the composition row of f is kept.

The ``chgnet`` form has chgnet's parameter names, so chgnet's ``StructOptimizer``, ``MolecularDynamics``,
``CHGNetCalculator`` and other people's chgnet scripts can use a trained model; ``CHGNet.from_file`` reads
the file written by :func:`save_chgnet`.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mf_calc.atomic import atomic_write
from mf_calc.model import chgnet_map
from mf_calc.model.layers import MFAtomConv, _first_linear

if TYPE_CHECKING:  # the model class imports this module
    from mf_calc.model.mfchgnet import MFCHGNet


@torch.no_grad()
def select_fidelity(model: MFCHGNet, fidelity: str | int | None = None) -> MFCHGNet:
    """A single-fidelity, module-free ``MFCHGNet`` equal to ``model`` at ``fidelity`` (name, index or None =
    highest). ``model`` is not changed."""
    f = model.fidelities.index(fidelity)
    name = model.fidelities.names[f]
    plain = type(model)(replace(model.config, fidelities=(name,), modules="")).to(dtype=model.dtype, device=model.device)
    state = {k: v.clone() for k, v in model.state_dict().items()
             if not k.startswith(("fidelity_embedding.", "readouts.", "composition.")) and ".fidelity_gate." not in k}
    if model.fidelity_embedding is not None:
        state["atom_embedding.embedding.weight"] += model.fidelity_embedding.weight[f]
    for prefix, layers in (("atom_conv_layers", model.atom_conv_layers), ("bond_conv_layers", model.bond_conv_layers),
                           ("angle_layers", model.angle_layers)):
        for i, layer in enumerate(layers):
            if layer.fidelity_gate is None:
                continue
            gmlp = layer.twoBody_atom if isinstance(layer, MFAtomConv) else layer.twoBody_bond
            gmlp_name = "twoBody_atom" if isinstance(layer, MFAtomConv) else "twoBody_bond"
            for path, bias in (("mlp_core", layer.fidelity_gate.core.weight[f]),
                               ("mlp_gate", layer.fidelity_gate.gate.weight[f])):
                k, _ = _first_linear(getattr(gmlp, path))
                state[f"{prefix}.{i}.{gmlp_name}.{path}.layers.{k}.bias"] += bias
    readout = model.readouts[model.switches.copy_of("R", f)]
    state |= {f"readouts.0.{k}": v.clone() for k, v in readout.state_dict().items()}
    state["composition.weight"] = model.composition.weight[model.switches.copy_of("C", f)][None].clone()
    plain.load_state_dict(state, strict=True)
    plain.metadata = copy.deepcopy(model.metadata) | {"exported_fidelity": name}
    return plain.eval()


@torch.no_grad()
def to_chgnet(model: MFCHGNet, fidelity: str | int | None = None):
    """A ``chgnet.model.CHGNet`` (CPU, the dtype of ``model``) equal to ``model`` at ``fidelity``."""
    from chgnet.model import CHGNet

    plain = select_fidelity(model, fidelity).cpu()
    state = {chgnet_map.chgnet_state_key(key): value for key, value in plain.state_dict().items()}
    chgnet = CHGNet(**chgnet_map.chgnet_args(model.config)).to(plain.dtype)
    chgnet.load_state_dict(state, strict=True)
    return chgnet.eval()


def save_chgnet(model: MFCHGNet, fidelity: str | int | None, path: str | Path) -> Path:
    """Write ``model`` at ``fidelity`` as a chgnet model file (float32 weights, as chgnet loads them), readable
    with ``CHGNet.from_file(path)``."""
    chgnet = to_chgnet(model, fidelity).float()
    path = Path(path)
    atomic_write(path, lambda fh: torch.save({"model": chgnet.as_dict()}, fh), binary=True)
    return path
