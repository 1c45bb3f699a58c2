"""Atomic files and strict JSON: an interrupted write leaves the old file, and NaN never reaches a JSON file."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mf_calc.atomic import atomic_write, write_json


def test_write_json_is_strict_and_converts_numpy(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"e": np.float32(1.5), "f": np.arange(3), "nan": math.nan, "inf": [np.inf, 2.0],
                      "path": Path("a/b"), "pair": (1, 2)})
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}")) == {
        "e": 1.5, "f": [0, 1, 2], "nan": None, "inf": [None, 2.0], "path": "a/b", "pair": [1, 2]}


def test_an_interrupted_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("finished work")

    def crash(fh):
        fh.write("half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_text() == "finished work" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
