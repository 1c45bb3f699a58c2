"""ASE calculator for MF-CHGNet with a selectable target fidelity.

Results in ASE units: energy and free_energy eV, forces eV/Å, stress eV/Å³ (Voigt xx yy zz yz xz xy,
ASE sign: positive = tensile), magmoms μB.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from mf_calc.hub import load_model
from mf_calc.model.contacts import contact_check_for
from mf_calc.model.device_graph import DeviceGraphBuilder
from mf_calc.model.graph import Batch
from mf_calc.model.mfchgnet import MFCHGNet


class MFCalculator(Calculator):
    """MFCalculator(model=None, fidelity=None).

    model: an ``MFCHGNet``, a model folder, or a shipped model name (see ``mf_calc.available_models``);
    None loads the default model; a model given is moved to ``device`` and otherwise left as it is (its
    train/eval mode and ``requires_grad`` flags too). fidelity: name or index; None means the highest (last) fidelity.
    An unknown fidelity raises ValueError listing the known names. Changing ``calc.fidelity``
    clears cached results.

    Speed: the neighbour search is reused between steps with a Verlet ``skin`` (Å; 0 disables it)
    and gives the same graph as a fresh search; the graph is built with torch on the model's device
    (``mf_calc.model.device_graph``); forces and stress come from one backward pass
    without second-order graphs. Stress is computed only when asked for; once a caller has asked
    for it (a cell filter, NPT), it is computed in the same pass as the forces, since ASE asks
    for the two separately and would otherwise run the model twice.

    A contact closer than any of its element pair in the model's training data (model metadata, see
    ``mf_calc.model.contacts``) raises an ``ExtrapolationWarning`` once per pair and model.

    compile: run the model through ``torch.compile`` (inductor, dynamic shapes: one compilation serves every
    graph size): the first call compiles (a minute or two on a CPU), later calls skip most of torch's per-op
    overhead. For long runs; a short one is faster without.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "magmoms"]

    def __init__(self, model: MFCHGNet | str | None = None, fidelity: str | int | None = None, device: str = "cpu",
                 skin: float = 1.0, compile: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, MFCHGNet):
            model = load_model(model)
        self.model = model.to(device)  # the caller's model, moved to ``device``; nothing else of it changes
        self.run_model = compiled(self.model) if compile else self.model
        self._fidelity = self.model.fidelities.index(fidelity)
        self.contacts = contact_check_for(self.model)
        self.neighbors = DeviceGraphBuilder(self.model.config.cutoff, self.model.config.bond_cutoff, skin,
                                            contacts=self.contacts)
        self._stress_wanted = False
        self.n_calls = 0  # model evaluations so far (workflows report calls per MD step)

    @property
    def fidelity(self) -> str:
        """Name of the target fidelity."""
        return self.model.fidelities.names[self._fidelity]

    @property
    def magmom_scale(self) -> str | None:
        """Which labels the model's magmoms follow (``pbe_u`` or ``r2scan``; model metadata), for the
        oxidation-state thresholds of ``mf_calc.workflows.oxidation``; None when the model does not say."""
        return self.model.metadata.get("magmom_scale")

    @fidelity.setter
    def fidelity(self, value: str | int | None) -> None:
        index = self.model.fidelities.index(value)
        if index != self._fidelity:
            self._fidelity = index
            self.reset()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if "stress" in properties and not self.atoms.pbc.all():
            raise PropertyNotImplementedError("stress needs a fully periodic cell")
        self._stress_wanted |= "stress" in properties
        task = "em"
        if "forces" in properties:
            task += "f"
        if "stress" in properties or (self._stress_wanted and "forces" in properties and self.atoms.pbc.all()):
            task += "s"
        batch = self._batch(self.atoms)
        with _parameters_frozen(self.model):
            out = self.run_model(batch, task=task, create_graph=False)
        self.n_calls += 1
        energy = float(out["energy"].detach()[0])
        self.results = {"energy": energy, "free_energy": energy, "magmoms": _np(out["magmoms"])}
        if "forces" in out:
            self.results["forces"] = _np(out["forces"])
        if "stress" in out:
            self.results["stress"] = full_3x3_to_voigt_6_stress(_np(out["stress"][0]))

    def _batch(self, a) -> Batch:
        """The model's input for ``a``, on the model's device."""
        device = self.model.device
        return self.neighbors.batch(torch.from_numpy(a.numbers), torch.as_tensor(a.positions, device=device),
                                    torch.as_tensor(a.cell.array, device=device)[None], [len(a)], a.pbc,
                                    self._fidelity, dtype=self.model.dtype)


def model_of(calc) -> MFCHGNet | None:
    """The MF-CHGNet behind a calculator (an ``MFCalculator``), or None for any other calculator."""
    model = getattr(calc, "model", None)
    return model if isinstance(model, MFCHGNet) else None


def compiled(model: MFCHGNet):
    """``model`` run through ``torch.compile`` for inference: dynamic shapes, so the edge and angle counts that
    change from step to step do not compile it again (the model itself is left as it is)."""
    return torch.compile(model, dynamic=True)


@contextmanager
def _parameters_frozen(model: torch.nn.Module):
    """No autograd graph towards the weights during a prediction (forces and stress need only the gradient
    with respect to positions and strain); each parameter's ``requires_grad`` is restored afterwards, so a
    model used in a calculator can still be trained."""
    wanted = [p for p in model.parameters() if p.requires_grad]
    for p in wanted:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in wanted:
            p.requires_grad_(True)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(float)
