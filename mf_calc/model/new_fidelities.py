"""A trained MF-CHGNet with another list of fidelities, to train it on new levels of theory.

Fidelities the model has keep their parameters. A new fidelity starts as an exact copy of an existing one
(its E and M rows, its readout and its composition row, where those switches are on), so before any training
it predicts exactly what its source fidelity predicts. Fidelities left out of the list are dropped.
Example: the teacher-trained ``lmfp-mf`` (``pbe_u``, ``r2scan``) grows ``gpaw_nonmag`` and ``gpaw_afm``, both
starting from ``pbe_u`` (the PBE+U one), before training on real DFT.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from mf_calc.model.fidelity import Fidelities, FidelityBias

if TYPE_CHECKING:  # the model class imports this module
    from mf_calc.model.mfchgnet import MFCHGNet


def source_indices(old: Fidelities, names: Sequence[str], start_from: Mapping[str, str]) -> list[int]:
    """For each fidelity in ``names``, the index of the existing fidelity its parameters come from: itself
    when the model has it, else ``start_from[name]``. Raises ValueError naming what does not fit."""
    clash = sorted(set(start_from) & set(old.names))
    if clash:
        raise ValueError(f"start_from names fidelities the model already has: {clash} (they keep their own parameters)")
    unused = sorted(set(start_from) - set(names))
    if unused:
        raise ValueError(f"start_from names fidelities not in the new list {list(names)}: {unused}")
    bad = {new: src for new, src in start_from.items() if src not in old.names}
    if bad:
        raise ValueError(f"start_from sources must be fidelities of the model {list(old.names)}; got {bad}")
    missing = [n for n in names if n not in old.names and n not in start_from]
    if missing:
        raise ValueError(f"new fidelities {missing} need a start: start_from={{NEW: EXISTING}} with EXISTING one of "
                         f"{list(old.names)}")
    Fidelities(names)  # non-empty, no duplicates
    return [old.index(start_from.get(n, n)) for n in names]


@torch.no_grad()
def with_fidelities(model: MFCHGNet, names: Sequence[str], start_from: Mapping[str, str] | None = None) -> MFCHGNet:
    """A copy of ``model`` whose fidelities are ``names`` (lowest first); ``start_from`` maps each new name to
    the existing fidelity it starts as. ``model`` is not changed; the copy's metadata records the mapping
    (``fidelities_from``)."""
    names = tuple(str(n) for n in names)
    source = source_indices(model.fidelities, names, dict(start_from or {}))
    index = torch.tensor(source, device=model.device)
    rows = {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, FidelityBias)}
    if model.switches.on("C"):
        rows.add("composition.weight")
    per_readout = model.switches.on("R")
    state = {}
    for key, value in model.state_dict().items():
        if per_readout and key.startswith("readouts."):
            continue
        state[key] = value.index_select(0, index) if key in rows else value.clone()
    if per_readout:
        for k, s in enumerate(source):
            state |= {f"readouts.{k}.{key}": v.clone() for key, v in model.readouts[s].state_dict().items()}
    grown = type(model)(replace(model.config, fidelities=names)).to(dtype=model.dtype, device=model.device)
    grown.load_state_dict(state, strict=True)
    grown.metadata = copy.deepcopy(model.metadata) | {
        "fidelities_from": {n: model.fidelities.names[s] for n, s in zip(names, source)}}
    return grown.train(model.training)
