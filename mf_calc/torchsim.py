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

import numpy as np
import torch

try:
    from torch_sim.models.interface import ModelInterface
    from torch_sim.state import SimState
except ImportError as exc:  # pragma: no cover - exercised only without the optional extra
    raise ImportError("mf_calc.torchsim needs TorchSim: install it with `make torchsim` "
                      "(pip install torch-sim-atomistic)") from exc

from mf_calc.calculator import _parameters_frozen, model_of
from mf_calc.hub import load_model
from mf_calc.model.contacts import contact_check_for
from mf_calc.model.device_graph import DeviceGraphBuilder
from mf_calc.model.mfchgnet import MFCHGNet


class MFTorchSimModel(ModelInterface):
    """TorchSim ``ModelInterface`` for an MF-CHGNet at a chosen fidelity.

    model: an ``MFCHGNet``, a model folder or a shipped model name (None: the default model).
    fidelity: a name or index for every system, or a sequence with one per system of the state (in
    ``system_idx`` order); None means the highest fidelity. device: where the model runs ('cpu',
    'cuda'). skin: Verlet skin of the per-system neighbour reuse (Å; 0 disables it).
    """

    def __init__(self, model: MFCHGNet | str | None = None, fidelity: str | int | Sequence | None = None,
                 device: str | torch.device = "cpu", compute_stress: bool = True, compute_forces: bool = True,
                 compute_magmoms: bool = True, skin: float = 1.0):
        super().__init__()
        if not isinstance(model, MFCHGNet):
            model = load_model(model)
        self.model = model.to(device)  # moved to ``device``; its train/eval mode is left as it is
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
        """The TorchSim model of an ``MFCalculator``: its model, fidelity and device (ValueError for any other
        calculator: only an MF-CHGNet runs in TorchSim)."""
        model = model_of(calc)
        if model is None:
            raise ValueError(f"TorchSim needs an MFCalculator (its model and fidelity run there), got "
                             f"{type(calc).__name__}")
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
            out = self.model(batch, task=task, create_graph=False)
        dtype, device = state.positions.dtype, state.positions.device
        result = {"energy": out["energy"].detach().to(device, dtype)}
        for key in ("forces", "stress", "magmoms"):
            if key in out:
                result[key] = out[key].detach().to(device, dtype)
        return result


def batched_nvt(systems, model: MFTorchSimModel, temperatures_K, steps: int, timestep_fs: float = 1.0,
                loginterval: int = 10, tdamp_fs: float = 100.0, equil_steps: int = 0, seed: int = 0,
                progress: bool = False) -> list[list]:
    """Langevin NVT (TorchSim's BAOAB integrator, friction 1 / ``tdamp_fs``) of every system at its own
    temperature, all in one batch. systems: ASE Atoms; temperatures_K: one per system. After
    ``equil_steps`` (not recorded) the run of ``steps`` is sampled every ``loginterval`` steps (step 0
    included). Returns per system a list of Atoms frames (positions wrapped into the cell, energy and
    forces attached; ``info``: md_step, md_time_ps, temperature_K of the frame)."""
    import torch_sim as ts
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.units import kB
    from torch_sim.integrators import nvt_langevin
    from torch_sim.units import MetalUnits
    from tqdm.auto import tqdm

    temperatures = np.asarray(temperatures_K, dtype=float)
    if len(temperatures) != len(systems):
        raise ValueError(f"{len(temperatures)} temperatures for {len(systems)} systems: give one per system")
    state = ts.io.atoms_to_state(list(systems), model.device, torch.float64)
    on = {"dtype": torch.float64, "device": model.device}
    dt = torch.tensor(timestep_fs * 1e-3 * MetalUnits.time, **on)
    kT = torch.tensor(temperatures * MetalUnits.temperature, **on)
    gamma = torch.tensor(1.0 / (tdamp_fs * 1e-3 * MetalUnits.time), **on)
    init_fn, update_fn = nvt_langevin(model=model, dt=dt, kT=kT, gamma=gamma, seed=seed)
    state = init_fn(state)
    frames: list[list] = [[] for _ in systems]
    n_atoms = np.bincount(state.system_idx.cpu().numpy())
    dof = 3 * n_atoms - 3

    def record(step):
        kinetic = 0.5 * (state.momenta ** 2 / state.masses.unsqueeze(-1)).sum(-1)
        ke = kinetic.new_zeros(len(systems)).index_add_(0, state.system_idx, kinetic).cpu().numpy()
        energies, forces = state.energy.detach().cpu().numpy(), state.forces.detach().cpu().numpy()
        for b, atoms in enumerate(state.to_atoms()):
            start = n_atoms[:b].sum()
            atoms.calc = SinglePointCalculator(atoms, energy=float(energies[b]),
                                               forces=forces[start:start + n_atoms[b]])
            atoms.info.update(md_step=step, md_time_ps=step * timestep_fs * 1e-3,
                              temperature_K=float(2 * ke[b] / (dof[b] * kB)))
            frames[b].append(atoms)

    for step in tqdm(range(-equil_steps, steps + 1), desc="batched NVT", disable=not progress, mininterval=1.0):
        if step > -equil_steps:
            state = update_fn(state, dt=dt, kT=kT, gamma=gamma)
        if step >= 0 and step % loginterval == 0:
            record(step)
    return frames


def batched_relax(systems, model: MFTorchSimModel, fmax: float = 0.05, steps: int = 300) -> list[tuple]:
    """Relax cell and positions of every system in one batch (TorchSim's FIRE with the Fréchet cell
    parameterisation, as ASE's ``FrechetCellFilter``; ``fmax`` eV/Å on atoms and on the cell forces).
    Returns per system (relaxed Atoms, converged)."""
    import torch_sim as ts
    from torch_sim.optimizers import frechet_cell_fire
    from torch_sim.runners import generate_force_convergence_fn

    if not model.compute_stress:
        raise ValueError("a cell relaxation needs the stress: use MFTorchSimModel(..., compute_stress=True)")
    state = ts.io.atoms_to_state(list(systems), model.device, torch.float64)
    converge = generate_force_convergence_fn(force_tol=fmax)
    final = ts.optimize(system=state, model=model, optimizer=frechet_cell_fire, convergence_fn=converge,
                        max_steps=steps)
    done = converge(final).cpu().numpy()
    return list(zip(final.to_atoms(), (bool(d) for d in done)))
