"""Shared fixtures: tiny random MF models (fast) and the pretrained warm start (loaded once)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from mf_calc import MFCHGNet, lmfp

# the benchmark scripts (run as files, they import each other as siblings) for the tests of their helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from mf_calc.model.fidelity import FidelityBias

TINY = dict(atom_fea_dim=16, bond_fea_dim=16, angle_fea_dim=16, num_radial=9, num_angular=9, n_conv=3,
            atom_conv_hidden_dim=16, bond_conv_hidden_dim=16, mlp_hidden_dims=(16,))


def tiny_model(modules="EMRC", fidelities=("low", "high"), seed=0, dtype=torch.float64) -> MFCHGNet:
    """A small MF-CHGNet whose fidelity parameters are random and non-zero, so every fidelity path is exercised."""
    torch.manual_seed(seed)
    model = MFCHGNet(fidelities=fidelities, modules=modules, **TINY)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, FidelityBias):
                module.weight.normal_(0.0, 0.5)
        model.composition.weight.normal_(-5.0, 1.0)
    return model.to(dtype).eval()


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread for a test module: on a shared 2-core machine two threads can be 10-40× slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def warm_model():
    return MFCHGNet.from_chgnet("0.3.0", fidelities=("pbe_u", "r2scan"), modules="EMRC").eval()


@pytest.fixture
def lfp():
    atoms = lmfp(supercell=(1, 1, 1))
    atoms.rattle(0.03, seed=3)
    return atoms


@pytest.fixture
def lmfp_delithiated():
    atoms = lmfp(x_li=0.5, y_mn=0.5, supercell=(1, 1, 2), seed=1)
    atoms.rattle(0.03, seed=2)
    return atoms
