"""Li/vacancy orderings of Li_x M PO4, their relaxed formation energies, the lower convex hull and the voltage.

For a lithiated host (one supercell, its transition-metal arrangement fixed) every Li content x = k/n
(n Li sites) gets its symmetry-distinct orderings: all k-subsets of the Li sites, grouped into orbits of
the host's space-group operations (spglib through pymatgen's ``SpacegroupAnalyzer``; the operations of a
supercell include its internal lattice translations). When C(n, k) is too large to enumerate, random
subsets are drawn and de-duplicated the same way. Each ordering is relaxed (cell and positions); a rerun
reuses finished relaxations (one JSON record per ordering, written atomically).

Energies, per formula unit (fu: one transition-metal site), relative to the two end members E(0), E(1):

    E_f(x) = [E(x) - (1 - x) E(0) - x E(1)] / n_fu                                   (eV / fu)

The lower convex hull of (x, E_f) decides which orderings are stable; between consecutive hull vertices
x_i < x_j the cell voltage (Li metal anode, Li chemical potential μ_Li in eV / atom) is constant:

    V_ij = μ_Li - [E(1) - E(0)] / n_fu - [E_f(x_j) - E_f(x_i)] / (x_j - x_i)          (V)

so without μ_Li the profile is known relative to its mean V̄ = μ_Li - [E(1) - E(0)] / n_fu, and the step
between plateaus (e.g. Fe2+/3+ → Mn2+/3+) does not depend on μ_Li at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
from ase import Atoms

from mf_calc import MFCalculator, load_model
from mf_calc.atomic import write_json
from mf_calc.constants import WARM_STARTS
from mf_calc.workflows.engine import engine_for
from mf_calc.workflows.plots import new_figure, save_figure
from mf_calc.workflows.relax import RelaxSettings, relax

log = logging.getLogger(__name__)

ON_HULL_TOL = 1e-3  # eV / fu: an ordering this close to the hull counts as on it


@dataclass
class Ordering:
    """One Li/vacancy arrangement: the Li sites kept (indices into the host), its x and orbit size."""

    x: float
    kept: tuple[int, ...]
    multiplicity: int | None  # orbit size under the host's symmetry; None when sampled
    atoms: Atoms = field(repr=False)

    @property
    def key(self) -> str:
        """A stable name: Li count and a hash of the unrelaxed structure (cell, numbers, positions)."""
        a = self.atoms
        blob = np.concatenate([a.cell.array.ravel(), a.numbers, a.positions.ravel()]).round(6).tobytes()
        return f"li{len(self.kept):03d}_{hashlib.sha1(blob).hexdigest()[:12]}"


def li_site_permutations(host: Atoms, symprec: float = 1e-3) -> np.ndarray:
    """Permutations of the Li sites (rows: one per space-group operation of the host; values: positions in
    the list of Li sites). Raises ValueError when the host has no Li or an operation does not map the Li
    sites onto themselves."""
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    li = np.flatnonzero(host.numbers == 3)
    if len(li) == 0:
        raise ValueError(f"{host.get_chemical_formula()} has no Li: the hull needs a lithiated host structure")
    frac = host.get_scaled_positions()[li]
    ops = SpacegroupAnalyzer(AseAtomsAdaptor.get_structure(host), symprec=symprec).get_symmetry_operations()
    perms = []
    tol = 10 * symprec / host.cell.lengths().min()
    for op in ops:
        moved = op.operate_multi(frac)
        d = moved[:, None, :] - frac[None, :, :]
        d -= np.round(d)
        match = np.linalg.norm(d, axis=2) < max(tol, 1e-3)
        target = match.argmax(axis=1)
        if not match.any(axis=1).all() or len(set(target.tolist())) != len(li):
            raise ValueError("a symmetry operation of the host does not map its Li sites onto themselves "
                             f"(symprec {symprec} Å): symmetrise the host or loosen symprec")
        perms.append(target)
    return np.unique(np.array(perms), axis=0)


def _canonical(kept: tuple[int, ...], perms: np.ndarray) -> tuple[int, ...]:
    """The smallest image of a set of Li-site positions under the permutations: one name per orbit."""
    images = np.sort(perms[:, list(kept)], axis=1)
    return tuple(min(map(tuple, images.tolist())))


def distinct_orderings(host: Atoms, n_li: int, max_enumerate: int = 20000, symprec: float = 1e-3,
                       seed: int = 0, perms: np.ndarray | None = None) -> list[Ordering]:
    """Symmetry-distinct ways to keep ``n_li`` of the host's Li sites (the others become vacancies).

    All C(n, n_li) subsets are grouped into orbits when there are at most ``max_enumerate``; otherwise
    ``max_enumerate`` random subsets are drawn (``seed``) and de-duplicated (multiplicity None)."""
    li = np.flatnonzero(host.numbers == 3)
    perms = li_site_permutations(host, symprec) if perms is None else perms
    n = len(li)
    if not 0 <= n_li <= n:
        raise ValueError(f"n_li={n_li} outside 0..{n} (Li sites in the host)")
    total = math.comb(n, n_li)
    if total <= max_enumerate:
        subsets, counted = combinations(range(n), n_li), True
    else:
        rng = np.random.default_rng(seed)
        subsets = (tuple(sorted(rng.choice(n, n_li, replace=False).tolist())) for _ in range(max_enumerate))
        counted = False
    orbits: dict[tuple[int, ...], int] = {}
    for kept in subsets:
        rep = _canonical(kept, perms)
        orbits[rep] = orbits.get(rep, 0) + 1
    out = []
    for rep in sorted(orbits):
        drop = np.setdiff1d(li, li[list(rep)])
        atoms = host.copy()
        del atoms[drop.tolist()]
        out.append(Ordering(x=n_li / n, kept=tuple(int(li[i]) for i in rep),
                            multiplicity=orbits[rep] if counted else None, atoms=atoms))
    return out


def lower_hull(x, energy) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the lower convex hull of points (x, energy), sorted by x, and every point's height above
    it (same units as energy). Uses ``scipy.spatial.ConvexHull``; two points far above the ends keep the
    hull two-dimensional when all points are collinear."""
    from scipy.spatial import ConvexHull

    x, energy = np.asarray(x, float), np.asarray(energy, float)
    lo, hi = x.min(), x.max()
    lift = energy.max() + 1.0 + (energy.max() - energy.min())
    pts = np.vstack([np.column_stack([x, energy]), [[lo, lift], [hi, lift]]])
    hull = ConvexHull(pts)
    vertices = [int(v) for v in hull.vertices if v < len(x)]
    # keep the lowest vertex at each x (a vertical hull edge at the ends has two)
    best: dict[float, int] = {}
    for v in vertices:
        if x[v] not in best or energy[v] < energy[best[x[v]]]:
            best[x[v]] = v
    vx = np.array(sorted(best))
    vy = np.array([energy[best[k]] for k in vx])
    above = energy - np.interp(x, vx, vy)
    return np.array([best[k] for k in vx]), above


