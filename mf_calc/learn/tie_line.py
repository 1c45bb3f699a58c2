"""Where a relaxed Li ordering lies against its end members by one model: its energy above their tie line.

For a relaxed Li_x M PO4 structure (n_fu transition-metal sites, x n_fu Li), the same cell with every Li site
emptied and with every Li site filled (the transition-metal arrangement unchanged) are relaxed with the same
calculator, and

    E_f = [E(x) - (1 - x) E(0) - x E(1)] / n_fu                                      (eV / fu)

is what that model's hull says of the ordering (the formation energy of ``mf_calc.workflows.hull``): below zero
the ordering makes the model's hull between the end members. The orderings a model puts lowest are where a false
hull comes from, so an active-learning round can label those (the ground-state search of cluster-expansion
fitting) rather than the ones its committee disagrees on most.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.geometry import get_distances

from mf_calc.structures import check_supercell, olivine_cell
from mf_calc.workflows.relax import RelaxSettings, relax

LI = 3
TRANSITION_METALS = (25, 26)  # Mn, Fe
SITE_TOLERANCE = 1.2  # Å: a Li farther than this from every olivine Li site is not on one


def _li_sites(atoms: Atoms, supercell) -> np.ndarray:
    """Fractional positions of the olivine Li sites of ``supercell`` (one per transition-metal site)."""
    template = olivine_cell().repeat(check_supercell(supercell))
    sites = template.get_scaled_positions()[template.numbers == LI]
    n_tm = int(np.isin(atoms.numbers, TRANSITION_METALS).sum())
    if len(sites) != n_tm:
        raise ValueError(f"{atoms.get_chemical_formula()} has {n_tm} Mn/Fe sites, but an olivine {tuple(supercell)} "
                         f"supercell has {len(sites)}: not a Li_x M PO4 cell of that supercell")
    return sites


def _occupied_sites(atoms: Atoms, sites: np.ndarray) -> np.ndarray:
    """Index of the Li site each Li of ``atoms`` sits on; ValueError when one sits on none or two share one."""
    li = atoms.positions[atoms.numbers == LI]
    if not len(li):
        return np.zeros(0, dtype=int)
    _, distances = get_distances(li, sites @ atoms.cell.array, cell=atoms.cell, pbc=True)
    nearest = distances.argmin(axis=1)
    if distances.min(axis=1).max() > SITE_TOLERANCE or len(set(nearest.tolist())) != len(nearest):
        raise ValueError(f"the Li of {atoms.get_chemical_formula()} are not on distinct olivine Li sites "
                         f"(within {SITE_TOLERANCE} Å)")
    return nearest


def end_members(atoms: Atoms, supercell) -> tuple[Atoms, Atoms]:
    """``atoms`` with every Li removed, and with a Li added on every empty olivine Li site of ``supercell``
    (fractional site positions in this cell); the other atoms as they are."""
    sites = _li_sites(atoms, supercell)
    empty_sites = np.setdiff1d(np.arange(len(sites)), _occupied_sites(atoms, sites))
    full = atoms.copy()
    full.calc = None
    full.extend(Atoms(numbers=[LI] * len(empty_sites), scaled_positions=sites[empty_sites], cell=atoms.cell, pbc=True))
    empty = atoms[atoms.numbers != LI]
    empty.calc = None
    return empty, full


def above_tie_line(atoms: Atoms, calc, supercell, settings: RelaxSettings = RelaxSettings(steps=300),
                   cache: dict | None = None) -> float:
    """E_f (eV/fu) of ``atoms`` as it is (already relaxed) against its end members relaxed with ``calc`` and
    ``settings``; ``cache`` keeps end-member energies per supercell and transition-metal arrangement."""
    empty, full = end_members(atoms, supercell)
    key = (tuple(check_supercell(supercell)), empty.numbers.tobytes())
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = tuple(relax(a, calc, settings)[0].get_potential_energy() for a in (empty, full))
    e_empty, e_full = cache[key]
    n_fu = int(np.isin(atoms.numbers, TRANSITION_METALS).sum())
    x = float((atoms.numbers == LI).sum()) / n_fu
    probe = atoms.copy()
    probe.calc = calc
    return (probe.get_potential_energy() - (1 - x) * e_empty - x * e_full) / n_fu


def tie_line_scores(frames: Sequence[Atoms], indices: Sequence[int], calc,
                    settings: RelaxSettings = RelaxSettings(steps=300)) -> np.ndarray:
    """``above_tie_line`` (meV/fu) of the frames at ``indices`` (each with ``info["supercell"]``), NaN elsewhere."""
    scores = np.full(len(frames), np.nan)
    cache: dict = {}
    for index in indices:
        atoms = frames[index]
        if "supercell" not in atoms.info:
            raise ValueError(f"frame {index} has no info['supercell']: its end members are not defined")
        scores[index] = 1000.0 * above_tie_line(atoms, calc, atoms.info["supercell"], settings, cache)
    return scores
