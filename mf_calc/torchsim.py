"""MF-CHGNet as a TorchSim model: many systems (replicas, orderings, temperatures) in one batched call.

Optional: needs ``torch-sim-atomistic`` (``make torchsim``). TorchSim (the engine NequIP, MACE and
MatterSim plug into) keeps a batch of systems in one ``SimState`` and calls ``model(state)`` once per
step; this module is that model for MF-CHGNet:

    import torch_sim as ts
    from mf_calc.torchsim import MFTorchSimModel

    model = MFTorchSimModel("lmfp-mf", fidelity="pbe_u")            # or one fidelity per system
    state = ts.io.atoms_to_state([atoms_1, atoms_2, ...], device=model.device, dtype=torch.float64)
    out = model(state)   # energy (n_systems,) eV, forces (n_atoms, 3) eV/Å, stress (n_systems, 3, 3) eV/Å³,
                         # magmoms (n_atoms,) μB

Stress follows ASE's sign (positive = tensile, ``stress = (1/V) ∂E/∂ε``), as TorchSim's integrators and
``ts.io.state_to_atoms`` expect. One batched graph of all systems is built on the model's device with the
same Verlet skin reuse as ``MFCalculator`` (``mf_calc.model.device_graph``: exactly the graph of a fresh
search), then one batched forward and backward pass gives every system's energy, forces, stress and magmoms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

try:
    from torch_sim.models.interface import ModelInterface
    from torch_sim.state import SimState
except ImportError as exc:  # pragma: no cover - exercised only without the optional extra
    raise ImportError("mf_calc.torchsim needs TorchSim: install it with `make torchsim` "
                      "(pip install torch-sim-atomistic)") from exc

from mf_calc.calculator import _parameters_frozen, compiled, model_of
from mf_calc.hub import load_model
from mf_calc.model.contacts import contact_check_for
from mf_calc.model.device_graph import DeviceGraphBuilder
from mf_calc.model.mfchgnet import MFCHGNet


class MFTorchSimModel(ModelInterface):
    """TorchSim ``ModelInterface`` for an MF-CHGNet at a chosen fidelity.

    model: an ``MFCHGNet``, a model folder or a shipped model name (None: the default model).
    fidelity: a name or index for every system, or a sequence with one per system of the state (in
    ``system_idx`` order); None means the highest fidelity. device: where the model runs ('cpu',
    'cuda'). skin: Verlet skin of the per-system neighbour reuse (Å; 0 disables it). compile: run the model
    through ``torch.compile`` (see ``MFCalculator``).
    """

    def __init__(self, model: MFCHGNet | str | None = None, fidelity: str | int | Sequence | None = None,
                 device: str | torch.device = "cpu", compute_stress: bool = True, compute_forces: bool = True,
                 compute_magmoms: bool = True, skin: float = 1.0, compile: bool = False):
        super().__init__()
        if not isinstance(model, MFCHGNet):
            model = load_model(model)
        self.model = model.to(device)  # moved to ``device``; its train/eval mode is left as it is
        self.run_model = compiled(self.model) if compile else self.model
        self._device = torch.device(device)
        self._dtype = next(model.parameters()).dtype
        self._compute_stress, self._compute_forces = compute_stress, compute_forces
        self.compute_magmoms = compute_magmoms
        self._memory_scales_with = "n_atoms_x_density"
        self.graphs = DeviceGraphBuilder(model.config.cutoff, model.config.bond_cutoff, skin,
                                         contacts=contact_check_for(model))
        self.fidelity = fidelity

    @classmethod
    def from_calculator(cls, calc, **kwargs) -> MFTorchSimModel:
        """The TorchSim model of an ``MFCalculator``: its model, fidelity, device and ``compile`` choice (ValueError
        for any other calculator: only an MF-CHGNet runs in TorchSim)."""
        model = model_of(calc)
        if model is None:
            raise ValueError(f"TorchSim needs an MFCalculator (its model and fidelity run there), got "
                             f"{type(calc).__name__}")
        kwargs.setdefault("compile", calc.run_model is not model)
        return cls(model, fidelity=calc.fidelity, device=model.device, **kwargs)

    @property
    def fidelity(self):
        """Fidelity name(s): one string for every system, or a list with one per system."""
        names = self.model.fidelities.names
        return names[self._fidelities] if isinstance(self._fidelities, int) else [names[i] for i in self._fidelities]

    @fidelity.setter
    def fidelity(self, value) -> None:
        index = self.model.fidelities.index
        if isinstance(value, Sequence) and not isinstance(value, str):
            self._fidelities = [index(v) for v in value]
        else:
            self._fidelities = index(value)

    def _system_fidelities(self, n_systems: int) -> list[int]:
        if isinstance(self._fidelities, int):
            return [self._fidelities] * n_systems
        if len(self._fidelities) != n_systems:
            raise ValueError(f"{len(self._fidelities)} fidelities given for a state of {n_systems} systems: "
                             "give one per system, or a single fidelity for all")
        return list(self._fidelities)

    def forward(self, state: SimState | dict, **kwargs) -> dict[str, torch.Tensor]:
        """Energy (n_systems,) eV, forces (n_atoms, 3) eV/Å, stress (n_systems, 3, 3) eV/Å³ (ASE sign) and
        magmoms (n_atoms,) μB of every system in ``state``, in the state's dtype and on its device."""
        if isinstance(state, dict):
            state = SimState(**state, masses=torch.ones_like(state["positions"]))
        system_idx = state.system_idx
        if len(system_idx) > 1 and bool((system_idx[1:] < system_idx[:-1]).any()):
            raise ValueError("the state's atoms are not grouped by system (system_idx must be non-decreasing)")
        n_atoms = torch.bincount(system_idx).cpu()
        fidelities = self._system_fidelities(len(n_atoms))
        pbc = state.pbc.detach().cpu().numpy() if torch.is_tensor(state.pbc) else state.pbc
        batch = self.graphs.batch(state.atomic_numbers, state.positions.to(self._device),
                                  state.row_vector_cell.to(self._device), n_atoms, pbc, fidelities,
                                  dtype=self.model.dtype)
        task = "e" + "f" * self._compute_forces + "s" * self._compute_stress + "m" * self.compute_magmoms
        with _parameters_frozen(self.model):
            out = self.run_model(batch, task=task, create_graph=False)
        dtype, device = state.positions.dtype, state.positions.device
        result = {"energy": out["energy"].detach().to(device, dtype)}
        for key in ("forces", "stress", "magmoms"):
            if key in out:
                result[key] = out[key].detach().to(device, dtype)
        return result
