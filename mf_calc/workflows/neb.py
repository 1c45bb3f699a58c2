"""Vacancy-mediated Li migration barriers by climbing-image NEB (ASE), at any fidelity or with any calculator.

The hop: one Li is removed (the vacancy at site A); the Li at the Li site nearest to A + ``direction`` moves
into A. Both end points are relaxed at fixed cell, the path is interpolated with IDPP and relaxed as a
climbing-image NEB (``ase.mep.NEB``, improved tangent, FIRE). Directions are given in units of the
olivine cell: ``"010"`` is half a b vector (the neighbouring site in the same Li channel, [010]);
``"001"`` is one c vector (the nearest Li site along c, across channels). Energies in eV, lengths in Å.

Reference (LiFePO4): GGA+U NEB along [010] 0.27 eV, across channels ([001]) about 2.5 eV (Morgan,
Van der Ven & Ceder 2004); universal ML potentials give about 0.16 eV along [010].
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import ase.io
import numpy as np
from ase import Atoms

from mf_calc.workflows.plots import new_figure, save_figure

#: direction name -> hop vector in fractional coordinates of the conventional olivine cell
HOPS = {"010": (0.0, 0.5, 0.0), "001": (0.0, 0.0, 1.0)}


@dataclass
class NEBResult:
    """One relaxed path: the images (with energies), the barrier and convergence."""

    direction: str
    images: list[Atoms]
    energies: np.ndarray  # eV, relative to the initial end point
    barrier: float  # eV, max over the band minus the initial end point
    reverse_barrier: float  # eV, max minus the final end point
    climbing_image: int
    converged: bool
    steps: int
    max_force: float  # eV/Å, largest NEB force on the band at the end
    hop_distance: float  # Å, straight-line distance between the two Li sites
    seconds: float
    extra: dict = field(default_factory=dict)


def hop_endpoints(atoms: Atoms, direction: str, vacancy: int | None = None,
                  cells_per_axis=None) -> tuple[Atoms, Atoms, float]:
    """Initial and final structures of a vacancy hop along ``direction`` (``HOPS`` key or a fractional vector of
    the conventional cell), and the hop distance (Å).

    ``vacancy``: index of the Li to remove (default: the first Li). ``cells_per_axis``: repetitions of the
    conventional cell in ``atoms`` (default: from the cell lengths of olivine, a 10.3, b 6.0, c 4.7 Å).
    """
    vec = np.asarray(HOPS.get(direction, direction) if isinstance(direction, str) else direction, dtype=float)
    if vec.shape != (3,):
        raise ValueError(f"unknown hop direction {direction!r}; use one of {list(HOPS)} or 3 fractional numbers")
    li = np.flatnonzero(atoms.numbers == 3)
    if len(li) < 2:
        raise ValueError(f"a Li hop needs at least 2 Li atoms, {atoms.get_chemical_formula()} has {len(li)}")
    if cells_per_axis is None:
        cells_per_axis = np.maximum(1, np.round(atoms.cell.lengths() / np.array([10.3, 6.0, 4.7])))
    vacancy = int(li[0] if vacancy is None else vacancy)
    if vacancy not in li:
        raise ValueError(f"atom {vacancy} is not a Li atom")
    target = atoms.positions[vacancy] + (vec / np.asarray(cells_per_axis, dtype=float)) @ atoms.cell.array
    dist = _mic_distances(atoms, li, target)
    if dist[li == vacancy][0] < 0.5:
        raise ValueError(f"the hop along {direction!r} leads back to the vacancy's own periodic image: the cell is "
                         "too small along that direction")
    dist[li == vacancy] = np.inf
    mover = int(li[np.argmin(dist)])
    if dist.min() > 0.5:
        raise ValueError(f"no Li site within 0.5 Å of the hop target along {direction!r} (nearest {dist.min():.2f} Å)")
    hop = atoms.positions[vacancy] - atoms.positions[mover]
    hop_frac = np.linalg.solve(atoms.cell.array.T, hop)
    hop_frac -= np.round(hop_frac) * atoms.pbc
    hop = hop_frac @ atoms.cell.array
    initial = atoms.copy()
    final = atoms.copy()
    final.positions[mover] = atoms.positions[mover] + hop  # the mover takes the vacant site (nearest image)
    keep = [k for k in range(len(atoms)) if k != vacancy]
    return initial[keep], final[keep], float(np.linalg.norm(hop))


def _mic_distances(atoms: Atoms, indices: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Minimum-image distances (Å) from ``point`` to the atoms ``indices``."""
    frac = np.linalg.solve(atoms.cell.array.T, (atoms.positions[indices] - point).T).T
    frac -= np.round(frac) * atoms.pbc
    return np.linalg.norm(frac @ atoms.cell.array, axis=1)


