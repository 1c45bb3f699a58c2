"""Bad input gets an error that names the real problem, on every path into the model."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from conftest import tiny_model

from mf_calc import MFCalculator, lmfp
from mf_calc.hub import load_model


def _both_paths(atoms, match):
    """The calculator (Verlet-skin neighbour cache) and batched predict (fresh graph) give the same error."""
    model = tiny_model()
    with pytest.raises(ValueError, match=match):
        atoms.calc = MFCalculator(model)
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match=match):
        model.predict([atoms])


def test_empty_structure():
    _both_paths(Atoms(), "no atoms")


def test_nan_position():
    atoms = lmfp(supercell=(1, 1, 1))
    atoms.positions[3, 1] = np.nan
    _both_paths(atoms, r"non-finite .*position.* \[3\]")


def test_two_atoms_at_one_position():
    atoms = lmfp(supercell=(1, 1, 1))
    atoms.positions[5] = atoms.positions[2]
    _both_paths(atoms, "atoms 2 and 5 are 0.000 Å apart")


def test_periodic_with_zero_cell():
    atoms = Atoms("LiFe", positions=[[0, 0, 0], [2.0, 0, 0]], pbc=True)
    _both_paths(atoms, "zero-volume cell")


def test_nan_appearing_during_md_is_caught_by_the_cached_path():
    atoms = lmfp(supercell=(1, 1, 1))
    atoms.calc = MFCalculator(tiny_model())
    atoms.get_potential_energy()
    atoms.positions[0, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        atoms.get_potential_energy()


def test_a_training_run_folder_loads_its_best_model(tmp_path, caplog):
    tiny_model().save(tmp_path / "run" / "best")
    model = load_model(tmp_path / "run")
    assert model.fidelities.names == ("low", "high")
    assert "training run folder" in caplog.text
    with pytest.raises(ValueError, match="not a model folder|config.json"):
        (tmp_path / "empty").mkdir()
        load_model(tmp_path / "empty")


def test_a_model_used_in_a_calculator_can_still_be_trained(lmfp_delithiated):
    model = tiny_model().train()
    before = [p.requires_grad for p in model.parameters()]
    lmfp_delithiated.calc = MFCalculator(model)
    forces = lmfp_delithiated.get_forces()
    assert [p.requires_grad for p in model.parameters()] == before and all(before)
    assert model.training  # the calculator leaves the caller's train/eval mode as it was
    reference = model.eval().predict([lmfp_delithiated], fidelity="high", task="ef")[0]["forces"]
    np.testing.assert_allclose(forces, reference, atol=1e-10)  # and the mode does not change predictions
    from mf_calc.model.graph import collate

    model.train()
    model(collate([model.graph(lmfp_delithiated)], dtype=model.dtype), task="e")["energy"].sum().backward()
    assert all(p.grad is not None for p in model.readouts[-1].parameters())


def test_shortest_distances_per_element_pair():
    from ase.build import bulk

    from mf_calc.model.contacts import shortest_distances

    model = tiny_model()
    cu = bulk("Cu", "fcc", a=3.6)
    assert shortest_distances([model.graph(cu)]) == {"Cu-Cu": pytest.approx(3.6 / 2**0.5, abs=1e-3)}
    lfp = shortest_distances([model.graph(lmfp(supercell=(1, 1, 1)))])
    assert set(lfp) >= {"Li-O", "O-P", "O-Fe", "Li-Fe"} and 1.4 < lfp["O-P"] < 1.7 < lfp["O-Fe"]


def test_a_contact_closer_than_the_training_data_warns_once_per_pair():
    """The calculator warns where the model extrapolates: a pair closer than any in its training data."""
    import warnings

    from mf_calc.model.contacts import METADATA_KEY, ExtrapolationWarning, shortest_distances

    model = tiny_model()
    seen = lmfp(supercell=(1, 1, 1))
    model.metadata[METADATA_KEY] = shortest_distances([model.graph(seen)])
    calc = MFCalculator(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seen.calc = calc
        seen.get_potential_energy()  # the training structure itself: silent
    squeezed = seen.copy()
    i_li = 0
    o = [k for k, s in enumerate(squeezed.get_chemical_symbols()) if s == "O"]
    d = squeezed.get_distances(i_li, o, mic=True, vector=True)
    k = int(np.argmin(np.linalg.norm(d, axis=1)))
    squeezed.positions[i_li] += 0.4 * d[k]  # Li 40 % of the way towards its nearest O
    squeezed.calc = calc
    with pytest.warns(ExtrapolationWarning, match=r"a Li-O contact of 1\.\d+ Å: the training data's shortest Li-O"):
        squeezed.get_potential_energy()
    squeezed.positions[i_li] += 0.01 * d[k]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same pair again: warned once is enough
        squeezed.get_potential_energy()
    other = seen.copy()
    other.positions[i_li] = squeezed.positions[i_li]
    other.calc = MFCalculator(model)  # another calculator of the same model (a NEB image): already warned
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other.get_potential_energy()
    co = seen.copy()
    co[4].symbol = "Co"  # no Co pair in the training data at all
    co.calc = MFCalculator(model)
    with pytest.warns(ExtrapolationWarning, match="never had a .*Co pair"):
        co.get_potential_energy()