def voltage_segments(hull_x, hull_ef, e_end_members: tuple[float, float], n_fu: int,
                     mu_li: float | None = None) -> list[dict]:
    """Plateaus between consecutive hull vertices: x range and voltage (V) relative to the mean voltage,
    and the absolute voltage when the Li chemical potential ``mu_li`` (eV / atom) is given.
    e_end_members: total energies (eV) of the delithiated (x = 0) and lithiated (x = 1) cells."""
    e0, e1 = e_end_members
    mean = None if mu_li is None else mu_li - (e1 - e0) / n_fu
    out = []
    for (xa, ea), (xb, eb) in zip(zip(hull_x, hull_ef), zip(hull_x[1:], hull_ef[1:])):
        relative = -(eb - ea) / (xb - xa)
        out.append({"x_from": float(xa), "x_to": float(xb), "relative_V": float(relative),
                    "voltage_V": None if mean is None else float(mean + relative)})
    return out


def redox_step(segments: list[dict], x: float) -> float:
    """Voltage drop (V) across ``x`` in a profile of :func:`voltage_segments`: the plateau just below ``x``
    minus the one just above (0 when one plateau spans ``x``)."""
    def plateau(at):
        return next(s["relative_V"] for s in segments if s["x_from"] <= at <= s["x_to"])

    eps = 1e-6
    return float(plateau(x - eps) - plateau(x + eps))


