"""Harmonic phonons with phonopy (finite displacements, forces from any ASE calculator).

Band path: for orthorhombic cells (Pnma olivine) the standard path Γ-X-S-Y-Γ-Z-U-R-T-Z|Y-T|U-X|S-R
with X = (½,0,0), Y = (0,½,0), Z = (0,0,½), S = (½,½,0), U = (½,0,½), T = (0,½,½), R = (½,½,½) in
the reciprocal basis of the cell as given (a, b, c not re-ordered). Other cells get the path of their
Bravais lattice from ASE (``Cell.bandpath``, Setyawan-Curtarolo special points) unless ``band_path`` is given.

Imaginary modes are reported as negative frequencies (phonopy convention). Tolerance ``imag_tol_THz``
(default 0.1 THz ≈ 3.3 cm⁻¹): at Γ the three acoustic modes (smallest |f|) are excluded and any other
mode below −tol counts as imaginary; on the band path and mesh, any mode below −tol counts except the
three acoustic branches within a small radius of Γ (|q| < 0.05 in reduced units), where finite
displacement noise is expected. ``stable`` = no imaginary mode beyond that tolerance.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from mf_calc.atomic import write_json
from mf_calc.workflows.io import fidelity_of
from mf_calc.workflows.plots import new_figure, save_figure

ORC_POINTS = {
    "Γ": (0, 0, 0), "X": (0.5, 0, 0), "Y": (0, 0.5, 0), "Z": (0, 0, 0.5),
    "S": (0.5, 0.5, 0), "U": (0.5, 0, 0.5), "T": (0, 0.5, 0.5), "R": (0.5, 0.5, 0.5),
}
ORC_PATH = [["Γ", "X", "S", "Y", "Γ", "Z", "U", "R", "T", "Z"], ["Y", "T"], ["U", "X"], ["S", "R"]]


def _to_phonopy(atoms: Atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.asarray(atoms.cell),
                        scaled_positions=atoms.get_scaled_positions(), masses=atoms.get_masses())


def _to_ase(cell) -> Atoms:
    return Atoms(symbols=cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)


def _is_orthorhombic(cell, tol_deg=0.5) -> bool:
    from ase.cell import Cell

    return bool(np.allclose(Cell(cell).cellpar()[3:], 90.0, atol=tol_deg))


def resolve_primitive_matrix(atoms: Atoms, primitive_matrix="auto", symprec: float = 1e-3):
    """The primitive matrix to give phonopy: ``"P"`` (the cell as given) when ``"auto"`` finds that the cell is
    already primitive, else what was asked for. Phonopy's ``"auto"`` would otherwise relabel the axes of a
    primitive cell into spglib's standard setting (a Pnma olivine cell a, b, c becomes a, c, -b), and the band
    path labels would then refer to other axes than the user's (Y no longer along b, the Li channel)."""
    if not (isinstance(primitive_matrix, str) and primitive_matrix == "auto"):
        return primitive_matrix
    import warnings

    from phonopy import Phonopy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # phonopy warns exactly when "auto" changes the cell
        probe = Phonopy(_to_phonopy(atoms), supercell_matrix=np.eye(3, dtype=int), primitive_matrix="auto",
                        symprec=symprec)
    return "P" if np.isclose(abs(np.linalg.det(probe.primitive_matrix)), 1.0) else "auto"


def default_band_path(primitive_cell):
    """(list of q-point segments, labels) for a primitive cell: the ORC path on the axes as given when
    orthorhombic, else the path of the cell's Bravais lattice from ASE (``Cell.bandpath``)."""
    if _is_orthorhombic(primitive_cell):
        points, path = ORC_POINTS, ORC_PATH
    else:
        from ase.cell import Cell
        from ase.dft.kpoints import parse_path_string

        bandpath = Cell(primitive_cell).bandpath(npoints=0)
        points = {("Γ" if k == "G" else k): tuple(v) for k, v in bandpath.special_points.items()}
        path = [["Γ" if k == "G" else k for k in seg] for seg in parse_path_string(bandpath.path)]
    segments = [[points[k] for k in seg] for seg in path]
    labels = []
    for k, seg in enumerate(path):
        if k == 0:
            labels.extend(seg)
        else:
            labels[-1] = f"{labels[-1]}|{seg[0]}"
            labels.extend(seg[1:])
    return segments, labels


