"""Which explored frames to label: committee disagreement inside a trust window, diverse picks, a random control.

The committee's force deviation of a frame is DP-GEN's ``max_devi_f``: for each atom i the spread of the K models'
forces, sqrt(mean_k |F_k,i - <F_i>|^2) (eV/Å), and its maximum over the atoms. Frames below the window's lower
bound are ones the models already agree on; frames above its upper bound are usually unphysical (the explorer
went astray) and a DFT run there is wasted. Inside the window the most uncertain frames are picked first, each
at least ``min_distance`` (fingerprint units) from every frame picked before and at most ``per_source`` from one
trajectory (``info["source"]``: sibling frames of one relaxation path teach much the same), up to ``cap``.

Relaxed structures lie below the window by construction (their forces are small for every model), yet they are
what a hull or voltage workflow computes, and there the energy matters: ``endpoints`` adds the end points of up
to that many relaxation paths (``pick_endpoints``), ranked by ``endpoints_by``: ``spread``, the largest committee
energy spread first, or ``hull``, the lowest energy above the end members' tie line by the current model first,
one per Mn content in turn (``mf_calc.learn.tie_line``: the orderings that model would put on its hull).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

ENDPOINT_RANKINGS = ("spread", "hull")


@dataclass(frozen=True)
class SelectSettings:
    """Trust window (eV/Å), picks per round, the diversity threshold (fingerprint distance, 0-2), the most
    picks from one trajectory, and how many relaxed end points to add, ranked how (``spread`` or ``hull``)."""

    lower: float = 0.05
    upper: float = 0.6
    cap: int = 10
    min_distance: float = 0.05
    per_source: int = 2
    endpoints: int = 0
    endpoints_by: str = "spread"

    def __post_init__(self):
        if not 0 <= self.lower < self.upper:
            raise ValueError(f"trust window needs 0 <= lower < upper, got [{self.lower}, {self.upper}]")
        if self.cap < 1 or self.per_source < 1:
            raise ValueError(f"cap and per_source must be >= 1, got {self.cap} and {self.per_source}")
        if self.endpoints < 0:
            raise ValueError(f"endpoints must be >= 0, got {self.endpoints}")
        if self.endpoints_by not in ENDPOINT_RANKINGS:
            raise ValueError(f"endpoints_by must be one of {ENDPOINT_RANKINGS}, got {self.endpoints_by!r}")


def force_deviation(forces: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """max_devi_f (eV/Å) of every frame; ``forces[k][n]`` is model k's (n_atoms, 3) forces on frame n."""
    n_frames = {len(per_model) for per_model in forces}
    if len(forces) < 2 or len(n_frames) != 1:
        raise ValueError("a committee needs at least 2 models with a prediction for every frame")
    out = []
    for n in range(n_frames.pop()):
        stack = np.stack([np.asarray(per_model[n]) for per_model in forces])  # (K, atoms, 3)
        spread = np.sqrt(((stack - stack.mean(0)) ** 2).sum(-1).mean(0))
        out.append(spread.max())
    return np.array(out)


def energy_spread(energies: Sequence[Sequence[float]], frames: Sequence[Atoms]) -> np.ndarray:
    """The committee's standard deviation of the energy per atom (meV/atom) of every frame; ``energies[k][n]`` is
    model k's energy (eV) of frame n."""
    per_atom = np.asarray(energies, dtype=float) / np.array([len(a) for a in frames])
    return 1000.0 * per_atom.std(axis=0)


def relaxation_ends(frames: Sequence[Atoms]) -> list[int]:
    """Index of the last frame of every relaxation path (``info`` kind ``relax``, one path per ``source``)."""
    last = {}
    for index, atoms in enumerate(frames):
        if atoms.info.get("kind") == "relax":
            last[atoms.info.get("source")] = index
    return sorted(last.values())