def relax_orderings(orderings: list[Ordering], calc_factory, folder, settings: RelaxSettings = RelaxSettings(steps=300),
                    engine: str = "ase", progress: bool = True) -> list[dict]:
    """Relax every ordering (cell and positions, ``settings``) with a calculator from ``calc_factory()`` on
    ``engine`` (:mod:`mf_calc.workflows.engine`: ASE one by one, or TorchSim as one batch); each result is a
    JSON record in ``folder`` named by the ordering's key, written as it lands, and a rerun reads it instead
    of relaxing again. Returns the records (x, kept sites, multiplicity, energy_eV, relax summary, relaxed
    structure)."""
    from tqdm.auto import tqdm

    runner = engine_for(engine)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict] = {}
    for o in orderings:
        path = folder / f"{o.key}.json"
        if path.exists():
            record = json.loads(path.read_text())
            if record["fmax"] == settings.fmax:
                records[o.key] = record
    todo = [o for o in orderings if o.key not in records]
    if todo:
        results = runner.relax_each([o.atoms for o in todo], calc_factory(), settings)
        bar = tqdm(zip(todo, results), total=len(todo), desc="relax orderings", unit="cell", disable=not progress,
                   mininterval=1.0)
        for o, (atoms, summary, seconds) in bar:
            records[o.key] = _record(o, atoms, summary, settings.fmax, seconds)
            write_json(folder / f"{o.key}.json", records[o.key])
    return [records[o.key] for o in orderings]


def _record(o: Ordering, relaxed: Atoms, summary: dict, fmax: float, seconds: float) -> dict:
    return {"key": o.key, "x": o.x, "kept_li": list(o.kept), "multiplicity": o.multiplicity, "fmax": fmax,
            "energy_eV": summary["energy_eV"], "converged": summary["converged"], "seconds": seconds,
            "summary": summary, "relaxed": {"numbers": relaxed.numbers.tolist(), "cell": relaxed.cell.array.tolist(),
                                            "positions": relaxed.positions.tolist()}}


def record_atoms(record: dict) -> Atoms:
    """The relaxed structure of a :func:`relax_orderings` record."""
    r = record["relaxed"]
    return Atoms(numbers=r["numbers"], cell=r["cell"], positions=r["positions"], pbc=True)


def stable_structures(result: dict) -> list[Atoms]:
    """The relaxed structures on the hull of a :func:`formation_hull` result, with x, formation energy (eV/fu)
    and key in ``info``."""
    out = []
    for key, x, ef, on in zip(result["keys"], result["x"], result["formation_energy_eV"], result["on_hull"]):
        if on:
            atoms = record_atoms(json.loads((Path(result["folder"]) / f"{key}.json").read_text()))
            atoms.info.update(x=x, formation_energy_eV=ef, key=key)
            out.append(atoms)
    return out


def prescreen(orderings: list[Ordering], calc, keep: int) -> list[Ordering]:
    """The ``keep`` orderings of lowest unrelaxed energy (single points), in their original order."""
    if len(orderings) <= keep:
        return orderings
    energies = []
    for o in orderings:
        a = o.atoms.copy()
        a.calc = calc
        energies.append(a.get_potential_energy())
    chosen = set(np.argsort(energies)[:keep].tolist())
    return [o for i, o in enumerate(orderings) if i in chosen]


@dataclass(frozen=True)
class HullSettings:
    """Which orderings and how they are relaxed. x_values: Li fractions to sample (None: every k / n_Li; 0 and
    1 always). Orderings beyond ``max_per_x`` per x (of at most ``max_enumerate`` enumerated) are pre-screened
    by unrelaxed energy. symprec: Å, for the host's symmetry. fmax (eV/Å) and steps: the relaxation of cell
    and positions; engine: "ase" or "torchsim" (:mod:`mf_calc.workflows.engine`)."""

    x_values: Sequence[float] | None = None
    max_per_x: int = 10
    max_enumerate: int = 20000
    fmax: float = 0.05
    steps: int = 300
    symprec: float = 1e-3
    engine: str = "ase"