@dataclass(frozen=True)
class PhononSettings:
    """Finite-displacement phonons. supercell: diagonal repetitions (or a 3×3 matrix) for the force constants;
    (1, 2, 2) gives ≥ 9.4 Å in every direction for LiFePO4 (a ≈ 10.4, b ≈ 6.1, c ≈ 4.75 Å). displacement: Å.
    mesh: phonopy mesh (length in Å, or 3 ints) for DOS and thermal properties. band_path: list of segments
    of reduced q-points (None: see the module doc) with ``band_labels``; npoints per segment.
    primitive_matrix and symprec (Å): phonopy's. t_min, t_max, t_step: thermal properties (K).
    imag_tol_THz: see the module doc. subtract_residual_forces: subtract the forces of the undisplaced
    supercell."""

    supercell: Sequence = (1, 2, 2)
    displacement: float = 0.01
    mesh: float | Sequence[int] = 30.0
    band_path: Sequence | None = None
    band_labels: Sequence[str] | None = None
    npoints: int = 51
    primitive_matrix: str | Sequence = "auto"
    symprec: float = 1e-3
    t_min: float = 0.0
    t_max: float = 1000.0
    t_step: float = 10.0
    imag_tol_THz: float = 0.1
    subtract_residual_forces: bool = True

    @property
    def supercell_matrix(self) -> np.ndarray:
        sc = np.asarray(self.supercell)
        return np.diag(sc) if sc.shape == (3,) else sc


def phonons(atoms: Atoms, calc, settings: PhononSettings = PhononSettings(), out=None, progress: bool = True,
            plot: bool = True):
    """Phonons of ``atoms`` (relax it first!) → (phonopy.Phonopy, summary dict).

    Γ frequencies are exact for any supercell; off-Γ ones need force constants that fit in the supercell:
    ``off_gamma_reliable`` (a heuristic) is False when the supercell is thinner than 9 Å in some direction (then
    judge stability from ``n_imaginary_gamma`` only).
    Summary: n_displacements, max frequency (THz, cm⁻¹, meV), min frequency, Γ frequencies, counts of
    imaginary modes (Γ / band path / mesh) with the tolerance used, ``stable``, thermal properties at
    300 K (per unit cell of phonopy's primitive cell: F kJ/mol, S and Cv J/K/mol) and, with ``out``, the
    files written there (phonopy_params.yaml, thermal_properties.csv, plots, phonons.json).
    """
    t0 = time.perf_counter()
    phonon = force_constants(atoms, calc, settings, progress)
    spectra = phonon_spectra(phonon, settings)
    summary = {"formula": atoms.get_chemical_formula(), "n_atoms": len(atoms), "fidelity": fidelity_of(calc),
               "supercell": settings.supercell_matrix.tolist(), "displacement_A": settings.displacement,
               "n_displacements": len(phonon.supercells_with_displacements),
               **frequency_summary(phonon, spectra, settings.imag_tol_THz),
               "supercell_min_width_A": supercell_width(phonon),
               "band_labels": spectra["band_labels"], "thermal_300K": thermal_at(spectra["thermal"], 300.0),
               "thermal_units": "per mol of phonopy primitive cells"}
    summary["off_gamma_reliable"] = bool(summary["supercell_min_width_A"] >= 9.0)
    if out is not None:
        summary |= write_phonons(phonon, spectra, summary, Path(out), plot)
    summary["time_s"] = time.perf_counter() - t0
    if out is not None:
        write_json(Path(out) / "phonons.json", summary)
    return phonon, summary


def force_constants(atoms: Atoms, calc, settings: PhononSettings, progress: bool = True):
    """A phonopy object with the (symmetrised) force constants of ``atoms`` from ``calc``'s forces."""
    from phonopy import Phonopy
    from tqdm.auto import tqdm

    phonon = Phonopy(_to_phonopy(atoms), supercell_matrix=settings.supercell_matrix, symprec=settings.symprec,
                     primitive_matrix=resolve_primitive_matrix(atoms, settings.primitive_matrix, settings.symprec))
    phonon.generate_displacements(distance=settings.displacement)

    def forces_of(cell):
        a = _to_ase(cell)
        a.calc = calc
        return a.get_forces()

    residual = forces_of(phonon.supercell) if settings.subtract_residual_forces else 0.0
    cells = phonon.supercells_with_displacements
    bar = tqdm(cells, desc="phonon displacements", disable=not progress, mininterval=1.0, leave=False)
    phonon.forces = np.array([forces_of(c) - residual for c in bar])
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()
    return phonon