def fingerprint(atoms: Atoms, cutoff: float = 6.0, bins: int = 50) -> np.ndarray:
    """Unit-length histogram of pair distances per element pair (within ``cutoff`` Å): near-identical structures
    (sibling MD snapshots, the same relaxed ordering) lie close, other compositions and geometries far."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, cutoff)
    z = atoms.numbers
    pairs = sorted({(a, b) for a in set(z.tolist()) for b in set(z.tolist()) if a <= b})
    parts = []
    for a, b in pairs:
        mask = ((z[i] == a) & (z[j] == b)) | ((z[i] == b) & (z[j] == a))
        parts.append(np.histogram(d[mask], bins=bins, range=(0.0, cutoff))[0])
    vector = np.concatenate(parts).astype(float) if parts else np.zeros(1)
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b)) if a.shape == b.shape else np.inf  # other element pairs: far apart


def pick_uncertain(frames: Sequence[Atoms], deviation: np.ndarray, settings: SelectSettings,
                   exclude: Sequence[Atoms] = ()) -> list[int]:
    """Indices of frames to label: inside the trust window, most uncertain first, diverse (also from ``exclude``,
    e.g. frames labelled in earlier rounds), at most ``settings.cap``."""
    inside = np.flatnonzero((deviation >= settings.lower) & (deviation < settings.upper))
    taken = [fingerprint(a) for a in exclude]
    picks: list[int] = []
    per_source: dict = {}
    for index in inside[np.argsort(-deviation[inside], kind="stable")]:
        source = frames[index].info.get("source", index)
        if per_source.get(source, 0) >= settings.per_source:
            continue
        fp = fingerprint(frames[index])
        if all(_distance(fp, other) >= settings.min_distance for other in taken):
            picks.append(int(index))
            taken.append(fp)
            per_source[source] = per_source.get(source, 0) + 1
            if len(picks) == settings.cap:
                break
    return picks


def pick_endpoints(frames: Sequence[Atoms], score: np.ndarray, settings: SelectSettings, taken: Sequence[int] = (),
                   exclude: Sequence[Atoms] = ()) -> list[int]:
    """Up to ``settings.endpoints`` relaxation end points (``relaxation_ends``), largest ``score`` first (e.g. the
    energy spread), none of ``taken`` (indices) and each at least ``min_distance`` from them and from ``exclude``;
    NaN scores are skipped."""
    if not settings.endpoints:
        return []
    ranked = np.full(len(frames), np.nan)
    ends = np.setdiff1d(np.asarray(relaxation_ends(frames), dtype=int), np.asarray(taken, dtype=int))
    ranked[ends] = np.asarray(score, dtype=float)[ends]
    if np.isfinite(ranked).any():
        ranked -= np.nanmin(ranked)  # the same order, inside a window [0, inf)
    choose = SelectSettings(0.0, np.inf, settings.endpoints, settings.min_distance, per_source=1)
    return pick_uncertain(frames, ranked, choose, exclude=[*exclude, *(frames[i] for i in taken)])


def lowest_per_family(frames: Sequence[Atoms], energy: np.ndarray, key: str = "y_mn") -> np.ndarray:
    """A ranking (largest first, NaN where ``energy`` is NaN) that takes the lowest ``energy`` of each family of
    frames (same ``info[key]``, e.g. the Mn content: Li_xFePO4 and Li_x(Mn½Fe½)PO4 have hulls of their own), lowest
    of those first, then each family's second lowest, and so on."""
    energy = np.asarray(energy, dtype=float)
    ranking = np.full(len(frames), np.nan)
    families: dict = {}
    for index in np.flatnonzero(np.isfinite(energy)):
        families.setdefault(frames[index].info.get(key), []).append(index)
    span = np.nanmax(np.abs(energy)) + 1.0 if np.isfinite(energy).any() else 1.0
    for members in families.values():
        for depth, index in enumerate(sorted(members, key=lambda i: energy[i])):
            ranking[index] = -(depth * 2 * span + energy[index])
    return ranking


def pick_random(n_frames: int, count: int, seed: int, avoid: Sequence[int] = ()) -> list[int]:
    """``count`` random frame indices (the control arm at the same DFT budget), none of ``avoid``."""
    pool = np.setdiff1d(np.arange(n_frames), np.asarray(avoid, dtype=int))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(pool, size=min(count, len(pool)), replace=False).tolist())
