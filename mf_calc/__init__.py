"""mf_calc: multi-fidelity CHGNet force field for Li-ion cathodes, used from ASE.

Public API: ``MFCHGNet`` (the network), ``MFCalculator`` (ASE calculator with a target fidelity),
``load_model`` / ``available_models`` (shipped models), ``lmfp`` (olivine LMFP builder).
"""

from mf_calc.threads import set_passive_wait

set_passive_wait()  # before torch loads: sleeping, not spinning, OpenMP threads on a shared machine

#: public name -> module that defines it; imported on first use, so that ``import mf_calc.workflows.msd`` (numpy
#: only) does not load torch and chgnet
_EXPORTS = {"MFCalculator": "mf_calc.calculator", "available_models": "mf_calc.hub", "load_model": "mf_calc.hub",
            "MFCHGNet": "mf_calc.model.mfchgnet", "MFConfig": "mf_calc.model.mfchgnet", "lmfp": "mf_calc.structures"}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mf_calc' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
