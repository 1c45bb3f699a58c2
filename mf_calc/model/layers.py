"""CHGNet's AtomConv, BondConv and AngleUpdate with the paper's fidelity-dependent messages (M).

The layers subclass chgnet's own, so every parameter keeps chgnet's name and the pretrained
weights load unchanged. The only change is in the gated MLP: its first linear layer gets a
per-fidelity bias W_F[:, f] (paper eq. 7), on the core and the gate path alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from chgnet.model.functions import MLP, GatedMLP
from chgnet.model.layers import AngleUpdate, AtomConv, BondConv
from torch import Tensor, nn

from mf_calc.model.fidelity import FidelityGate, FidelityRows


def _first_linear(mlp: MLP) -> tuple[int, nn.Linear]:
    for k, layer in enumerate(mlp.layers):
        if isinstance(layer, nn.Linear):
            return k, layer
        if not (isinstance(layer, nn.Dropout) and layer.p == 0):
            raise NotImplementedError("MF-CHGNet supports gated MLPs without input dropout only")
    raise ValueError("MLP without a linear layer")


def _gate(n_fidelities: int, gmlp: GatedMLP) -> FidelityGate:
    return FidelityGate(n_fidelities, _first_linear(gmlp.mlp_core)[1].out_features)


Parts = list[tuple[Tensor, Tensor | None]]


def gated_mlp(gmlp: GatedMLP, parts: Parts, fgate: FidelityGate | None, fidelity: FidelityRows) -> Tensor:
    """chgnet's GatedMLP applied to the row-wise concatenation of ``parts``, fidelity-dependent
    when ``fgate`` is given.

    parts: (features, row index) pairs in concatenation order; row r of the input is
    cat_k features_k[index_k[r]] (index None: features_k is already per row). The first linear
    layer is applied per part before gathering (W [a; b] = W_a a + W_b b) with the core and gate
    weights fused into one matrix: the same maths as chgnet, on far fewer rows.
    """
    k_core, lin_core = _first_linear(gmlp.mlp_core)
    k_gate, lin_gate = _first_linear(gmlp.mlp_gate)
    hidden = lin_core.out_features
    weight = torch.cat([lin_core.weight, lin_gate.weight], 0)
    bias = torch.cat([lin_core.bias, lin_gate.bias])
    row_bias = None
    if fgate is not None:
        fidelity_bias = torch.cat([fgate.core(fidelity), fgate.gate(fidelity)], -1)
        if fidelity_bias.dim() == 1:  # one fidelity for the batch: part of the bias
            bias = bias + fidelity_bias
        else:
            row_bias = fidelity_bias
    # the bias goes in with the part of fewest rows (before its gather), where it costs least
    rows = [len(features) for features, _ in parts]
    first = rows.index(min(rows))  # not min(..., key=...): torch.compile traces this without a graph break
    out, col = None, 0
    for k, (features, index) in enumerate(parts):
        width = features.shape[1]
        proj = F.linear(features, weight[:, col : col + width], bias if k == first else None)
        col += width
        if index is not None:
            proj = proj.index_select(0, index)
        out = proj if out is None else out.add_(proj)
    if row_bias is not None:
        out = out + row_bias
    core_rest, gate_rest = gmlp.mlp_core.layers[k_core + 1 :], gmlp.mlp_gate.layers[k_gate + 1 :]
    if len(core_rest) and len(gate_rest) and isinstance(core_rest[0], nn.SiLU) and isinstance(gate_rest[0], nn.SiLU):
        out = F.silu(out)  # one pass over the contiguous core|gate rows instead of two over strided halves
        core_rest, gate_rest = core_rest[1:], gate_rest[1:]
    core, gate = out.split(hidden, dim=1)  # its backward is one cat (slicing would zero-fill twice)
    for layer in core_rest:
        core = layer(core)
    for layer in gate_rest:
        gate = layer(gate)
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
    """Atom update; ``fidelity``: the ``FidelityRows`` of the directed bonds."""

    def __init__(self, *, n_fidelities: int = 1, fidelity_messages: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.fidelity_gate = _gate(n_fidelities, self.twoBody_atom) if fidelity_messages else None

    def forward(self, atom_feas, bond_feas, edge_weights, edges, dir2und, fidelity) -> Tensor:
        """edge_weights: chgnet's atom-graph bond weights of each directed bond (the same in every layer)."""
        parts = [(atom_feas, edges[:, 0]), (bond_feas, dir2und), (atom_feas, edges[:, 1])]
        messages = gated_mlp(self.twoBody_atom, parts, self.fidelity_gate, fidelity) * edge_weights
        new = _scatter_sum(messages, edges[:, 0], len(atom_feas))
        return _finish(self, new, atom_feas, self.atom_norm)


def _angle_inputs(atom_feas, bond_feas, angle_feas, bond_graph) -> Parts:
    """Input parts of BondConv and AngleUpdate, in chgnet's order: bond a, bond b, angle, centre atom."""
    return [(bond_feas, bond_graph[:, 1]), (bond_feas, bond_graph[:, 2]), (angle_feas, None), (atom_feas, bond_graph[:, 0])]


class MFBondConv(BondConv):
    """Bond update over the bond graph; ``bond_graph`` rows: centre atom, undirected bond a, b."""

    def __init__(self, *, n_fidelities: int = 1, fidelity_messages: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.fidelity_gate = _gate(n_fidelities, self.twoBody_bond) if fidelity_messages else None

    def forward(self, atom_feas, bond_feas, angle_weights, angle_feas, bond_graph, fidelity) -> Tensor:
        """angle_weights: per angle, the product of chgnet's bond-graph weights of its two bonds (the same in every
        layer)."""
        inputs = _angle_inputs(atom_feas, bond_feas, angle_feas, bond_graph)
        update = gated_mlp(self.twoBody_bond, inputs, self.fidelity_gate, fidelity) * angle_weights
        new = _scatter_sum(update, bond_graph[:, 1], len(bond_feas))
        return _finish(self, new, bond_feas, self.bond_norm)


class MFAngleUpdate(AngleUpdate):
    """Angle update over the bond graph."""

    def __init__(self, *, n_fidelities: int = 1, fidelity_messages: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.fidelity_gate = _gate(n_fidelities, self.twoBody_bond) if fidelity_messages else None

    def forward(self, atom_feas, bond_feas, angle_feas, bond_graph, fidelity) -> Tensor:
        inputs = _angle_inputs(atom_feas, bond_feas, angle_feas, bond_graph)
        new = gated_mlp(self.twoBody_bond, inputs, self.fidelity_gate, fidelity)
        return _finish(self, new, angle_feas, self.angle_norm)