def phonon_spectra(phonon, settings: PhononSettings) -> dict:
    """Band structure, mesh, total DOS and thermal properties (dicts of arrays) and the band labels."""
    from phonopy.phonon.band_structure import get_band_qpoints_and_path_connections

    band_path, band_labels = settings.band_path, settings.band_labels
    if band_path is None:
        band_path, default_labels = default_band_path(phonon.primitive.cell)
        band_labels = band_labels or default_labels
    qpoints, connections = get_band_qpoints_and_path_connections(band_path, npoints=settings.npoints)
    phonon.run_band_structure(qpoints, path_connections=connections, labels=band_labels)
    bs = phonon.band_structure
    phonon.run_mesh(settings.mesh, is_gamma_center=True)
    mesh = {"qpoints": phonon.mesh.qpoints, "frequencies": phonon.mesh.frequencies}
    phonon.run_total_dos()
    phonon.run_thermal_properties(t_min=settings.t_min, t_max=settings.t_max, t_step=settings.t_step,
                                  exclude_gamma_acoustic=True)
    tp = phonon.thermal_properties
    return {"bands": {"qpoints": bs.qpoints, "distances": bs.distances, "frequencies": bs.frequencies},
            "band_labels": band_labels, "mesh": mesh,
            "dos": {"frequency_points": phonon.total_dos.frequency_points, "total_dos": phonon.total_dos.dos},
            "thermal": {"temperatures": tp.temperatures, "free_energy": tp.free_energy, "entropy": tp.entropy,
                        "heat_capacity": tp.heat_capacity}}


def count_imaginary(qpoints, frequencies, tol_THz: float) -> int:
    """Modes below −tol_THz, without the three acoustic ones (smallest |f|) near Γ (|q| < 0.05 reduced)."""
    n = 0
    for q, f in zip(qpoints, frequencies):
        f = np.sort(np.asarray(f))
        if np.linalg.norm(np.asarray(q) - np.round(q)) < 0.05:
            f = np.delete(f, np.argsort(np.abs(f))[:3])
        n += int((f < -tol_THz).sum())
    return n


def frequency_summary(phonon, spectra: dict, tol_THz: float) -> dict:
    """Extreme and Γ frequencies and the counts of imaginary modes (Γ, band path, mesh) with ``stable``."""
    from phonopy.physical_units import get_physical_units

    gamma = np.sort(phonon.run_qpoints([[0, 0, 0]]).frequencies[0])
    acoustic = np.argsort(np.abs(gamma))[:3]
    n_gamma = int((np.delete(gamma, acoustic) < -tol_THz).sum())
    band_q = np.concatenate(spectra["bands"]["qpoints"])
    band_f = np.concatenate(spectra["bands"]["frequencies"])
    mesh_f = spectra["mesh"]["frequencies"]
    n_band = count_imaginary(band_q, band_f, tol_THz)
    n_mesh = count_imaginary(spectra["mesh"]["qpoints"], mesh_f, tol_THz)
    all_f = np.concatenate([band_f.ravel(), np.asarray(mesh_f).ravel()])
    fmax, units = float(all_f.max()), get_physical_units()
    return {"max_frequency_THz": fmax, "max_frequency_cm-1": fmax * units.THzToCm,
            "max_frequency_meV": fmax * units.THzToEv * 1e3, "min_frequency_THz": float(all_f.min()),
            "gamma_frequencies_THz": gamma.tolist(), "gamma_acoustic_max_abs_THz": float(np.abs(gamma[acoustic]).max()),
            "imag_tol_THz": tol_THz, "n_imaginary_gamma": n_gamma, "n_imaginary_band": n_band,
            "n_imaginary_mesh": n_mesh, "stable": n_gamma == 0 and n_band == 0 and n_mesh == 0}


def supercell_width(phonon) -> float:
    """The thinnest width (Å) of the force-constant supercell: distance between opposite faces."""
    cell = np.asarray(phonon.supercell.cell)
    volume = abs(np.linalg.det(cell))
    return float(min(volume / np.linalg.norm(np.cross(cell[i - 2], cell[i - 1])) for i in range(3)))


