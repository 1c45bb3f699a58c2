"""Workflows on top of any ASE calculator (usually ``MFCalculator``): relaxation, MD, Li diffusion,
phonons, oxidation states from magmoms, and the fidelity gap.

Each lives in its own small module; the names below are imported on first use, so that importing one module
(e.g. the numpy-only ``msd``) does not load the others or the model.
"""

# a function named like its module is bound here: importing the module later must not replace it on the package
from mf_calc.workflows.phonons import phonons as phonons
from mf_calc.workflows.relax import RelaxSettings as RelaxSettings
from mf_calc.workflows.relax import relax as relax

_EXPORTS = {"li_diffusion": "diffusion", "diffusion_of_trajectories": "diffusion", "MSDSettings": "diffusion",
            "fidelity_gap": "gap", "resolve_calculator": "io", "MDOutput": "md", "MDSettings": "md",
            "NVTRun": "engine", "engine_for": "engine", "plot_md_log": "md", "read_md_log": "md", "run_md": "md",
            "arrhenius_fit": "msd", "msd_analysis": "msd",
            "unwrapped_positions": "msd", "charge_balance": "oxidation", "oxidation_states": "oxidation",
            "oxidation_summary": "oxidation"}
__all__ = sorted([*_EXPORTS, "phonons", "relax", "RelaxSettings"])


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mf_calc.workflows' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"mf_calc.workflows.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
