"""Training configuration: one dataclass, defaults from the paper's Table 1, loadable from JSON or YAML.

Units: ``lr`` per optimiser step; loss terms are energy per atom (eV/atom), forces (eV/Å), stress
(GPa, like chgnet) and magmoms (μB), each a Huber loss (``huber_delta`` in those units) weighted by
``energy_weight`` … ``magmom_weight``.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from mf_calc.constants import WARM_STARTS, dataclass_from_dict
from mf_calc.model.io import is_model_folder

INITS = ("scratch", *WARM_STARTS)
TARGET_LETTERS = "efsm"


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data. ``batch_size`` is per process."""

    # model
    init: str = "scratch"  # scratch | chgnet-0.3.0 | chgnet-r2scan (warm start) | a trained model folder
    modules: str = "EMRC"  # fidelity-dependent modules, "" = plain CHGNet
    fidelities: tuple[str, ...] | None = None  # model fidelity order, lowest first; None = order in the data
    new_fidelities: dict = field(default_factory=dict)  # init = a trained model folder: {NEW: EXISTING}, each
    # fidelity the folder's model lacks starts as an exact copy of its fidelity EXISTING (composition refitted)
    model: dict = field(default_factory=dict)  # MFConfig size overrides (scratch only), e.g. {"n_conv": 3}
    freeze: tuple[str, ...] = ()  # model parts kept fixed, e.g. ("atom_embedding", "atom_conv_layers")
    fit_composition: bool = True  # least-squares per-fidelity composition fit on training energies (from a trained
    # model folder only for the fidelities new_fidelities adds; the others keep the composition they were trained with;
    # a warm start fits what its network does not predict yet, MFCHGNet.fit_composition(residual=True))
    # optimisation (paper Table 1)
    epochs: int = 60
    batch_size: int = 4
    lr: float = 0.005
    weight_decay: float = 0.0
    lr_min_fraction: float = 0.01  # cosine schedule ends at lr * lr_min_fraction (chgnet's decay_fraction)
    targets: str = "efsm"
    energy_weight: float = 1.0
    force_weight: float = 1.0
    stress_weight: float = 0.1
    magmom_weight: float = 0.1
    huber_delta: float = 0.1
    fidelity_fraction: dict = field(default_factory=dict)  # e.g. {"pbe_u": 0.3}: each epoch trains on a random
    # 30 % of that fidelity's training frames, drawn afresh per epoch (unnamed fidelities: all frames)
    grad_clip: float | None = None  # max gradient norm, None = no clipping
    # data and bookkeeping
    val_fraction: float = 0.1  # per fidelity
    seed: int = 0
    eval_batch_size: int = 16
    select_fidelity: str | None = None  # best model by this fidelity's validation errors; None = highest
    device: str = "auto"  # auto | cpu | cuda
    progress: bool = True

    def __post_init__(self):
        if self.init not in INITS and not is_model_folder(self.init):
            raise ValueError(f"unknown init {self.init!r}; choose from {INITS} or a model folder (config.json + weights)")
        self.targets = "".join(ch for ch in TARGET_LETTERS if ch in self.targets.lower())
        if "e" not in self.targets:
            raise ValueError(f"targets must include energy 'e', got {self.targets!r}")
        if self.fidelities is not None:
            self.fidelities = tuple(str(f) for f in self.fidelities)
        self.freeze = tuple(self.freeze)
        self.new_fidelities = {str(k): str(v) for k, v in self.new_fidelities.items()}
        if self.new_fidelities and not is_model_folder(self.init):
            raise ValueError("new_fidelities needs init = a trained model folder (a pretrained CHGNet or "
                             "'scratch' starts every fidelity alike)")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("epochs, batch_size and eval_batch_size must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction} must be in [0, 1)")
        if self.lr <= 0 or self.huber_delta <= 0:
            raise ValueError("lr and huber_delta must be > 0")
        self.fidelity_fraction = {str(k): float(v) for k, v in self.fidelity_fraction.items()}
        bad = {k: v for k, v in self.fidelity_fraction.items() if not 0.0 < v <= 1.0}
        if bad:
            raise ValueError(f"fidelity_fraction values must be in (0, 1], got {bad}")
        if self.model and self.init != "scratch":
            raise ValueError("model size overrides apply only to init='scratch' (a warm start keeps its model's sizes)")

    @property
    def weights(self) -> dict[str, float]:
        """Loss weight per target letter (0 for targets not trained)."""
        w = {"e": self.energy_weight, "f": self.force_weight, "s": self.stress_weight, "m": self.magmom_weight}
        return {k: (v if k in self.targets else 0.0) for k, v in w.items()}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fidelities"] = list(self.fidelities) if self.fidelities is not None else None
        d["freeze"] = list(self.freeze)
        return d

    @classmethod
    def with_new_defaults(cls, saved: dict) -> dict:
        """A saved ``to_dict()`` with the fields added to TrainConfig since it was written set to their
        defaults (as a run written then trained with them), so older checkpoints and records still compare."""
        defaults = {f.name: f.default_factory() if f.default_factory is not MISSING else f.default for f in fields(cls)}
        missing = {k: v for k, v in defaults.items() if k not in saved}
        return {**json.loads(json.dumps(missing)), **saved}

    @classmethod
    def from_dict(cls, dct: dict) -> TrainConfig:
        return dataclass_from_dict(cls, dct, "training config")

    @classmethod
    def from_file(cls, path) -> TrainConfig:
        """Read a ``.json`` or ``.yaml``/``.yml`` file holding a mapping of TrainConfig fields."""
        return cls.from_dict(read_mapping(path))


def read_mapping(path) -> dict:
    """A JSON or YAML (needs PyYAML) file holding one mapping."""
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:  # PyYAML is optional
            raise ValueError(f"{path}: reading YAML needs PyYAML; install it or use a .json config") from exc
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data
