"""Workflows on top of any ASE calculator (usually ``MFCalculator``): relaxation, MD, Li diffusion,
phonons, oxidation states from magmoms, and the fidelity gap.

Each lives in its own small module; heavy imports (phonopy, matplotlib, the model) happen inside the
functions that need them.
"""

from mf_calc.workflows.diffusion import li_diffusion
from mf_calc.workflows.gap import fidelity_gap
from mf_calc.workflows.io import read_structure, resolve_calculator
from mf_calc.workflows.md import plot_md_log, read_md_log, run_md
from mf_calc.workflows.msd import arrhenius_fit, msd_analysis, unwrapped_positions
from mf_calc.workflows.oxidation import charge_balance, oxidation_states, oxidation_summary
from mf_calc.workflows.phonons import phonons
from mf_calc.workflows.relax import relax

__all__ = [
    "arrhenius_fit", "charge_balance", "fidelity_gap", "li_diffusion", "msd_analysis", "oxidation_states",
    "oxidation_summary", "phonons", "plot_md_log", "read_md_log", "read_structure", "relax", "resolve_calculator",
    "run_md", "unwrapped_positions",
]
