"""MF-CHGNet: CHGNet whose embedding (E), messages (M), readout (R) and composition model (C)
may depend on the fidelity of each structure (paper section 2).

Units: energies eV, forces eV/Å, stress eV/Å³ (ASE sign, 3×3), magmoms μB. With ``modules=""``
and one fidelity the network is plain CHGNet.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from ase import Atoms
from chgnet.model.encoders import AngleEncoder, AtomEmbedding, BondEncoder
from chgnet.model.functions import MLP, find_normalization
from torch import Tensor, nn

from mf_calc.constants import dataclass_from_dict
from mf_calc.model import chgnet_map, export, new_fidelities
from mf_calc.model.composition import CompositionModel
from mf_calc.model.fidelity import Fidelities, FidelityBias, FidelityRows, Switches, parse_modules
from mf_calc.model.graph import Batch, collate, graph_from_atoms
from mf_calc.model.io import CONFIG_FILE, ModelFileError, read_model_files, save_model
from mf_calc.model.layers import MFAngleUpdate, MFAtomConv, MFBondConv

CHGNET_PRETRAINED = ("0.3.0", "0.2.0", "r2scan")


@dataclass
class MFConfig:
    """Architecture of an MF-CHGNet. Defaults are chgnet 0.3.0's sizes (paper Table 1)."""

    fidelities: tuple[str, ...] = ("pbe_u", "r2scan")
    modules: str = "EMRC"
    atom_fea_dim: int = 64
    bond_fea_dim: int = 64
    angle_fea_dim: int = 64
    num_radial: int = 31
    num_angular: int = 31
    n_conv: int = 4
    atom_conv_hidden_dim: int = 64
    bond_conv_hidden_dim: int = 64
    angle_layer_hidden_dim: int = 0
    mlp_hidden_dims: tuple[int, ...] = (64, 64, 64)
    cutoff: float = 6.0  # atom graph cutoff, Å
    bond_cutoff: float = 3.0  # bond graph (angle) cutoff, Å
    cutoff_coeff: int = 8
    learnable_rbf: bool = True
    gmlp_norm: str | None = "layer"
    readout_norm: str | None = "layer"
    activation: str = "silu"
    mlp_out_bias: bool = False

    def __post_init__(self):
        self.fidelities = tuple(Fidelities(self.fidelities).names)
        self.modules = parse_modules(self.modules)
        self.mlp_hidden_dims = tuple(int(h) for h in self.mlp_hidden_dims)
        if self.n_conv < 2:
            raise ValueError("n_conv must be >= 2 (magmoms are read before the last conv layer)")
        if self.num_angular % 2 != 1:
            raise ValueError(f"num_angular={self.num_angular} must be odd")
        if not 0 < self.bond_cutoff <= self.cutoff:
            raise ValueError("need 0 < bond_cutoff <= cutoff")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, dct: dict) -> MFConfig:
        return dataclass_from_dict(cls, dct, "model config")


