"""Li/vacancy hull and voltage (mf_calc.workflows.hull, mf-calc hull): enumeration against pymatgen's
StructureMatcher, the hull and voltage arithmetic, the hull of a toy energy against brute force, reuse of
finished relaxations, and clear errors."""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes

from mf_calc import lmfp
from mf_calc.cli import main
from mf_calc.workflows.hull import (
    HullSettings,
    distinct_orderings,
    formation_hull,
    li_site_permutations,
    lower_hull,
    redox_step,
    voltage_segments,
)


class LiPairEnergy(Calculator):
    """Toy energy: a constant per element plus ``j`` per Li-Li pair closer than ``cutoff`` Å (minimum image);
    zero forces and stress, so a relaxation stops at once and the hull is that of this energy."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]
    calls = 0

    def __init__(self, j=0.05, cutoff=5.0):
        super().__init__()
        self.j, self.cutoff = j, cutoff

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        LiPairEnergy.calls += 1
        li = np.flatnonzero(self.atoms.numbers == 3)
        pairs = sum(self.atoms.get_distance(a, b, mic=True) < self.cutoff for a, b in combinations(li, 2))
        e = -1.9 * len(li) - 0.5 * len(self.atoms) + self.j * pairs
        self.results = {"energy": e, "free_energy": e, "forces": np.zeros((len(self.atoms), 3)),
                        "stress": np.zeros(6)}


def test_orbits_match_structure_matcher_and_count_every_subset():
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    for host in (lmfp(supercell=(1, 1, 1)), lmfp(y_mn=0.5, supercell=(1, 1, 1), seed=0)):
        li = np.flatnonzero(host.numbers == 3)
        perms = li_site_permutations(host)
        for k in range(len(li) + 1):
            orbits = distinct_orderings(host, k, perms=perms)
            assert sum(o.multiplicity for o in orbits) == math.comb(len(li), k)
            every = []
            for kept in combinations(li, k):
                a = host.copy()
                del a[sorted(set(li) - set(kept))]
                every.append(AseAtomsAdaptor.get_structure(a))
            matcher = StructureMatcher(primitive_cell=False, scale=False, attempt_supercell=False)
            groups = matcher.group_structures(every)
            assert len(orbits) == len(groups), (host.get_chemical_formula(), k)


def test_sampling_when_enumeration_explodes():
    host = lmfp(supercell=(1, 2, 1))
    exact = distinct_orderings(host, 4)
    sampled = distinct_orderings(host, 4, max_enumerate=20, seed=1)
    assert all(o.multiplicity is None for o in sampled) and 1 <= len(sampled) <= len(exact)
    assert {o.kept for o in sampled} <= {o.kept for o in exact}  # canonical representatives of the same orbits


def test_lower_hull_and_voltages():
    x = np.array([0, 0.25, 0.5, 0.5, 0.75, 1])
    ef = np.array([0, -0.02, -0.03, 0.01, 0.0, 0])
    vertices, above = lower_hull(x, ef)
    assert x[vertices].tolist() == [0, 0.25, 0.5, 1]
    assert above[3] == pytest.approx(0.04) and above[4] == pytest.approx(0.015) and (above >= -1e-12).all()
    _, flat = lower_hull([0, 0.5, 1], [0, 0, 0])  # collinear points: one segment, nothing above it
    assert np.allclose(flat, 0)
    # voltages against the definition with total energies: V = -(E(x2) - E(x1) - Δx n_fu μ) / (Δx n_fu)
    n_fu, e0, e1, mu = 4, -100.0, -120.0, -1.9
    hx, hef = x[vertices], ef[vertices]
    total = (1 - hx) * e0 + hx * e1 + n_fu * hef
    segs = voltage_segments(hx, hef, (e0, e1), n_fu, mu_li=mu)
    for s, (ea, eb), (xa, xb) in zip(segs, zip(total, total[1:]), zip(hx, hx[1:])):
        assert s["voltage_V"] == pytest.approx(-(eb - ea - (xb - xa) * n_fu * mu) / ((xb - xa) * n_fu))
    mean = mu - (e1 - e0) / n_fu
    assert np.average([s["voltage_V"] for s in segs], weights=np.diff(hx)) == pytest.approx(mean)
    assert voltage_segments(hx, hef, (e0, e1), n_fu)[0]["voltage_V"] is None
    assert redox_step(segs, 0.5) == pytest.approx(segs[1]["relative_V"] - segs[2]["relative_V"])
    assert redox_step(segs, 0.75) == 0.0


@pytest.mark.parametrize("j", [0.05, -0.05])
def test_hull_of_a_toy_energy_equals_brute_force_and_reruns_reuse(j, tmp_path):
    host = lmfp(supercell=(1, 2, 1))
    LiPairEnergy.calls = 0
    result = formation_hull(host, lambda: LiPairEnergy(j), tmp_path / "relaxed", HullSettings(max_per_x=100), progress=False)
    li = np.flatnonzero(host.numbers == 3)
    n_fu = 8
    e = {}
    for k in range(len(li) + 1):  # every subset, no symmetry
        for kept in combinations(li, k):
            a = host.copy()
            del a[sorted(set(li) - set(kept))]
            a.calc = LiPairEnergy(j)
            e[k] = min(e.get(k, np.inf), a.get_potential_energy())
    xs = np.arange(len(li) + 1) / len(li)
    brute = np.array([(e[k] - (1 - x) * e[0] - x * e[len(li)]) / n_fu for k, x in enumerate(xs)])
    for k, x in enumerate(xs):
        assert min(f for xx, f in zip(result["x"], result["formation_energy_eV"]) if xx == x) == pytest.approx(brute[k])
    # Li-Li repulsion orders the Li (intermediate orderings below the end members' tie line); attraction
    # phase-separates (none below it)
    below = [x for x, f in zip(result["x"], result["formation_energy_eV"]) if f < -1e-3]
    assert (len(below) > 0) == (j > 0)
    assert sorted(result["hull_x"]) == result["hull_x"] and {0.0, 1.0} <= set(result["hull_x"])
    assert result["voltage_step_V"] is None and len(result["segments"]) == len(result["hull_x"]) - 1
    calls = LiPairEnergy.calls
    again = formation_hull(host, lambda: LiPairEnergy(j), tmp_path / "relaxed", HullSettings(max_per_x=100), progress=False)
    assert LiPairEnergy.calls == calls and again["formation_energy_eV"] == result["formation_energy_eV"]


def test_mixed_host_step_and_prescreen(tmp_path):
    host = lmfp(y_mn=0.5, supercell=(1, 1, 1), seed=0)
    result = formation_hull(host, lambda: LiPairEnergy(0.05), tmp_path, HullSettings(max_per_x=1), progress=False)
    assert result["voltage_step_x"] == 0.5 and result["voltage_step_V"] is not None
    assert sorted(result["x"]) == [0, 0.25, 0.5, 0.75, 1]  # one ordering per x after the pre-screen


def test_bad_hosts_are_refused(tmp_path):
    with pytest.raises(ValueError, match="has no Li"):
        formation_hull(lmfp(x_li=0.0, supercell=(1, 1, 1)), LiPairEnergy, tmp_path)
    with pytest.raises(ValueError, match="not a multiple of 1/4"):
        formation_hull(lmfp(supercell=(1, 1, 1)), LiPairEnergy, tmp_path, HullSettings(x_values=[0.3]))
    with pytest.raises(ValueError, match="n_li=5 outside"):
        distinct_orderings(lmfp(supercell=(1, 1, 1)), 5)


def test_cli_hull_writes_the_summary_contract(tmp_path, capsys, one_thread):
    from conftest import tiny_model

    model = tiny_model(fidelities=("low", "high"))
    model.save(tmp_path / "m")
    out = tmp_path / "o"
    rc = main(["hull", "--quick", "--steps", "2", "--model", str(tmp_path / "m"), "--fidelity", "all",
               "--y-mn", "0.5", "--mu-li", "-1.9", "--out", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["on_hull_x"]) == {"low", "high"}
    for fid in ("low", "high"):
        assert {0.0, 1.0} <= set(summary["on_hull_x"][fid])
        assert isinstance(summary["voltage_step_V"][fid], float) and summary["mu_li_eV"][fid] == -1.9
        assert len(summary["formation_energy_eV"][fid]) == len(summary["x"][fid])
    assert (out / "hull.png").exists() and (out / "hull_high.extxyz").exists()
    rc = main(["hull", "--quick", "--model", str(tmp_path / "m"), "--fidelity", "medium", "--out", str(out)])
    assert rc == 2 and "unknown fidelity 'medium'" in capsys.readouterr().err
