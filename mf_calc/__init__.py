"""mf_calc: multi-fidelity CHGNet force field for Li-ion cathodes, used from ASE.

Public API: ``MFCHGNet`` (the network), ``MFCalculator`` (ASE calculator with a target fidelity),
``load_model`` / ``available_models`` (shipped models), ``lmfp`` (olivine LMFP builder).
"""

from mf_calc.calculator import MFCalculator
from mf_calc.hub import available_models, load_model
from mf_calc.model.mfchgnet import MFCHGNet, MFConfig
from mf_calc.structures import lmfp

__all__ = ["MFCHGNet", "MFConfig", "MFCalculator", "available_models", "load_model", "lmfp"]
__version__ = "0.1.0"