class MFCHGNet(nn.Module):
    """Multi-fidelity CHGNet. ``forward`` takes a ``Batch``; ``predict`` takes ``ase.Atoms``."""

    def __init__(self, config: MFConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = MFConfig(**kwargs)
        elif kwargs:
            raise TypeError("give either a config or keyword arguments, not both")
        self.config = config
        self.fidelities = Fidelities(config.fidelities)
        self.metadata: dict = {}
        self.switches = Switches(config.modules, len(self.fidelities))
        c, n_f, sw = config, len(self.fidelities), self.switches

        self.atom_embedding = AtomEmbedding(atom_feature_dim=c.atom_fea_dim)
        self.fidelity_embedding = FidelityBias(n_f, c.atom_fea_dim) if sw.on("E") else None
        self.bond_basis_expansion = BondEncoder(
            atom_graph_cutoff=c.cutoff, bond_graph_cutoff=c.bond_cutoff, num_radial=c.num_radial,
            cutoff_coeff=c.cutoff_coeff, learnable=c.learnable_rbf,
        )
        self.bond_embedding = nn.Linear(c.num_radial, c.bond_fea_dim, bias=False)
        self.bond_weights_ag = nn.Linear(c.num_radial, c.atom_fea_dim, bias=False)
        self.bond_weights_bg = nn.Linear(c.num_radial, c.bond_fea_dim, bias=False)
        self.angle_basis_expansion = AngleEncoder(num_angular=c.num_angular, learnable=c.learnable_rbf)
        self.angle_embedding = nn.Linear(c.num_angular, c.angle_fea_dim, bias=False)

        fm = {"n_fidelities": n_f, "fidelity_messages": sw.on("M")}
        common = {"atom_fea_dim": c.atom_fea_dim, "bond_fea_dim": c.bond_fea_dim, "activation": c.activation,
                  "gMLP_norm": c.gmlp_norm}
        self.atom_conv_layers = nn.ModuleList(
            MFAtomConv(hidden_dim=c.atom_conv_hidden_dim, mlp_out_bias=c.mlp_out_bias, **common, **fm)
            for _ in range(c.n_conv)
        )
        self.bond_conv_layers = nn.ModuleList(
            MFBondConv(angle_fea_dim=c.angle_fea_dim, hidden_dim=c.bond_conv_hidden_dim, mlp_out_bias=c.mlp_out_bias,
                       **common, **fm)
            for _ in range(c.n_conv - 1)
        )
        self.angle_layers = nn.ModuleList(
            MFAngleUpdate(angle_fea_dim=c.angle_fea_dim, hidden_dim=c.angle_layer_hidden_dim, **common, **fm)
            for _ in range(c.n_conv - 1)
        )
        self.site_wise = nn.Linear(c.atom_fea_dim, 1)  # shared magmom head
        self.readout_norm = find_normalization(c.readout_norm, dim=c.atom_fea_dim)
        self.readouts = nn.ModuleList(
            MLP(input_dim=c.atom_fea_dim, hidden_dim=list(c.mlp_hidden_dims), output_dim=1, activation=c.activation)
            for _ in range(sw.copies("R"))
        )
        self.composition = CompositionModel(sw.copies("C"))

    # ------------------------------------------------------------------ properties
    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def dtype(self) -> torch.dtype:
        return self.site_wise.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.site_wise.weight.device

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Batch, task: str = "efsm", create_graph: bool | None = None) -> dict[str, Tensor]:
        """Predict for a batch. task: letters of e (energy), f (forces), s (stress), m (magmoms).

        Returns energy (B,) eV, energy_per_atom (B,) eV/atom, forces (N, 3) eV/Å,
        stress (B, 3, 3) eV/Å³, magmoms (N,) μB — each only when asked for.
        Second-order graphs for force/stress are kept only when ``create_graph`` (default: training).
        """
        create_graph = self.training if create_graph is None else create_graph
        want_f, want_s = "f" in task, "s" in task
        dtype, owner, n_struct = self.dtype, batch.atom_owner, batch.n_structures
        positions = batch.positions.to(dtype)
        cells = batch.cells.to(dtype)
        grad_inputs = []
        if want_f:
            positions = positions.detach().requires_grad_(True)
            grad_inputs.append(positions)
        pos, strain = positions, None
        if want_s:
            strain = torch.zeros(n_struct, 3, 3, dtype=dtype, device=cells.device, requires_grad=True)
            grad_inputs.append(strain)
            pos = pos + torch.bmm(pos.unsqueeze(1), strain.index_select(0, owner)).squeeze(1)
            cells = cells + torch.bmm(cells, strain)

        out = self._energy(batch, pos, cells, want_magmom="m" in task)
        energy = out["energy"]
        if grad_inputs:
            grads = torch.autograd.grad(energy.sum(), grad_inputs, create_graph=create_graph, retain_graph=create_graph)
            if want_f:
                out["forces"] = -grads[0]
            if want_s:
                out["stress"] = grads[-1] / batch.volumes.to(dtype).view(-1, 1, 1)
        out["energy_per_atom"] = energy / batch.n_atoms.to(dtype)
        return out

    def _fidelity_rows(self, batch: Batch) -> tuple[FidelityRows, FidelityRows, FidelityRows]:
        """Fidelities of the atoms, directed bonds and angles of a batch."""
        if batch.uniform_fidelity is not None:
            f = FidelityRows(batch.uniform_fidelity)
            return f, f, f
        f_atom = FidelityRows(batch.fidelity.index_select(0, batch.atom_owner))
        return f_atom, f_atom.of(batch.edges[:, 0]), f_atom.of(batch.angles[:, 0])

    def _energy(self, batch: Batch, pos: Tensor, cells: Tensor, want_magmom: bool) -> dict[str, Tensor]:
        owner, edges = batch.atom_owner, batch.edges
        f_atom, f_edge, f_angle = self._fidelity_rows(batch)

        # bond vectors (centre − neighbour image) and basis expansions, as in chgnet
        edge_cells = cells.index_select(0, owner.index_select(0, edges[:, 0]))
        shifts = torch.bmm(batch.images.to(pos.dtype).unsqueeze(1), edge_cells).squeeze(1)
        vectors = pos.index_select(0, edges[:, 0]) - (pos.index_select(0, edges[:, 1]) + shifts)
        lengths = torch.linalg.norm(vectors, dim=1)
        unit = vectors / lengths[:, None]
        und_lengths = lengths.index_select(0, batch.und2dir)
        rbf = self.bond_basis_expansion
        bond_bases_ag = rbf.rbf_expansion_ag(und_lengths)
        bond_bases_bg = rbf.rbf_expansion_bg(und_lengths)

        atom_feas = self.atom_embedding(batch.numbers - 1)
        if self.fidelity_embedding is not None:
            atom_feas = atom_feas + self.fidelity_embedding(f_atom)
        bond_feas = self.bond_embedding(bond_bases_ag)
        edge_weights = self.bond_weights_ag(bond_bases_ag).index_select(0, batch.dir2und)  # gathered once for all layers
        bond_weights_bg = self.bond_weights_bg(bond_bases_bg)

        angles = batch.angles
        has_angles = len(angles) > 0
        if has_angles:
            cosine = (unit.index_select(0, angles[:, 1]) * unit.index_select(0, angles[:, 2])).sum(1) * (1 - 1e-6)
            angle_feas = self.angle_embedding(self.angle_basis_expansion.fourier_expansion(torch.acos(cosine)))
            bond_graph = torch.stack(
                [angles[:, 0], batch.dir2und.index_select(0, angles[:, 1]), batch.dir2und.index_select(0, angles[:, 2])], 1
            )
            weights_a, weights_b = (bond_weights_bg.index_select(0, bond_graph[:, k]) for k in (1, 2))
            angle_weights = weights_a * weights_b  # one product for all bond-conv layers

        out: dict[str, Tensor] = {}
        n_conv = self.config.n_conv
        for idx in range(n_conv - 1):
            atom_feas = self.atom_conv_layers[idx](atom_feas, bond_feas, edge_weights, edges, batch.dir2und, f_edge)
            if has_angles:
                bond_feas = self.bond_conv_layers[idx](atom_feas, bond_feas, angle_weights, angle_feas, bond_graph,
                                                       f_angle)
                if idx < n_conv - 2:  # chgnet also runs the last angle layer, whose output nothing reads
                    angle_feas = self.angle_layers[idx](atom_feas, bond_feas, angle_feas, bond_graph, f_angle)
            if idx == n_conv - 2 and want_magmom:
                out["magmoms"] = torch.abs(self.site_wise(atom_feas)).view(-1)
        atom_feas = self.atom_conv_layers[-1](atom_feas, bond_feas, edge_weights, edges, batch.dir2und, f_edge)
        if self.readout_norm is not None:
            atom_feas = self.readout_norm(atom_feas)

        site_energies = self._readout(atom_feas, f_atom)
        n_struct = batch.n_structures
        energy = site_energies.new_zeros(n_struct).scatter_add_(0, owner, site_energies)  # see CompositionModel.forward
        comp_copy = f_atom.for_copies(self.switches.copies("C"))
        energy = energy + self.composition(batch.numbers, comp_copy, owner, n_struct).to(energy.dtype)
        out["energy"] = energy
        return out

    def _readout(self, atom_feas: Tensor, f_atom: FidelityRows) -> Tensor:
        """Site energies (eV) from the readout MLP of each atom's fidelity."""
        site = atom_feas.new_zeros(len(atom_feas))
        for f, rows in f_atom.groups(len(self.readouts)):
            if rows is None:
                return self.readouts[f](atom_feas).view(-1)
            site = site.index_put((rows,), self.readouts[f](atom_feas.index_select(0, rows)).view(-1))
        return site

    # ------------------------------------------------------------------ convenience
    def graph(self, atoms, fidelity: str | int | None = None):
        """Graph of one ``ase.Atoms`` at a fidelity (name, index, or None for the highest)."""
        return graph_from_atoms(
            atoms, cutoff=self.config.cutoff, bond_cutoff=self.config.bond_cutoff, fidelity=self.fidelities.index(fidelity)
        )

    def predict(self, atoms_list: Sequence, fidelity: str | int | None = None, task: str = "efsm",
                batch_size: int = 16) -> list[dict[str, np.ndarray]]:
        """Predictions for many structures, batched; one dict of numpy arrays per structure."""
        was_training = self.training
        self.eval()
        results: list[dict[str, np.ndarray]] = []
        try:
            for start in range(0, len(atoms_list), batch_size):
                chunk = atoms_list[start : start + batch_size]
                batch = collate([self.graph(a, fidelity) for a in chunk], dtype=self.dtype).to(self.device)
                out = self(batch, task=task, create_graph=False)
                results.extend(split_predictions(out, batch))
        finally:
            self.train(was_training)
        return results

    def fit_composition(self, structures, energies: Sequence[float], fidelity: str | int | None = None,
                        residual: bool = False) -> np.ndarray:
        """Fit the composition model of one fidelity: least squares of total energies (eV) on element counts.

        ``residual=True`` fits only what the model does not predict yet (energies minus its own at that
        fidelity, added to the weights): the refit for a trained network, whose energy the totals would
        count twice (CHGNet 0.3.0 on LMFP: -0.16 eV/atom). The totals are CHGNet's fit before training from
        scratch. structures: ase.Atoms (any, with ``residual``), pymatgen Structures or atomic-number lists.
        Returns the weights (eV/atom by Z-1).
        """
        if residual and not all(isinstance(s, Atoms) for s in structures):
            raise ValueError("fit_composition(residual=True) needs ase.Atoms: the model predicts their energies")
        numbers = [_atomic_numbers(s) for s in structures]
        copy = self.switches.copy_of("C", self.fidelities.index(fidelity))
        predicted = [p["energy"] for p in self.predict(structures, fidelity, task="e")] if residual else None
        return self.composition.fit(numbers, energies, copy=copy, predicted=predicted)

    def select_fidelity(self, fidelity: str | int | None = None) -> MFCHGNet:
        """A single-fidelity plain model equal to this one at ``fidelity`` (see ``mf_calc.model.export``)."""
        return export.select_fidelity(self, fidelity)

    def to_chgnet(self, fidelity: str | int | None = None):
        """A ``chgnet.model.CHGNet`` equal to this model at ``fidelity`` (see ``mf_calc.model.export``)."""
        return export.to_chgnet(self, fidelity)

    def with_fidelities(self, names: Sequence[str], start_from: dict[str, str] | None = None) -> MFCHGNet:
        """This model with fidelities ``names``; each new one starts as an exact copy of the existing fidelity
        ``start_from[name]`` (see ``mf_calc.model.new_fidelities``)."""
        return new_fidelities.with_fidelities(self, names, start_from)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_chgnet(cls, name: str = "0.3.0", fidelities: Sequence[str] = ("pbe_u", "r2scan"),
                    modules: str = "EMRC") -> MFCHGNet:
        """Warm start from a pretrained CHGNet inside the chgnet wheel ("0.3.0", "0.2.0" or "r2scan").

        Every shared weight is copied; fidelity embeddings and W_F start at zero, each readout and
        composition copy is the pretrained one, so every fidelity reproduces the pretrained CHGNet.
        """
        if name not in CHGNET_PRETRAINED:
            raise ValueError(f"unknown pretrained CHGNet {name!r}; choose from {CHGNET_PRETRAINED}")
        from chgnet.model import CHGNet

        with contextlib.redirect_stdout(io.StringIO()):
            ref = CHGNet.load(model_name=name, use_device="cpu", verbose=False)
        config = MFConfig(fidelities=tuple(fidelities), modules=modules, **chgnet_map.config_fields(ref.model_args))
        model = cls(config)
        model.load_chgnet_state(ref.state_dict())
        model.metadata = {"init": f"chgnet-{name}", "description": f"warm start of pretrained CHGNet {name}, no MF training",
                          "magmom_scale": "r2scan" if name == "r2scan" else "pbe_u"}  # labels its magmom head learned
        return model

    @torch.no_grad()
    def load_chgnet_state(self, chgnet_state: dict[str, Tensor]) -> None:
        """Copy a chgnet ``CHGNet`` state dict into every fidelity copy of this model."""
        own = self.state_dict()
        mapped = {}
        for key, value in chgnet_state.items():
            for copy in range(len(self.readouts)):  # one name per copy for the readout, the same one otherwise
                mapped[chgnet_map.mf_state_key(key, copy)] = value
        mapped["composition.weight"] = mapped["composition.weight"].reshape(1, -1).expand_as(
            own["composition.weight"]).clone()
        missing = [k for k in own
                   if k not in mapped and ".fidelity_gate." not in k and not k.startswith("fidelity_embedding.")]
        unexpected = [k for k in mapped if k not in own]
        if missing or unexpected:
            raise ValueError(f"chgnet weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        self.load_state_dict(mapped, strict=False)

    def save(self, path) -> None:
        """Save as a folder: config.json (format version, fidelities, modules, sizes) + weights.pt."""
        save_model(self, path)

    @classmethod
    def load(cls, path) -> MFCHGNet:
        """Load a model folder written by ``save`` (weights read with ``weights_only=True``); a folder that
        does not match raises ``ModelFileError`` naming the file."""
        folder, cfg, state = read_model_files(path)
        try:
            model = cls(MFConfig.from_dict(cfg["config"]))
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{folder / CONFIG_FILE}: invalid architecture config ({exc})") from exc
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise ModelFileError(f"{folder / cfg['weights_file']}: weights do not match the architecture in "
                                 f"{CONFIG_FILE} ({exc})") from exc
        model.metadata = dict(cfg.get("metadata", {}))
        return model.eval()


def split_predictions(out: dict[str, Tensor], batch: Batch) -> list[dict[str, np.ndarray]]:
    """Split batched model output into one dict of numpy arrays per structure."""
    n_atoms = batch.n_atoms.tolist()
    per_struct = [{} for _ in n_atoms]
    for key, value in out.items():
        value = value.detach().cpu().numpy()
        parts = np.split(value, np.cumsum(n_atoms)[:-1]) if key in ("forces", "magmoms") else list(value)
        for d, part in zip(per_struct, parts):
            d[key] = part
    return per_struct


def _atomic_numbers(structure) -> np.ndarray:
    if hasattr(structure, "numbers"):  # ase.Atoms
        return np.asarray(structure.numbers)
    if hasattr(structure, "atomic_numbers"):  # pymatgen Structure
        return np.asarray(structure.atomic_numbers)
    return np.asarray(structure, dtype=np.int64)
