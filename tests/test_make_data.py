"""benchmarks/make_data.py at a tiny size: files, labels per fidelity, pairing, split, determinism, resume."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mf_calc.data import read_frames

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "make_data.py"
TINY = ["--n-high", "6", "--n-low", "4", "--n-paired", "2", "--md-equil", "2", "--md-every", "1",
        "--md-snapshots", "2", "--n-check", "2", "--chunk-size", "3"]
FILES = {"lmfp_r2scan_train": "r2scan", "lmfp_r2scan_test": "r2scan", "lmfp_pbe_u_train": "pbe_u",
         "lmfp_paired_r2scan": "r2scan", "lmfp_paired_pbe_u": "pbe_u"}


@pytest.fixture(scope="module")
def make_data():
    spec = importlib.util.spec_from_file_location("make_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(make_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    make_data.main(TINY + ["--out", str(out)])
    return out, {stem: read_frames(out / f"{stem}.extxyz.gz") for stem in FILES}


def test_files_labels_and_compositions(generated):
    out, data = generated
    assert (out / "DATA_CARD.md").is_file() and not (out / ".chunks").exists()
    assert "not from DFT**" in (out / "DATA_CARD.md").read_text()
    assert {k: len(v) for k, v in data.items()} == {"lmfp_r2scan_train": 5, "lmfp_r2scan_test": 1,
                                                    "lmfp_pbe_u_train": 4, "lmfp_paired_r2scan": 2,
                                                    "lmfp_paired_pbe_u": 2}
    kinds = set()
    for stem, fidelity in FILES.items():
        for f in data[stem]:
            info = f.atoms.info
            assert f.fidelity == fidelity == info["fidelity"]
            assert f.energy is not None and f.forces is not None and f.stress is not None
            assert (f.magmoms is None) == (fidelity == "pbe_u")
            counts = {z: int(np.sum(f.atoms.numbers == z)) for z in (3, 8, 15, 25, 26)}
            assert len(f.atoms) <= 56 and counts[15] == 8 and counts[8] == 32 and counts[25] + counts[26] == 8
            assert counts[3] / 8 == info["x_li"] and counts[25] / 8 == info["y_mn"]
            assert info["kind"] in ("rattle", "md") and (("T_K" in info) == (info["kind"] == "md"))
            kinds.add(info["kind"])
    assert kinds == {"rattle", "md"}


def test_paired_and_split(generated):
    _, data = generated
    lo, hi = data["lmfp_paired_pbe_u"], data["lmfp_paired_r2scan"]
    for a, b in zip(lo, hi):
        assert a.atoms.info["config_id"] == b.atoms.info["config_id"]
        np.testing.assert_array_equal(a.atoms.numbers, b.atoms.numbers)
        np.testing.assert_array_equal(a.atoms.positions, b.atoms.positions)
        assert a.energy != b.energy
    ids = {stem: {f.atoms.info["config_id"] for f in frames} for stem, frames in data.items()}
    assert not ids["lmfp_r2scan_test"] & ids["lmfp_r2scan_train"]
    assert not (ids["lmfp_r2scan_train"] | ids["lmfp_r2scan_test"]) & ids["lmfp_pbe_u_train"]
    assert not ids["lmfp_paired_r2scan"] & (ids["lmfp_r2scan_train"] | ids["lmfp_pbe_u_train"])


def test_deterministic_and_resumable(make_data, generated, tmp_path, monkeypatch):
    out, data = generated
    work, real, calls = tmp_path / ".chunks", make_data.structure, []

    def interrupted(*args):
        if len(calls) == 4:
            raise RuntimeError("interrupted")
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(make_data, "structure", interrupted)
    with pytest.raises(RuntimeError, match="interrupted"):
        make_data.main(TINY + ["--out", str(tmp_path)])
    finished = sorted(work.glob("*.extxyz"))
    assert finished and not list(tmp_path.glob("*.gz"))
    monkeypatch.setattr(make_data, "structure", real)
    make_data.main(TINY + ["--out", str(tmp_path)])  # resumes: finished chunks kept, the rest made
    for stem in FILES:  # same bytes as the uninterrupted run
        assert (tmp_path / f"{stem}.extxyz.gz").read_bytes() == (out / f"{stem}.extxyz.gz").read_bytes()
    again = {stem: read_frames(tmp_path / f"{stem}.extxyz.gz") for stem in FILES}
    for stem in FILES:
        for a, b in zip(data[stem], again[stem]):
            np.testing.assert_array_equal(a.atoms.positions, b.atoms.positions)
            assert a.energy == b.energy


def test_refuses_chunks_of_other_parameters(make_data, tmp_path):
    (tmp_path / ".chunks").mkdir()
    (tmp_path / ".chunks" / "params.json").write_text('{"seed": 1}')
    with pytest.raises(SystemExit, match="other parameters"):
        make_data.main(TINY + ["--out", str(tmp_path)])
