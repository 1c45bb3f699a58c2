"""DFT labelling at named fidelities with any ASE calculator (GPAW built in): specs, the resumable
pipeline and finite-difference label checks."""

from mf_calc.label.checks import finite_difference_check
from mf_calc.label.magnetism import initial_magmoms
from mf_calc.label.run import LabelOptions, label_frames
from mf_calc.label.spec import LabelSpec, shipped_specs
from mf_calc.label.store import LabelStore

__all__ = ["LabelOptions", "LabelSpec", "LabelStore", "finite_difference_check", "initial_magmoms", "label_frames",
           "shipped_specs"]