def formation_hull(host: Atoms, calc_factory, folder, settings: HullSettings = HullSettings(),
                   mu_li: float | None = None, progress: bool = True) -> dict:
    """Formation-energy hull and voltage profile of Li_x M PO4 from a lithiated ``host`` (Atoms; its TM
    arrangement is kept), every ordering relaxed with a calculator of ``calc_factory()``
    (:func:`relax_orderings`, records in ``folder``). mu_li: μ_Li (eV/atom) for absolute voltages. Results
    (JSON-ready dict):

    x, formation_energy_eV (per fu, every relaxed ordering), e_above_hull_eV, on_hull (bool), keys,
    hull_x, hull_formation_energy_eV, segments (:func:`voltage_segments`), voltage_step_x (x = n_Mn / n_fu,
    where Fe2+/3+ gives way to Mn2+/3+ on charging; None unless both Mn and Fe are present), voltage_step_V
    (:func:`redox_step` there; 0 when the hull has no vertex at that x), mean_voltage_V (None without
    ``mu_li``), n_fu, folder (of the relaxation records), records (per ordering: key, x, multiplicity,
    energy_eV, converged, seconds, oxidation_counts: Fe/Mn oxidation states from the magmoms, where the
    calculator gives them).
    """
    n_fu = int((host.numbers == 15).sum())
    if n_fu == 0:
        raise ValueError(f"{host.get_chemical_formula()} has no P: expected an olivine Li_x M PO4 host")
    candidates = hull_candidates(host, calc_factory, settings)
    records = relax_orderings(candidates, calc_factory, folder, RelaxSettings(settings.fmax, settings.steps),
                              settings.engine, progress)
    return hull_of_records(records, host, mu_li) | {"folder": str(folder)}


def hull_candidates(host: Atoms, calc_factory, settings: HullSettings) -> list[Ordering]:
    """The symmetry-distinct orderings of each Li count the settings ask for, pre-screened beyond max_per_x."""
    perms = li_site_permutations(host, settings.symprec)  # ValueError for a host without Li
    n_li = int((host.numbers == 3).sum())
    x_values = settings.x_values if settings.x_values is not None else np.arange(n_li + 1) / n_li
    for x in x_values:
        if abs(x * n_li - round(x * n_li)) > 1e-6:
            raise ValueError(f"x={x:g} is not a multiple of 1/{n_li} (Li sites in the host)")
    candidates, screen_calc = [], None
    for k in sorted({round(x * n_li) for x in x_values} | {0, n_li}):
        found = distinct_orderings(host, k, max_enumerate=settings.max_enumerate, perms=perms)
        if len(found) > settings.max_per_x:
            screen_calc = screen_calc or calc_factory()
            found = prescreen(found, screen_calc, settings.max_per_x)
        candidates += found
    return candidates


def hull_of_records(records: list[dict], host: Atoms, mu_li: float | None) -> dict:
    """Formation energies, hull and voltage profile of relaxed-ordering records (see :func:`formation_hull`)."""
    n_fu, n_li = int((host.numbers == 15).sum()), int((host.numbers == 3).sum())
    x = np.array([r["x"] for r in records])
    energy = np.array([r["energy_eV"] for r in records])
    e0, e1 = energy[x == 0].min(), energy[x == 1].min()
    ef = (energy - (1 - x) * e0 - x * e1) / n_fu
    vertices, above = lower_hull(x, ef)
    hull_x, hull_ef = x[vertices], ef[vertices]
    segments = voltage_segments(hull_x, hull_ef, (e0, e1), n_fu, mu_li)
    n_mn = int((host.numbers == 25).sum())
    step_x = n_mn / n_fu if 0 < n_mn < n_fu else None
    return {
        "x": x.tolist(), "formation_energy_eV": ef.tolist(), "e_above_hull_eV": above.tolist(),
        "on_hull": (above < ON_HULL_TOL).tolist(), "keys": [r["key"] for r in records],
        "hull_x": hull_x.tolist(), "hull_formation_energy_eV": hull_ef.tolist(), "segments": segments,
        "voltage_step_x": step_x, "voltage_step_V": None if step_x is None else redox_step(segments, step_x),
        "mean_voltage_V": None if mu_li is None else float(mu_li - (e1 - e0) / n_fu),
        "n_fu": n_fu, "n_li_sites": n_li, "mu_li_eV": mu_li,
        "records": [{**{k: r[k] for k in ("key", "x", "multiplicity", "energy_eV", "converged", "seconds")},
                     "oxidation_counts": r["summary"].get("oxidation", {}).get("counts")} for r in records],
    }


