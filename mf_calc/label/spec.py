"""A labelling spec: which ASE calculator, with which settings and magnetic start, makes one fidelity.

A spec is a JSON object::

    {"calculator": "gpaw",                      # "gpaw", or any ASE calculator as "module:Class"
     "settings": {...},                         # keyword arguments of that calculator
     "magnetic_start": "afm-olivine",           # afm-olivine | ferro | none | input (mf_calc.label.magnetism)
     "stress": true,                            # false: stress is not labelled (missing, never zero)
     "retry": {...},                            # settings overriding "settings" for one more try after a
                                                # failed run (e.g. another mixer), or null
     "u_ramp": [0, 1],                          # optional, GPAW DFT+U: converge at these fractions of U in
                                                # turn, every frame from scratch (mf_calc.label.u_ramp)
     "u_ramp_convergence": {...}}               # optional, with u_ramp: GPAW convergence criteria of the
                                                # SCFs before the last (the full-U SCF uses the settings')

A GPAW Monkhorst-Pack ``kpts`` belongs to the cell it was chosen for (the shipped specs: the 28-atom olivine
cell); a frame whose ``info["supercell"]`` says it is a supercell of that cell gets the grid folded into its
Brillouin zone (:mod:`mf_calc.label.kpoints`), the same k-point density.

Shipped specs (``mf_calc/label/specs/*.json``) are found by name: ``gpaw_afm``, ``gpaw_nonmag``, and the
VASP recipe ``vasp_afm`` (documentation for users with VASP; needs VASP and its POTCARs). The spec's hash
(sha256 of its canonical JSON) is stored with every label it produced, so data from different settings
never mix unnoticed.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import asdict, dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.calculators.calculator import Calculator

from mf_calc.label.kpoints import folds_exactly, frame_supercell, supercell_settings
from mf_calc.label.magnetism import MAGNETIC_STARTS, initial_magmoms
from mf_calc.label.stall import with_stall
from mf_calc.label.u_ramp import check_u_ramp, scaled_settings

SPEC_DIR = Path(__file__).parent / "specs"
ALIASES = {"gpaw": "gpaw:GPAW"}


def shipped_specs() -> list[str]:
    """Names of the specs shipped with mf_calc."""
    return sorted(p.stem for p in SPEC_DIR.glob("*.json"))


@dataclass(frozen=True)
class LabelSpec:
    """How to label one fidelity (see the module docstring for the JSON form)."""

    calculator: str
    settings: dict[str, Any] = field(default_factory=dict)
    magnetic_start: str = "none"
    stress: bool = True
    retry: dict[str, Any] | None = None
    u_ramp: list[float] | None = None
    u_ramp_convergence: dict[str, Any] | None = None

    def __post_init__(self):
        if not isinstance(self.calculator, str) or not self.calculator:
            raise ValueError(f"spec 'calculator' must be a non-empty string, got {self.calculator!r}")
        if self.magnetic_start not in MAGNETIC_STARTS:
            raise ValueError(f"spec 'magnetic_start' {self.magnetic_start!r} is not one of {list(MAGNETIC_STARTS)}")
        for name in ("settings", "retry", "u_ramp_convergence"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"spec {name!r} must be a JSON object, got {type(value).__name__}")
        if self.u_ramp is not None:
            object.__setattr__(self, "u_ramp", check_u_ramp(self.u_ramp))
        if self.u_ramp_convergence is not None and self.u_ramp is None:
            raise ValueError("spec 'u_ramp_convergence' needs a 'u_ramp' (it sets the SCFs before its last step)")

    @classmethod
    def from_dict(cls, data: dict) -> LabelSpec:
        known = [f.name for f in fields(cls)] + ["comment"]
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown spec field(s) {sorted(unknown)}; known: {', '.join(known)}")
        if "calculator" not in data:
            raise ValueError("spec has no 'calculator' (e.g. \"gpaw\" or \"ase.calculators.vasp:Vasp\")")
        return cls(**{k: v for k, v in data.items() if k != "comment"})

    @classmethod
    def load(cls, path_or_name: str | Path) -> LabelSpec:
        """Read a spec from a JSON file, or a shipped spec by name (``shipped_specs()``)."""
        path = Path(path_or_name)
        if not path.is_file():
            shipped = SPEC_DIR / f"{path_or_name}.json"
            if not shipped.is_file():
                raise FileNotFoundError(f"spec {str(path_or_name)!r} is neither a file nor a shipped spec "
                                        f"({shipped_specs()})")
            path = shipped
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"spec {str(path)!r} is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"spec {str(path)!r} must hold a JSON object")
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        data = asdict(self)
        for name in ("u_ramp", "u_ramp_convergence"):
            if data[name] is None:  # absent, as in specs written before the field existed (same hash)
                del data[name]
        return data

    @property
    def hash(self) -> str:
        """sha256 (first 16 hex digits) of the canonical JSON of the spec."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def spin_polarized(self) -> bool:
        return self.magnetic_start != "none"

    @property
    def calculator_class(self) -> type[Calculator]:
        """The ASE calculator class named by ``calculator`` (ImportError with a hint when it is absent)."""
        target = ALIASES.get(self.calculator, self.calculator)
        module_name, _, class_name = target.replace(":", ".").rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            hint = " (install it with `make dft`)" if module_name.startswith("gpaw") else ""
            raise ImportError(f"calculator {self.calculator!r} needs module {module_name!r}, which cannot be "
                              f"imported{hint}: {err}") from err
        try:
            return getattr(module, class_name)
        except AttributeError:
            raise ValueError(f"calculator {self.calculator!r}: module {module_name!r} has no {class_name!r}") from None

    @property
    def is_gpaw(self) -> bool:
        """Whether the spec names a GPAW calculator (without importing it)."""
        return ALIASES.get(self.calculator, self.calculator).split(":")[0].split(".")[0] == "gpaw"

    def code_version(self) -> str:
        """``package version`` of the calculator's distribution (e.g. ``gpaw 26.7.0``)."""
        package = self.calculator_class.__module__.split(".")[0]
        try:
            return f"{package} {version(package)}"
        except PackageNotFoundError:
            return package

    def calculator_settings(self, retry: bool = False, give_up: int | None = None) -> dict:
        """The calculator's keyword arguments: ``settings``, with the ``retry`` overrides when ``retry``; GPAW's
        give up an SCF whose density error has not halved for ``give_up`` iterations (``mf_calc.label.stall``)."""
        settings = dict(self.settings) | (dict(self.retry or {}) if retry else {})
        if give_up is not None and self.is_gpaw:
            settings["convergence"] = with_stall(settings.get("convergence"), give_up)
        return settings

    def build(self, log: str | Path | None = None, retry: bool = False,
              supercell: tuple[int, int, int] | None = None, give_up: int | None = None) -> Calculator:
        """A fresh calculator; ``retry=True`` applies the ``retry`` overrides; ``log`` is the text log of
        calculators that write one (GPAW's ``txt``). With a ``u_ramp`` it starts at the ramp's first U. For a
        frame that is a ``supercell`` of the cell the k-point grid is for, GPAW gets that grid folded
        (:mod:`mf_calc.label.kpoints`); ``give_up``: see ``calculator_settings``."""
        settings = self.calculator_settings(retry, give_up)
        cls = self.calculator_class
        if self.is_gpaw:
            settings = supercell_settings(settings, supercell)
            settings.setdefault("spinpol", self.spin_polarized)
            settings.setdefault("txt", None if log is None else str(log))
            if self.u_ramp is not None:
                settings = scaled_settings(settings, self.u_ramp[0])
                if self.u_ramp_convergence is not None:
                    settings["convergence"] = with_stall(self.u_ramp_convergence, give_up)
        elif self.u_ramp is not None:
            raise ValueError(f"spec 'u_ramp' needs GPAW; calculator {self.calculator!r} has no in-place U ramp")
        try:
            return cls(**settings)
        except TypeError as err:
            raise ValueError(f"calculator {self.calculator!r} rejects the spec settings: {err}") from None

    def same_kpoint_convention(self, atoms: Atoms) -> bool:
        """False for a frame whose ``info["supercell"]`` cannot fold the spec's k-grid exactly (its labels would
        sample other k-points than the cell the grid is for); True otherwise."""
        kpts = self.settings.get("kpts")
        supercell = frame_supercell(atoms)
        if not self.is_gpaw or not isinstance(kpts, dict) or "size" not in kpts or supercell is None:
            return True
        return folds_exactly(kpts, supercell)

    def prepare(self, atoms: Atoms) -> Atoms:
        """A copy of ``atoms`` (structure only) with the spec's initial magnetic moments."""
        moments = initial_magmoms(atoms, self.magnetic_start)
        prepared = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        if moments is not None:
            prepared.set_initial_magnetic_moments(moments)
        return prepared
