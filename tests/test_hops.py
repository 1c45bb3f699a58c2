"""Hop counting: nearest-site sequences, transits shorter than the residence time do not count, rates and the
Arrhenius fit of rates."""

import numpy as np
import pytest
from ase import Atoms

from mf_calc.workflows.hops import count_hops, hop_arrhenius, hop_rate, site_sequence


def _trajectory(path_y, rattle=0.05, seed=0):
    """One Li moving along y through sites 3 Å apart in a 12 Å channel, beside a fixed heavy P framework atom."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, y in enumerate(path_y):
        atoms = Atoms("LiP", positions=[[1.0, y + rng.normal(0, rattle), 1.0], [4.0, 0.0, 4.0]], cell=[8.0, 12.0, 8.0],
                      pbc=True)
        atoms.info["md_time_ps"] = 0.01 * k
        frames.append(atoms)
    return frames


SITES = Atoms("Li4", positions=[[1.0, 3.0 * i, 1.0] for i in range(4)], cell=[8.0, 12.0, 8.0], pbc=True)


def test_hops_between_residences_count_and_short_transits_do_not():
    # sites 0 -> 1 -> 2 (each stay 50 frames), a 3-frame excursion to site 3 from site 2, then wrap 3 -> 0 (periodic)
    path = [0.0] * 50 + [3.0] * 50 + [6.0] * 50 + [9.0] * 3 + [6.0] * 50 + [9.0] * 50 + [12.0] * 50
    seq = site_sequence(_trajectory(path), SITES)[:, 0]
    assert list(dict.fromkeys(seq)) == [0, 1, 2, 3]
    assert count_hops(seq[:, None], min_frames=10)[0] == 4  # 0-1, 1-2, 2-3, 3-0 (through the boundary)
    assert count_hops(seq[:, None], min_frames=1)[0] == 6  # the excursion counts twice without a residence time
    rate = hop_rate(_trajectory(path), SITES, min_residence_ps=0.1)
    assert rate["hops"] == 4 and rate["rate_per_ps"] == pytest.approx(4 / (0.01 * (len(path) - 1)))


def test_too_few_sites_are_refused():
    with pytest.raises(ValueError, match="give every site"):
        site_sequence(_trajectory([0.0, 0.0]), Atoms("P", positions=[[4.0, 0.0, 4.0]], cell=[8.0, 12.0, 8.0], pbc=True))


def test_arrhenius_of_hop_rates_recovers_the_barrier():
    from ase.units import kB

    rates = {t: {"rate_per_ps": 10.0 * np.exp(-0.3 / (kB * t)), "rate_err_per_ps": 0.01} for t in (600.0, 800.0, 1000.0)}
    fit = hop_arrhenius(rates)
    assert fit["Ea_eV"] == pytest.approx(0.3, abs=1e-6)