def thermal_at(thermal: dict, T_K: float) -> dict:
    """Free energy (kJ/mol), entropy and heat capacity (J/K/mol) at the tabulated temperature nearest T_K."""
    T = np.asarray(thermal["temperatures"])
    i = int(np.argmin(np.abs(T - T_K)))
    return {"T_K": float(T[i]), "free_energy_kJ_per_mol": float(thermal["free_energy"][i]),
            "entropy_J_per_K_mol": float(thermal["entropy"][i]),
            "heat_capacity_J_per_K_mol": float(thermal["heat_capacity"][i])}


def write_phonons(phonon, spectra: dict, summary: dict, out: Path, plot: bool) -> dict:
    """phonopy_params.yaml, thermal_properties.csv and (with ``plot``) the plots in ``out``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    phonon.save(str(out / "phonopy_params.yaml"), settings={"force_constants": True})
    thermal = spectra["thermal"]
    np.savetxt(out / "thermal_properties.csv",
               np.column_stack([thermal[k] for k in ("temperatures", "free_energy", "entropy", "heat_capacity")]),
               delimiter=",", header="T_K,free_energy_kJ_per_mol,entropy_J_per_K_mol,heat_capacity_J_per_K_mol",
               comments="")
    paths = {"phonopy_params": str(out / "phonopy_params.yaml")}
    if plot:
        title = summary["formula"] + (f" [{summary['fidelity']}]" if summary["fidelity"] else "")
        paths["band_dos_png"] = plot_bands_dos(spectra["bands"], spectra["band_labels"], spectra["dos"],
                                               out / "phonon_bands_dos.png", title=title)
        paths["thermal_png"] = plot_thermal(thermal, out / "phonon_thermal.png")
    return paths


def plot_bands_dos(bands: dict, labels, dos: dict, png_path, title=None) -> str:
    """Band structure (THz, with a cm⁻¹ axis) next to the total DOS."""

    fig = new_figure(figsize=(8, 4.5))
    gs = fig.add_gridspec(1, 2, width_ratios=[3, 1], wspace=0.05)
    ax, axd = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    ticks = []
    for d, f in zip(bands["distances"], bands["frequencies"]):
        ax.plot(d, f, "C0-", lw=0.8)
        ticks.append(d[0])
    ticks.append(bands["distances"][-1][-1])
    # collapse ticks at path breaks (same distance)
    uniq = [ticks[0]] + [t for prev, t in zip(ticks, ticks[1:]) if abs(t - prev) > 1e-9]
    if labels is not None and len(labels) == len(uniq):
        ax.set_xticks(uniq)
        ax.set_xticklabels(labels)
    for t in uniq:
        ax.axvline(t, color="0.7", lw=0.5)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlim(uniq[0], uniq[-1])
    ax.set_ylabel("frequency (THz)")
    axd.plot(dos["total_dos"], dos["frequency_points"], "k-", lw=0.8)
    axd.set_ylim(ax.get_ylim())
    axd.tick_params(labelleft=False)
    axd.set_xlabel("DOS")
    from phonopy.physical_units import get_physical_units

    thz_to_cm = get_physical_units().THzToCm
    sec = axd.secondary_yaxis("right", functions=(lambda x: x * thz_to_cm, lambda x: x / thz_to_cm))
    sec.set_ylabel("frequency (cm⁻¹)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.savefig(png_path, dpi=110, bbox_inches="tight")
    return str(png_path)


def plot_thermal(thermal: dict, png_path) -> str:
    """Helmholtz free energy, entropy and heat capacity vs temperature."""

    fig = new_figure(figsize=(5.5, 4))
    ax = fig.subplots()
    T = thermal["temperatures"]
    ax.plot(T, thermal["free_energy"], label="F (kJ/mol)")
    ax.plot(T, thermal["entropy"], label="S (J/K/mol)")
    ax.plot(T, thermal["heat_capacity"], label="Cv (J/K/mol)")
    ax.set_xlabel("T (K)")
    ax.legend(fontsize=8)
    ax.set_title("harmonic thermal properties (per mol of cells)", fontsize=9)
    return save_figure(fig, png_path)
