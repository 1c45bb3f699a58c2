"""mf_calc: multi-fidelity CHGNet force field for Li-ion cathodes, used from ASE.

Public API: ``MFCHGNet`` (the network), ``MFCalculator`` (ASE calculator with a target fidelity),
``load_model`` / ``available_models`` (shipped models), ``lmfp`` (olivine LMFP builder).
"""

from mf_calc.threads import set_passive_wait

set_passive_wait()  # before torch loads: sleeping, not spinning, OpenMP threads on a shared machine

from mf_calc.calculator import MFCalculator  # noqa: E402
from mf_calc.hub import available_models, load_model  # noqa: E402
from mf_calc.model.mfchgnet import MFCHGNet, MFConfig  # noqa: E402
from mf_calc.structures import lmfp  # noqa: E402

__all__ = ["MFCHGNet", "MFConfig", "MFCalculator", "available_models", "load_model", "lmfp"]
__version__ = "0.1.0"
