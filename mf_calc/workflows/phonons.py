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


def phonons(
    atoms: Atoms,
    calc,
    supercell=(1, 2, 2),
    displacement: float = 0.01,
    mesh=30.0,
    band_path=None,
    band_labels=None,
    npoints: int = 51,
    primitive_matrix="auto",
    symprec: float = 1e-3,
    t_min: float = 0.0,
    t_max: float = 1000.0,
    t_step: float = 10.0,
    imag_tol_THz: float = 0.1,
    subtract_residual_forces: bool = True,
    out=None,
    progress: bool = True,
    plot: bool = True,
):
    """Phonons of ``atoms`` (relax it first!) → (phonopy.Phonopy, summary dict).

    supercell: diagonal repetitions (or a 3×3 matrix) for the force constants; (1, 2, 2) gives
    ≥ 9.4 Å in every direction for LiFePO4 (a ≈ 10.4, b ≈ 6.1, c ≈ 4.75 Å). displacement in Å.
    mesh: phonopy mesh (length in Å, or 3 ints) for DOS and thermal properties. band_path: list of
    segments of reduced q-points (default see module doc) with ``band_labels``.
    Forces of the undisplaced supercell are subtracted (``subtract_residual_forces``).
    Γ frequencies are exact for any supercell; off-Γ ones need force constants that fit in the supercell:
    ``off_gamma_reliable`` (a heuristic) is False when the supercell is thinner than 9 Å in some direction (then
    judge stability from ``n_imaginary_gamma`` only).
    Summary: n_displacements, max frequency (THz, cm⁻¹, meV), min frequency, Γ frequencies, counts of
    imaginary modes (Γ / band path / mesh) with the tolerance used, ``stable``, thermal properties at
    300 K (per unit cell of phonopy's primitive cell: F kJ/mol, S and Cv J/K/mol) and output paths.
    """
    from phonopy import Phonopy
    from phonopy.physical_units import get_physical_units
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    sc = np.asarray(supercell)
    sc_matrix = np.diag(sc) if sc.shape == (3,) else sc
    phonon = Phonopy(_to_phonopy(atoms), supercell_matrix=sc_matrix, symprec=symprec,
                     primitive_matrix=resolve_primitive_matrix(atoms, primitive_matrix, symprec))
    phonon.generate_displacements(distance=displacement)
    cells = phonon.supercells_with_displacements

    def forces_of(cell):
        a = _to_ase(cell)
        a.calc = calc
        return a.get_forces()

    residual = forces_of(phonon.supercell) if subtract_residual_forces else 0.0
    bar = tqdm(cells, desc="phonon displacements", disable=not progress, mininterval=1.0, leave=False)
    forces = [forces_of(c) - residual for c in bar]
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()

    # band structure
    if band_path is None:
        band_path, default_labels = default_band_path(phonon.primitive.cell)
        band_labels = band_labels or default_labels
    from phonopy.phonon.band_structure import get_band_qpoints_and_path_connections

    qpoints, connections = get_band_qpoints_and_path_connections(band_path, npoints=npoints)
    phonon.run_band_structure(qpoints, path_connections=connections, labels=band_labels)
    bs = phonon.band_structure
    bands = {"qpoints": bs.qpoints, "distances": bs.distances, "frequencies": bs.frequencies}
    # mesh, DOS, thermal
    phonon.run_mesh(mesh, is_gamma_center=True)
    mesh_q, mesh_f = phonon.mesh.qpoints, phonon.mesh.frequencies
    phonon.run_total_dos()
    dos = {"frequency_points": phonon.total_dos.frequency_points, "total_dos": phonon.total_dos.dos}
    phonon.run_thermal_properties(t_min=t_min, t_max=t_max, t_step=t_step, exclude_gamma_acoustic=True)
    tp = phonon.thermal_properties
    thermal = {"temperatures": tp.temperatures, "free_energy": tp.free_energy, "entropy": tp.entropy,
               "heat_capacity": tp.heat_capacity}

    gamma = np.sort(phonon.run_qpoints([[0, 0, 0]]).frequencies[0])
    acoustic = np.argsort(np.abs(gamma))[:3]
    optical = np.delete(gamma, acoustic)
    n_imag_gamma = int((optical < -imag_tol_THz).sum())

    def count_imag(qs, freqs):
        n = 0
        for q, f in zip(qs, freqs):
            f = np.sort(np.asarray(f))
            if np.linalg.norm(np.asarray(q) - np.round(q)) < 0.05:
                f = np.delete(f, np.argsort(np.abs(f))[:3])
            n += int((f < -imag_tol_THz).sum())
        return n

    band_q = np.concatenate(bands["qpoints"])
    band_f = np.concatenate(bands["frequencies"])
    n_imag_band = count_imag(band_q, band_f)
    n_imag_mesh = count_imag(mesh_q, mesh_f)
    all_f = np.concatenate([band_f.ravel(), np.asarray(mesh_f).ravel()])
    fmax, fmin = float(all_f.max()), float(all_f.min())
    T = np.asarray(thermal["temperatures"])
    i300 = int(np.argmin(np.abs(T - 300.0)))

    sc_cell = np.asarray(phonon.supercell.cell)
    vol = abs(np.linalg.det(sc_cell))
    width = min(vol / np.linalg.norm(np.cross(sc_cell[i - 2], sc_cell[i - 1])) for i in range(3))
    summary = {
        "formula": atoms.get_chemical_formula(),
        "n_atoms": len(atoms),
        "fidelity": fidelity_of(calc),
        "supercell": sc_matrix.tolist(),
        "displacement_A": displacement,
        "n_displacements": len(cells),
        "max_frequency_THz": fmax,
        "max_frequency_cm-1": fmax * get_physical_units().THzToCm,
        "max_frequency_meV": fmax * get_physical_units().THzToEv * 1e3,
        "min_frequency_THz": fmin,
        "gamma_frequencies_THz": gamma.tolist(),
        "gamma_acoustic_max_abs_THz": float(np.abs(gamma[acoustic]).max()),
        "imag_tol_THz": imag_tol_THz,
        "n_imaginary_gamma": n_imag_gamma,
        "n_imaginary_band": n_imag_band,
        "n_imaginary_mesh": n_imag_mesh,
        "stable": n_imag_gamma == 0 and n_imag_band == 0 and n_imag_mesh == 0,
        "supercell_min_width_A": float(width),
        "off_gamma_reliable": bool(width >= 9.0),
        "band_labels": band_labels,
        "thermal_300K": {
            "T_K": float(T[i300]),
            "free_energy_kJ_per_mol": float(thermal["free_energy"][i300]),
            "entropy_J_per_K_mol": float(thermal["entropy"][i300]),
            "heat_capacity_J_per_K_mol": float(thermal["heat_capacity"][i300]),
        },
        "thermal_units": "per mol of phonopy primitive cells",
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        phonon.save(str(out / "phonopy_params.yaml"), settings={"force_constants": True})
        summary["phonopy_params"] = str(out / "phonopy_params.yaml")
        np.savetxt(out / "thermal_properties.csv",
                   np.column_stack([T, thermal["free_energy"], thermal["entropy"], thermal["heat_capacity"]]),
                   delimiter=",", header="T_K,free_energy_kJ_per_mol,entropy_J_per_K_mol,heat_capacity_J_per_K_mol",
                   comments="")
        if plot:
            summary["band_dos_png"] = plot_bands_dos(bands, band_labels, dos, out / "phonon_bands_dos.png",
                                                     title=summary["formula"] + (f" [{summary['fidelity']}]"
                                                                                 if summary["fidelity"] else ""))
            summary["thermal_png"] = plot_thermal(thermal, out / "phonon_thermal.png")
    summary["time_s"] = time.perf_counter() - t0
    if out is not None:
        write_json(Path(out) / "phonons.json", summary)
    return phonon, summary


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