def li_metal_chemical_potential(calc, fmax: float = 0.01) -> float:
    """Energy per atom (eV) of bcc Li relaxed (cell and positions) with ``calc``: μ_Li of a Li metal anode."""
    from ase.build import bulk

    relaxed, summary = relax(bulk("Li", "bcc", a=3.44, cubic=True), calc, RelaxSettings(fmax=fmax))
    return float(summary["energy_per_atom_eV"])


def li_chemical_potential(reference: str | None, fidelity: str, fmax: float = 0.01) -> float | None:
    """μ_Li (eV/atom) of bcc Li metal relaxed with ``reference`` (a model name or folder, or 'auto') at
    ``fidelity``; None when no reference is asked for or 'auto' finds no model of that fidelity."""

    if reference is None:
        return None
    if reference == "auto":
        reference = next((name for name, (_, fids) in WARM_STARTS.items() if fidelity in fids), None)
        if reference is None:
            log.warning("note: no shipped model covers Li metal at fidelity %r; voltages are relative", fidelity)
            return None
    model = load_model(reference)
    if fidelity not in model.fidelities.names:
        raise ValueError(f"Li reference model {reference!r} has no fidelity {fidelity!r} "
                         f"(it has {list(model.fidelities.names)})")
    return li_metal_chemical_potential(MFCalculator(model, fidelity=fidelity), fmax=fmax)


def plot_hull(results: dict, png_path) -> str:
    """Formation energies with the hull (top) and the voltage profile (bottom), one colour per fidelity.
    results: {fidelity: formation_hull(...)}."""

    fig = new_figure(figsize=(6, 7))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    absolute = all(r["mean_voltage_V"] is not None for r in results.values())
    for i, (fid, r) in enumerate(results.items()):
        color = f"C{i}"
        x, ef, on = np.array(r["x"]), np.array(r["formation_energy_eV"]) * 1e3, np.array(r["on_hull"])
        ax1.scatter(x[~on], ef[~on], s=14, color=color, alpha=0.5)
        ax1.scatter(x[on], ef[on], s=30, color=color, edgecolor="k")
        ax1.plot(r["hull_x"], np.array(r["hull_formation_energy_eV"]) * 1e3, color=color, label=fid)
        for s in r["segments"]:
            v = s["voltage_V"] if absolute else s["relative_V"]
            ax2.plot([s["x_from"], s["x_to"]], [v, v], color=color, label=fid if s is r["segments"][0] else None)
        for a, b in zip(r["segments"], r["segments"][1:]):
            va, vb = (a["voltage_V"], b["voltage_V"]) if absolute else (a["relative_V"], b["relative_V"])
            ax2.plot([a["x_to"]] * 2, [va, vb], color=color, lw=0.8)
    ax1.axhline(0, color="0.7", lw=0.8)
    ax1.set_ylabel("formation energy (meV / formula unit)")
    ax1.legend()
    ax2.set_xlabel("x in Li$_x$MPO$_4$")
    ax2.set_ylabel("voltage vs Li/Li$^+$ (V)" if absolute else "voltage relative to its mean (V)")
    ax2.legend()
    return save_figure(fig, png_path)
