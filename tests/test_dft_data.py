"""The committed real-DFT data the reported numbers rest on (benchmarks/data/dft): only converged frames are
collected, gpaw_afm forces are nearly balanced, paired frames share their structure, and the test split shares
no configuration with the frames models train or validate on."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest

DFT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "dft"
FILES = {"train": "lmfp_gpaw_afm_train", "test": "lmfp_gpaw_afm_test", "nonmag": "lmfp_gpaw_nonmag"}
RAW = {("paired", "gpaw_afm"): "paired_gpaw_afm", ("afm_test", "gpaw_afm"): "afm_test_gpaw_afm",
       ("paired", "gpaw_nonmag"): "paired_gpaw_nonmag", ("nonmag_only", "gpaw_nonmag"): "nonmag_only_gpaw_nonmag",
       ("nonmag_extra", "gpaw_nonmag"): "nonmag_extra_gpaw_nonmag"}


@pytest.fixture(scope="module")
def data():
    return {name: ase.io.read(DFT / f"{file}.extxyz.gz", ":") for name, file in FILES.items()}


def _record(atoms) -> dict:
    """The labelling record a collected frame came from (its source names the input set and frame)."""
    source = atoms.info["source"]  # inputs/SET.extxyz:INDEX
    name, index = Path(source.rsplit(":", 1)[0]).stem, int(source.rsplit(":", 1)[1])
    folder = DFT / "raw" / RAW[(name, atoms.info["fidelity"])]
    return json.loads((folder / "records" / f"{index:05d}.json").read_text())


def test_every_collected_frame_is_a_converged_ok_record_with_the_same_labels(data):
    for atoms in (a for frames in data.values() for a in frames):
        record = _record(atoms)
        assert record["status"] == "ok" and record["attempts"][-1]["error"] is None, atoms.info["source"]
        assert record["spec_hash"] == atoms.info["spec_hash"]
        np.testing.assert_allclose(atoms.positions, record["positions"], atol=1e-6)
        assert atoms.get_potential_energy() == pytest.approx(record["labels"]["energy"], abs=1e-6)
        np.testing.assert_allclose(atoms.get_forces(), record["labels"]["forces"], atol=1e-6)


def test_gpaw_afm_forces_are_balanced_within_the_scf_force_criterion(data):
    """|ΣF| <= N × 1.5 × the spec's force criterion (5 meV/Å per atom, with half again for the real-space grid's
    share of PW-mode GPAW): an unconverged or broken frame is far above (gpaw_nonmag at 350 eV reaches 2.5 eV/Å)."""
    criterion = json.loads((DFT / "raw" / "paired_gpaw_afm" / "run.json").read_text())["spec"]["settings"][
        "convergence"]["forces"]
    for atoms in data["train"] + data["test"]:
        net = np.linalg.norm(atoms.get_forces().sum(axis=0))
        assert net <= 1.5 * criterion * len(atoms), (atoms.info["source"], net)


def test_paired_frames_share_positions_and_cell(data):
    nonmag = {a.info["source"]: a for a in data["nonmag"]}
    pairs = [(a, nonmag[a.info["source"]]) for a in data["train"] if a.info["source"] in nonmag]
    assert len(pairs) >= 80
    for afm, cheap in pairs:
        assert (afm.numbers == cheap.numbers).all()
        np.testing.assert_allclose(afm.positions, cheap.positions, atol=1e-8)
        np.testing.assert_allclose(afm.cell.array, cheap.cell.array, atol=1e-8)


def _sorted_positions(atoms) -> np.ndarray:
    order = np.lexsort(np.round(atoms.get_scaled_positions(wrap=True), 3).T[::-1].tolist() + [atoms.numbers])
    return atoms.get_scaled_positions(wrap=True)[order] @ atoms.cell.array


def test_the_test_split_shares_no_configuration_with_training_or_validation(data):
    seen = data["train"] + data["nonmag"]
    assert not {a.info["config_id"] for a in data["test"]} & {a.info["config_id"] for a in seen}
    index: dict = {}
    for atoms in seen:
        index.setdefault((atoms.get_chemical_formula(), len(atoms)), []).append(_sorted_positions(atoms))
    for atoms in data["test"]:
        mine = _sorted_positions(atoms)
        for other in index.get((atoms.get_chemical_formula(), len(atoms)), []):
            assert np.abs(mine - other).max() > 0.01, atoms.info["source"]