def check_endpoints(initial: Atoms, final: Atoms) -> None:
    """Refuse end points that are not the same system (composition, atom order, cell)."""
    if len(initial) != len(final) or (initial.numbers != final.numbers).any():
        raise ValueError(f"NEB end points differ in composition or atom order: {initial.get_chemical_formula()} "
                         f"vs {final.get_chemical_formula()}")
    if not np.allclose(initial.cell.array, final.cell.array, atol=1e-6):
        raise ValueError("NEB end points have different cells; a fixed-cell NEB needs the same cell")


@dataclass(frozen=True)
class NEBSettings:
    """Climbing-image NEB: ``n_images`` moving images between the end points, ``fmax`` (eV/Å) and at most
    ``steps`` FIRE steps for the band; the end points first relaxed at fixed cell to ``endpoint_fmax`` when
    ``relax_endpoints``."""

    n_images: int = 5
    fmax: float = 0.05
    steps: int = 500
    relax_endpoints: bool = True
    endpoint_fmax: float = 0.02

    def __post_init__(self):
        if self.n_images < 1:
            raise ValueError(f"n_images must be >= 1, got {self.n_images}")


def neb(initial: Atoms, final: Atoms, make_calc, settings: NEBSettings = NEBSettings(), direction: str = "",
        trajectory=None, logfile=None) -> NEBResult:
    """Climbing-image NEB between ``initial`` and ``final`` (same atoms and cell).

    ``make_calc()`` returns a fresh calculator (each image gets its own; they may share one model).
    ``trajectory``: file for the relaxed path (ASE .traj or .extxyz); ``direction``: a label kept in the result.
    """
    from ase.geometry import find_mic
    from ase.mep import NEB
    from ase.optimize import FIRE

    check_endpoints(initial, final)
    start = time.perf_counter()
    ends = []
    for atoms in (initial, final):
        atoms = atoms.copy()
        atoms.calc = make_calc()
        if settings.relax_endpoints:
            FIRE(atoms, logfile=logfile).run(fmax=settings.endpoint_fmax, steps=settings.steps)
        ends.append(atoms)
    # the final atoms at their images nearest to the initial ones: a continuous path and trajectory
    shift, _ = find_mic(ends[1].positions - ends[0].positions, ends[0].cell, ends[0].pbc)
    ends[1].positions = ends[0].positions + shift
    images = [ends[0]] + [ends[0].copy() for _ in range(settings.n_images)] + [ends[1]]
    for image in images[1:-1]:
        image.calc = make_calc()
    band = NEB(images, climb=True, method="improvedtangent")
    band.interpolate(method="idpp")
    opt = FIRE(band, logfile=logfile)
    converged = bool(opt.run(fmax=settings.fmax, steps=settings.steps))
    energies = np.array([image.get_potential_energy() for image in images])
    top = int(np.argmax(energies))
    max_force = float(np.sqrt((band.get_forces() ** 2).sum(axis=1).max()))
    hop = images[-1].positions - images[0].positions
    result = NEBResult(direction=direction, images=images, energies=energies - energies[0],
                       barrier=float(energies[top] - energies[0]), reverse_barrier=float(energies[top] - energies[-1]),
                       climbing_image=top, converged=converged, steps=opt.nsteps, max_force=max_force,
                       hop_distance=float(np.linalg.norm(hop, axis=1).max()), seconds=time.perf_counter() - start)
    if trajectory is not None:
        ase.io.write(trajectory, [_snapshot(im) for im in images])
    return result


def _snapshot(atoms: Atoms) -> Atoms:
    """A copy that keeps the energy and forces (single-point) for writing."""
    from ase.calculators.singlepoint import SinglePointCalculator

    copy = atoms.copy()
    copy.calc = SinglePointCalculator(copy, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
    return copy


def li_barriers(atoms: Atoms, make_calc, directions=("010", "001"),
                settings: NEBSettings = NEBSettings()) -> dict[str, NEBResult]:
    """Barriers of the vacancy hops along ``directions`` in ``atoms`` (the full, lithiated cell)."""
    results = {}
    for direction in directions:
        initial, final, _ = hop_endpoints(atoms, direction)
        results[direction] = neb(initial, final, make_calc, settings, direction=direction)
    return results


def plot_profiles(results: dict[str, dict[str, NEBResult]], png_path) -> str:
    """Energy along the path (reaction coordinate = cumulative image distance, Å) per fidelity and direction."""

    fig = new_figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for fidelity, by_direction in results.items():
        for direction, r in by_direction.items():
            steps = [np.linalg.norm(b.positions - a.positions) for a, b in zip(r.images[:-1], r.images[1:])]
            x = np.r_[0.0, np.cumsum(steps)]
            ax.plot(x, r.energies, "o-", label=f"{fidelity} [{direction}]  {r.barrier:.2f} eV")
    ax.set_xlabel("reaction coordinate (Å)")
    ax.set_ylabel("energy relative to the initial state (eV)")
    ax.legend(fontsize=8)
    return save_figure(fig, png_path)
