"""Li vacancy-hop NEB (mf_calc.workflows.neb) on a small cell with few images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mf_calc import MFCalculator, lmfp
from mf_calc.workflows.neb import NEBSettings, check_endpoints, hop_endpoints, neb


def test_hop_endpoints_move_one_li_into_the_vacancy():
    atoms = lmfp(supercell=(1, 1, 2))
    for direction, length in (("010", atoms.cell.lengths()[1] / 2), ("001", atoms.cell.lengths()[2] / 2)):
        initial, final, hop = hop_endpoints(atoms, direction)
        assert len(initial) == len(atoms) - 1 and (initial.numbers == final.numbers).all()
        moved = np.flatnonzero(np.linalg.norm(final.positions - initial.positions, axis=1) > 1e-9)
        assert len(moved) == 1 and initial.numbers[moved[0]] == 3
        assert hop == pytest.approx(length, abs=0.05)
    with pytest.raises(ValueError, match="own periodic image"):
        hop_endpoints(lmfp(supercell=(1, 1, 1)), "001")


def test_endpoints_of_different_composition_are_refused():
    a = lmfp(supercell=(1, 1, 1))
    b = a.copy()
    b.numbers[0] = 11  # Na instead of Li
    with pytest.raises(ValueError, match="differ in composition"):
        check_endpoints(a, b)
    with pytest.raises(ValueError, match="differ in composition"):
        check_endpoints(a, a[1:])


def test_climbing_image_neb_converges_with_the_climbing_image_on_top(warm_model, one_thread):
    initial, final, _ = hop_endpoints(lmfp(supercell=(1, 1, 1)), "010")
    settings = NEBSettings(n_images=3, fmax=0.1, steps=300, endpoint_fmax=0.05)
    result = neb(initial, final, lambda: MFCalculator(warm_model, fidelity="pbe_u"), settings)
    assert result.converged and result.max_force < 0.1
    assert result.climbing_image == int(np.argmax(result.energies)) and 0 < result.climbing_image < 4
    assert 0.05 < result.barrier < 1.5  # a real, positive hop barrier (GGA+U: 0.27 eV in a large cell)
    assert result.energies[0] == 0.0


def test_cli_neb_quick_writes_the_summary_contract(tmp_path, capsys):
    from mf_calc.cli import main

    out = tmp_path / "neb"
    assert main(["neb", "--images", "3", "--fmax", "0.1", "--directions", "010", "--supercell", "1", "1", "1",
                 "--steps", "30",
                 "--fidelity", "pbe_u", "--out", str(out), "--threads", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["barriers_eV"]) == {"pbe_u"} and isinstance(summary["barriers_eV"]["pbe_u"]["010"], float)
    assert (out / "neb_profile.png").is_file() and (out / "path_pbe_u_010.extxyz").is_file()
