"""ASE calculator: fidelity selection, units, optimisation, model files and bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from ase import Atoms
from ase.optimize import BFGS
from conftest import tiny_model

from mf_calc import MFCalculator, MFCHGNet, available_models, load_model
from mf_calc.model.io import ModelFileError


def test_fidelity_by_name_and_index(warm_model, lfp):
    calc = MFCalculator(warm_model)
    assert calc.fidelity == "r2scan"  # default: highest
    calc = MFCalculator(warm_model, fidelity=0)
    assert calc.fidelity == "pbe_u"
    with pytest.raises(ValueError, match=r"unknown fidelity 'hse'; known: \['pbe_u', 'r2scan'\]"):
        MFCalculator(warm_model, fidelity="hse")
    with pytest.raises(ValueError, match="known"):
        calc.fidelity = "hse"


def test_results_and_cache_invalidation(lfp):
    model = tiny_model().float()
    calc = MFCalculator(model, fidelity="low")
    lfp.calc = calc
    e_low = lfp.get_potential_energy()
    forces, stress, mags = lfp.get_forces(), lfp.get_stress(), lfp.get_magnetic_moments()
    assert forces.shape == (28, 3) and stress.shape == (6,) and mags.shape == (28,)
    assert calc.results["free_energy"] == e_low
    calc.fidelity = "high"
    assert not calc.results  # cache cleared
    assert abs(lfp.get_potential_energy() - e_low) > 1e-3
    calc.fidelity = 0
    assert lfp.get_potential_energy() == pytest.approx(e_low, abs=1e-5)
    # stress agrees with the model's own 3x3 output (ASE Voigt order xx yy zz yz xz xy)
    s = model.predict([lfp], fidelity=0)[0]["stress"]
    np.testing.assert_allclose(stress, [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]], atol=1e-6)


def test_optimiser_lowers_fmax(warm_model, lfp):
    atoms = lfp.copy()
    atoms.rattle(0.1, seed=4)
    atoms.calc = MFCalculator(warm_model, fidelity="pbe_u")
    fmax0 = np.linalg.norm(atoms.get_forces(), axis=1).max()
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=15)
    assert np.linalg.norm(atoms.get_forces(), axis=1).max() < 0.5 * fmax0


def test_save_load_round_trip(tmp_path, lfp):
    model = tiny_model().float()  # model files store float32 weights
    model.metadata = {"name": "tiny"}
    model.save(tmp_path / "m")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o777 & ~umask  # as mkdir makes folders, not mkdtemp's 0o700
    loaded = MFCHGNet.load(tmp_path / "m")
    assert loaded.fidelities.names == ("low", "high") and loaded.config.modules == "EMRC"
    assert loaded.metadata == {"name": "tiny"}
    a, b = model.predict([lfp], fidelity=1)[0], loaded.predict([lfp], fidelity=1)[0]
    for key in ("energy", "forces", "stress", "magmoms"):
        np.testing.assert_array_equal(a[key], b[key])
    calc = MFCalculator(str(tmp_path / "m"), fidelity="low")  # also by path
    assert calc.fidelity == "low"


def test_corrupt_model_files(tmp_path):
    model = tiny_model()
    folder = tmp_path / "m"
    model.save(folder)
    weights = folder / "weights.pt"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        MFCHGNet.load(folder)
    weights.write_bytes(good)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="corrupt model config"):
        MFCHGNet.load(folder)
    mismatched = dict(cfg, config=dict(cfg["config"], atom_fea_dim=32))
    (folder / "config.json").write_text(json.dumps(mismatched))
    with pytest.raises(ModelFileError, match="do not match the architecture"):
        MFCHGNet.load(folder)
    (folder / "config.json").write_text(json.dumps(dict(cfg, format_version=99)))
    with pytest.raises(ModelFileError, match="format version 99"):
        MFCHGNet.load(folder)
    with pytest.raises(ModelFileError, match="not a model folder"):
        MFCHGNet.load(tmp_path / "nothing")


def test_shipped_models_are_named_honestly():
    assert {"lmfp-mf", "chgnet-0.3.0", "chgnet-r2scan"} <= set(available_models())
    model = load_model("chgnet-0.3.0")
    assert model.metadata["name"] == "chgnet-0.3.0" and tuple(model.fidelities.names) == ("pbe_u",)
    with pytest.raises(ValueError, match="unknown model"):
        load_model("no-such-model")


def test_element_outside_embedding(warm_model):
    atoms = Atoms("LiAm", positions=[[0, 0, 0], [1.5, 1.5, 1.5]], cell=[3, 3, 3], pbc=True)
    with pytest.raises(ValueError, match=r"atomic number \[95\].*outside"):
        MFCalculator(warm_model).get_potential_energy(atoms)


def test_isolated_atom(warm_model):
    atoms = Atoms("Li2O", positions=[[0, 0, 0], [1.6, 0, 0], [10, 10, 10]], cell=[20, 20, 20], pbc=True)
    with pytest.raises(ValueError, match=r"isolated atom\(s\) \[2\]"):
        MFCalculator(warm_model).get_potential_energy(atoms)


def test_non_periodic_cluster(warm_model):
    from ase.calculators.calculator import PropertyNotImplementedError

    from mf_calc import lmfp

    cluster = lmfp(supercell=(1, 1, 1))[:12]
    cluster.pbc = False
    cluster.cell = [0, 0, 0]
    cluster.center()
    cluster.calc = MFCalculator(warm_model)
    assert np.isfinite(cluster.get_potential_energy())
    assert np.abs(cluster.get_forces().sum(axis=0)).max() < 1e-3  # no net force on an isolated cluster
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        cluster.get_stress()
