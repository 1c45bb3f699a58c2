"""CHGNet's AtomConv, BondConv and AngleUpdate with the paper's fidelity-dependent messages (M).

The layers subclass chgnet's own, so every parameter keeps chgnet's name and the pretrained
weights load unchanged. The only change is in the gated MLP: its first linear layer gets a
per-fidelity bias W_F[:, f] (paper eq. 7), on the core and the gate path alike.
"""

from __future__ import annotations

import torch
from chgnet.model.functions import MLP, GatedMLP
from chgnet.model.layers import AngleUpdate, AtomConv, BondConv
from torch import Tensor, nn

from mf_calc.model.fidelity import FidelityBias


def _mlp_with_input_bias(mlp: MLP, x: Tensor, bias: Tensor | None) -> Tensor:
    """chgnet MLP forward with ``bias`` added to the output of its first linear layer."""
    if bias is None:
        return mlp(x)
    added = False
    for layer in mlp.layers:
        x = layer(x)
        if not added and isinstance(layer, nn.Linear):
            x = x + bias
            added = True
    return x


class FidelityGate(nn.Module):
    """The per-fidelity biases of one gated MLP (core path and gate path)."""

    def __init__(self, n_fidelities: int, gmlp: GatedMLP):
        super().__init__()
        hidden = _first_linear(gmlp.mlp_core).out_features
        self.core = FidelityBias(n_fidelities, hidden)
        self.gate = FidelityBias(n_fidelities, hidden)


def _first_linear(mlp: MLP) -> nn.Linear:
    return next(layer for layer in mlp.layers if isinstance(layer, nn.Linear))


def gated_mlp(gmlp: GatedMLP, x: Tensor, fgate: FidelityGate | None, fidelity) -> Tensor:
    """GatedMLP forward, fidelity-dependent when ``fgate`` is given (same maths as chgnet's)."""
    core_bias = gate_bias = None
    if fgate is not None:
        core_bias, gate_bias = fgate.core(fidelity), fgate.gate(fidelity)
    core = _mlp_with_input_bias(gmlp.mlp_core, x, core_bias)
    gate = _mlp_with_input_bias(gmlp.mlp_gate, x, gate_bias)
    if gmlp.norm is not None:
        core, gate = gmlp.bn1(core), gmlp.bn2(gate)
    return gmlp.activation(core) * gmlp.sigmoid(gate)


def _scatter_sum(values: Tensor, owners: Tensor, n_owners: int) -> Tensor:
    return values.new_zeros(n_owners, values.shape[1]).index_add_(0, owners, values)


def _finish(layer, new: Tensor, old: Tensor, norm) -> Tensor:
    """mlp_out, residual and normalisation as in chgnet's conv layers."""
    if getattr(layer, "use_mlp_out", False):
        new = layer.mlp_out(new)
    if layer.resnet:
        new = new + old
    return norm(new) if norm is not None else new


class MFAtomConv(AtomConv):
    """Atom update; ``fidelity`` is an int or a per-directed-bond index tensor."""

    def __init__(self, *, n_fidelities: int = 1, fidelity_messages: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.fidelity_gate = FidelityGate(n_fidelities, self.twoBody_atom) if fidelity_messages else None

    def forward(self, atom_feas, bond_feas, bond_weights, edges, dir2und, fidelity) -> Tensor:
        bonds = bond_feas.index_select(0, dir2und)
        messages = torch.cat([atom_feas.index_select(0, edges[:, 0]), bonds, atom_feas.index_select(0, edges[:, 1])], dim=1)
        messages = gated_mlp(self.twoBody_atom, messages, self.fidelity_gate, fidelity)
        messages = messages * bond_weights.index_select(0, dir2und)
        new = _scatter_sum(messages, edges[:, 0], len(atom_feas))
        return _finish(self, new, atom_feas, self.atom_norm)


def _angle_inputs(atom_feas, bond_feas, angle_feas, bond_graph) -> Tensor:
    return torch.cat(
        [
            bond_feas.index_select(0, bond_graph[:, 1]),
            bond_feas.index_select(0, bond_graph[:, 2]),
            angle_feas,
            atom_feas.index_select(0, bond_graph[:, 0]),
        ],
        dim=1,
    )


class MFBondConv(BondConv):
    """Bond update over the bond graph; ``bond_graph`` rows: centre atom, undirected bond a, b."""

    def __init__(self, *, n_fidelities: int = 1, fidelity_messages: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.fidelity_gate = FidelityGate(n_fidelities, self.twoBody_bond) if fidelity_messages else None

    def forward(self, atom_feas, bond_feas, bond_weights, angle_feas, bond_graph, fidelity) -> Tensor:
        update = gated_mlp(self.twoBody_bond, _angle_inputs(atom_feas, bond_feas, angle_feas, bond_graph), self.fidelity_gate, fidelity)
        update = update * bond_weights.index_select(0, bond_graph[:, 1]) * bond_weights.index_select(0, bond_graph[:, 2])
        new = _scatter_sum(update, bond_graph[:, 1], len(bond_feas))
        return _finish(self, new, bond_feas, self.bond_norm)


class MFAngleUpdate(AngleUpdate):
    """Angle update over the bond graph."""

    def __init__(self, *, n_fidelities: int = 1, fidelity_messages: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.fidelity_gate = FidelityGate(n_fidelities, self.twoBody_bond) if fidelity_messages else None

    def forward(self, atom_feas, bond_feas, angle_feas, bond_graph, fidelity) -> Tensor:
        new = gated_mlp(self.twoBody_bond, _angle_inputs(atom_feas, bond_feas, angle_feas, bond_graph), self.fidelity_gate, fidelity)
        return _finish(self, new, angle_feas, self.angle_norm)
