"""Site-to-site hops of a diffusing species in MD trajectories: hop rates per temperature and their Arrhenius fit.

An MSD needs many hops of many atoms before it turns linear (and in one-dimensional channels the atoms of a file
move together); counting hops needs neither, so the activation energy of a few atoms over tens of ps is
better resolved from hop rates. Conventions:

- ``sites``: every position the species can occupy (vacant ones included), e.g. the Li of the fully lithiated
  host, as an ``Atoms`` whose fractional coordinates are taken in each frame's cell.
- Each frame, every atom of the species (its drift relative to the framework removed, as in
  :mod:`mf_calc.workflows.msd`) is assigned to its nearest site (minimum image). Stays shorter than
  ``min_residence_ps`` are transits, not residences; a hop is a change of site between two residences.
- Rate k = hops / (atoms × time), in hops per atom per ps, error √max(hops, 1) / (atoms × time) (Poisson).
  Arrhenius: ln k = ln ν − Ea / (k_B T) with :func:`mf_calc.workflows.msd.arrhenius_fit`.
"""

from __future__ import annotations

import numpy as np
from ase.geometry import get_distances

from mf_calc.workflows.msd import arrhenius_fit, frame_times, framework_drift, unwrapped_positions


def site_sequence(frames, sites, species: str = "Li") -> np.ndarray:
    """(n_frames, n_atoms) index of the nearest site of each atom of ``species`` in each frame."""
    symbols = np.array(frames[0].get_chemical_symbols())
    mask = symbols == species
    if not mask.any():
        raise ValueError(f"no {species} atoms in the trajectory")
    site_frac = sites.get_scaled_positions(wrap=True)[np.array(sites.get_chemical_symbols()) == species]
    if len(site_frac) < mask.sum():
        raise ValueError(f"{len(site_frac)} {species} sites for {mask.sum()} {species} atoms: give every site, "
                         "vacant ones included (e.g. the fully lithiated host)")
    positions = unwrapped_positions(frames)
    positions = positions - framework_drift(positions, frames[0].get_masses(), mask)
    out = np.empty((len(frames), int(mask.sum())), dtype=int)
    for k, frame in enumerate(frames):  # minimum-image distances to every site, in this frame's cell
        _, dist = get_distances(positions[k, mask], frame.cell.cartesian_positions(site_frac), frame.cell, True)
        out[k] = dist.argmin(axis=1)
    return out


def count_hops(sequence: np.ndarray, min_frames: int) -> np.ndarray:
    """Hops per atom in a (frames, atoms) site sequence: changes of site between stays of ≥ ``min_frames``."""
    hops = np.zeros(sequence.shape[1], dtype=int)
    for atom in range(sequence.shape[1]):
        s = sequence[:, atom]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        lengths = np.diff(np.r_[starts, len(s)])
        residences = s[starts][lengths >= min_frames]
        hops[atom] = int((residences[1:] != residences[:-1]).sum())
    return hops


def hop_rate(frames, sites, species: str = "Li", min_residence_ps: float = 0.1,
             frame_interval_ps: float | None = None) -> dict:
    """Hops of ``species`` between ``sites`` in one trajectory: count, rate and error (per atom per ps)."""
    times = frame_times(frames, frame_interval_ps)
    if len(times) < 2:
        raise ValueError("a hop rate needs at least two frames")
    dt = float(np.median(np.diff(times)))
    min_frames = max(1, int(round(min_residence_ps / dt)))
    hops = count_hops(site_sequence(frames, sites, species), min_frames)
    exposure = len(hops) * float(times[-1] - times[0])
    total = int(hops.sum())
    return {"hops": total, "hops_per_atom": hops.tolist(), "atoms": len(hops), "duration_ps": float(times[-1] - times[0]),
            "rate_per_ps": total / exposure, "rate_err_per_ps": float(np.sqrt(max(total, 1))) / exposure,
            "min_residence_frames": min_frames}


def hop_arrhenius(rates: dict[float, dict]) -> dict:
    """Arrhenius fit of hop rates by temperature (K -> :func:`hop_rate` result): Ea (eV) and the attempt
    frequency (``D0_cm2_per_s`` of the generic fit holds ν in hops per atom per ps)."""
    temps = sorted(rates)
    return arrhenius_fit(temps, [rates[t]["rate_per_ps"] for t in temps], [rates[t]["rate_err_per_ps"] for t in temps])
