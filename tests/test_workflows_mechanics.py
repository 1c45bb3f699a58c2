"""Workflow mechanics with cheap ASE calculators (EMT, Lennard-Jones) and synthetic data: no model needed.

MD integrators, trajectory/CSV logging and restarts, MSD / D / Arrhenius analysis, phonons, CLI errors.
"""

import math

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT

from mf_calc.workflows import arrhenius_fit, msd_analysis, phonons, relax, run_md
from mf_calc.workflows.md import MDOutput, MDSettings, read_md_log
from mf_calc.workflows.msd import Trajectory, unwrapped_positions
from mf_calc.workflows.phonons import PhononSettings
from mf_calc.workflows.relax import RelaxSettings

NO_FILES = MDOutput(None, None, progress=False)


def cu_cell(rep=(2, 2, 2)):
    return bulk("Cu", "fcc", a=3.61, cubic=True).repeat(rep)


# ----------------------------------------------------------------------------- MD
def test_nve_energy_drift_emt(tmp_path):
    """Velocity Verlet, 1 fs, 300 steps of 32-atom EMT Cu at 300 K: |E_tot(t) − E_tot(0)| < 1 meV/atom."""
    atoms, s = run_md(cu_cell(), EMT(), MDSettings("nve", temperature_K=300, timestep_fs=1.0, steps=300),
                      MDOutput(tmp_path / "nve.traj", tmp_path / "nve.csv", loginterval=10, progress=False))
    log = read_md_log(tmp_path / "nve.csv")
    etot = log["etot_eV"]
    assert len(etot) == 31  # step 0 ... 300 every 10
    dev = np.abs(etot - etot[0]).max() / len(atoms) * 1000
    assert dev < 1.0, f"NVE energy deviation {dev:.3f} meV/atom"
    assert abs(s["conserved_drift_meV_per_atom_per_ps"]) < 1.0
    assert 50 < log["T_K"][1:].mean() < 400  # equipartition: ~150 K after starting at 300 K
    assert s["model_calls_per_step"] is None  # EMT does not count its calls (MFCalculator does)
    from mf_calc.workflows.md import MDSummary

    assert set(s) == set(MDSummary.__annotations__) - {"final_oxidation"}  # the declared keys, no more, no less


def test_npt_anisotropic_cell_response(tmp_path):
    """MTK NPT at 0 GPa on a Cu cell strained +3 % along a and −3 % along b, c unchanged: the barostat
    shrinks a, expands b, and leaves c nearly alone — the three lengths move independently."""
    atoms = cu_cell()
    a0 = atoms.cell.lengths().copy()
    atoms.set_cell(np.diag(a0 * [1.03, 0.97, 1.0]), scale_atoms=True)
    start = atoms.cell.lengths().copy()
    final, s = run_md(atoms, EMT(), MDSettings("npt", temperature_K=100, pressure_GPa=0.0, timestep_fs=2.0, steps=150,
                                             tdamp_fs=50, pdamp_fs=100),
                      MDOutput(None, tmp_path / "npt.csv", loginterval=5, progress=False))
    log = read_md_log(tmp_path / "npt.csv")
    # the extreme excursion of each length relative to its start
    da = log["a"].min() - start[0]
    db = log["b"].max() - start[1]
    assert da < -0.05, f"a did not shrink: {da:.3f} Å"
    assert db > 0.05, f"b did not grow: {db:.3f} Å"
    dc = np.abs(log["c"] - start[2]).max()
    assert dc < 0.5 * min(-da, db), f"c moved as much as a and b ({dc:.3f} Å)"


def test_langevin_npt_and_isotropic_variants(tmp_path):
    """The Langevin barostat is anisotropic too; the isotropic MTK keeps the cell shape."""
    atoms = cu_cell()
    atoms.set_cell(np.diag(atoms.cell.lengths() * [1.03, 0.97, 1.0]), scale_atoms=True)
    ratio0 = atoms.cell.lengths()[0] / atoms.cell.lengths()[1]
    fin, _ = run_md(atoms, EMT(), MDSettings("npt", method="langevin", temperature_K=100, timestep_fs=2.0, steps=60,
                                           tdamp_fs=50, pdamp_fs=100), NO_FILES)
    assert abs(fin.cell.lengths()[0] / fin.cell.lengths()[1] - ratio0) > 0.01
    fin, _ = run_md(atoms, EMT(), MDSettings("npt", method="mtk-isotropic", temperature_K=100, timestep_fs=2.0,
                                           steps=60, tdamp_fs=50, pdamp_fs=100), NO_FILES)
    assert fin.cell.lengths()[0] / fin.cell.lengths()[1] == pytest.approx(ratio0, rel=1e-6)


@pytest.mark.parametrize("fmt", ["traj", "extxyz"])
def test_md_trajectory_restart(tmp_path, fmt):
    """Frames are written as they go; restart_from continues time and appends to the same files."""
    from ase.io import read

    traj, log = tmp_path / f"md.{fmt}", tmp_path / "md.csv"
    _, s1 = run_md(cu_cell((1, 1, 1)), EMT(), MDSettings("nvt", method="bussi", temperature_K=300, steps=20),
                   MDOutput(traj, log, loginterval=5, progress=False))
    frames = read(traj, ":")
    assert len(frames) == 5
    assert frames[-1].info["md_step"] == 20 and frames[-1].info["md_time_ps"] == pytest.approx(0.02)
    assert frames[-1].get_momenta().any()
    _, s2 = run_md(None, EMT(), MDSettings("nvt", method="bussi", temperature_K=300, steps=10),
                   MDOutput(traj, log, loginterval=5, progress=False), restart_from=traj)
    frames = read(traj, ":")
    assert [f.info["md_step"] for f in frames] == [0, 5, 10, 15, 20, 25, 30]
    d = read_md_log(log)
    assert list(d["step"]) == [0, 5, 10, 15, 20, 25, 30]
    assert d["time_ps"][-1] == pytest.approx(0.03)


def test_nvt_thermostats_reach_temperature():
    for method in ("nose-hoover", "bussi", "langevin"):
        _, s = run_md(cu_cell(), EMT(), MDSettings("nvt", method=method, temperature_K=500, timestep_fs=2.0,
                                                 steps=200, tdamp_fs=20), NO_FILES)
        assert 300 < s["T_K_mean"] < 700, (method, s["T_K_mean"])


def test_bad_md_arguments():
    with pytest.raises(ValueError, match="ensemble"):
        MDSettings("nph", steps=1)
    with pytest.raises(ValueError, match="supports"):
        MDSettings("npt", method="bussi", steps=1)


def test_md_that_blows_up_stops_and_keeps_its_frames(tmp_path):
    """Two Cu atoms 0.9 Å apart: the EMT repulsion throws them apart, the temperature runs away and the run
    stops with an error naming the step; the frames logged before stay readable on disk."""
    from ase.io import read

    from mf_calc.workflows.md_observers import MDInstabilityError

    atoms = cu_cell((1, 1, 1))
    atoms.positions[1] = atoms.positions[0] + [0.9, 0.0, 0.0]
    traj = tmp_path / "md.traj"
    with pytest.raises(MDInstabilityError, match=r"MD stopped at step \d+: the temperature reached .*flying apart"
                       r".*md.traj"):
        run_md(atoms, EMT(), MDSettings("nve", temperature_K=300, timestep_fs=2.0, steps=200),
               MDOutput(traj, tmp_path / "md.csv", loginterval=1, progress=False))
    frames = read(traj, ":")
    assert frames and frames[0].info["md_step"] == 0
    assert len(read_md_log(tmp_path / "md.csv")["step"]) == len(frames)


class _NaNAfter(EMT):
    """EMT whose energy turns NaN after ``n`` calculations (a model failing mid-run)."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.n -= 1
        if self.n < 0:
            self.results["energy"] = math.nan


def test_md_stops_on_a_non_finite_energy(tmp_path):
    from mf_calc.workflows.md_observers import MDInstabilityError

    with pytest.raises(MDInstabilityError, match=r"step 5: non-finite potential energy"):
        run_md(cu_cell((1, 1, 1)), _NaNAfter(5), MDSettings("nve", steps=20),
               MDOutput(tmp_path / "md.extxyz", None, loginterval=1, progress=False))


def test_md_status_line_prints_oxidation_counts(capsys):
    """The status line goes through tqdm.write and shows the Fe/Mn oxidation record of a log row."""
    from mf_calc.workflows.md_observers import format_row

    row = {"time_ps": 0.1, "T_K": 300.0, "P_GPa": 0.1, "a": 10.3, "b": 6.0, "c": 4.7, "volume_A3": 290.0,
           "epot_eV": -180.0, "magmom_Fe": 4.2, "n_Fe2": 2, "n_Fe3": 2}
    assert format_row(row).endswith("| Fe 4.20μB 2+:2 3+:2")


# ----------------------------------------------------------------------------- diffusion analysis
def _random_walk(D_axes, n_li=200, n_host=50, n_frames=600, dt=0.05, seed=0, drift_speed=0.3, cell=20.0):
    """Frames of a box with random-walking 'Li' (per-axis D in Å²/ps) and a rigid 'O' host; every atom also
    drifts uniformly (drift_speed Å/ps along x), and positions are wrapped into the cell."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(n_frames - 1, n_li, 3)) * np.sqrt(2 * np.asarray(D_axes) * dt)
    li = np.concatenate([rng.uniform(0, cell, (1, n_li, 3)), steps]).cumsum(axis=0)
    host = np.broadcast_to(rng.uniform(0, cell, (n_host, 3)), (n_frames, n_host, 3))
    shift = np.arange(n_frames)[:, None, None] * dt * drift_speed * np.array([1.0, 0.0, 0.0])
    frames = []
    for k in range(n_frames):
        a = Atoms(["Li"] * n_li + ["O"] * n_host, positions=np.concatenate([li[k], host[k]]) + shift[k],
                  cell=[cell, cell, cell], pbc=True)
        a.wrap()
        a.info["md_time_ps"] = k * dt
        frames.append(a)
    return frames, li


def test_msd_recovers_random_walk_D_per_axis():
    D_axes = np.array([0.02, 0.2, 0.005])  # Å²/ps: 2e-6, 2e-5, 5e-7 cm²/s
    frames, li = _random_walk(D_axes)
    # unwrapping undoes the wrapping (up to the common drift, removed below)
    r = unwrapped_positions(frames)
    assert np.allclose(r[:, :200] - r[0, :200], (li - li[0]) + (r[:, :1, :] - r[0, :1, :] - (li[:, :1] - li[0, :1])),
                       atol=1e-8)
    res = msd_analysis(frames, species="Li", drift="framework")
    for ax, d in zip("xyz", D_axes):
        assert res["D_A2_per_ps"][ax] == pytest.approx(d, rel=0.12), ax
        assert res["D_cm2_per_s"][ax] == pytest.approx(d * 1e-4, rel=0.12)
        assert 0 < res["D_err_A2_per_ps"][ax] < 0.2 * d
    assert res["D_A2_per_ps"]["total"] == pytest.approx(D_axes.mean(), rel=0.1)
    # without drift removal the x drift (0.3 Å/ps) dominates the x MSD
    raw = msd_analysis(frames, species="Li", drift=None)
    assert raw["D_A2_per_ps"]["x"] > 2 * D_axes[0]


def test_msd_from_positions_and_errors():
    rng = np.random.default_rng(1)
    pos = rng.normal(size=(400, 100, 3)).cumsum(axis=0) * np.sqrt(2 * 0.1 * 0.1)
    res = msd_analysis(Trajectory(pos, np.arange(400) * 0.1, ["Li"] * 100), drift=None)
    assert res["D_A2_per_ps"]["total"] == pytest.approx(0.1, rel=0.1)
    with pytest.raises(ValueError, match="no Na"):
        msd_analysis(Trajectory(pos, np.arange(400) * 0.1, ["Li"] * 100), species="Na", drift=None)
    with pytest.raises(ValueError, match="equally spaced"):
        msd_analysis(Trajectory(pos, np.r_[0, np.arange(1, 400) * 0.1 + 0.05], ["Li"] * 100), drift=None)


def test_msd_agrees_with_pymatgen_diffusion_analyzer():
    """Cross-check with pymatgen-analysis-diffusion: the same unwrapped, drift-corrected Li displacements
    (exactly), and diffusion coefficients that agree within the estimators' statistical spread (pymatgen
    fits the MSD from one time origin, mf_calc averages over origins in a window)."""
    from pymatgen.analysis.diffusion.analyzer import DiffusionAnalyzer
    from pymatgen.io.ase import AseAtomsAdaptor

    D_axes = np.array([0.02, 0.2, 0.005])  # Å²/ps
    frames, _ = _random_walk(D_axes, n_li=100, n_host=20, n_frames=300)
    ours = msd_analysis(frames)
    da = DiffusionAnalyzer.from_structures([AseAtomsAdaptor.get_structure(f) for f in frames], "Li", temperature=300,
                                           time_step=50.0, step_skip=1, smoothed=False)  # fs: 0.05 ps frames
    r = unwrapped_positions(frames)
    ours_disp = (r - r[0]) - (r[:, 100:] - r[0, 100:]).mean(axis=1, keepdims=True)  # framework drift removed
    theirs = da.disp - da.disp[100:].mean(axis=0, keepdims=True)
    assert np.allclose(ours_disp[:, :100].transpose(1, 0, 2), theirs[:100], atol=1e-8)
    assert ours["D_cm2_per_s"]["total"] == pytest.approx(da.diffusivity, rel=0.2)
    for axis, theirs_axis in zip("xyz", da.diffusivity_components):
        assert ours["D_cm2_per_s"][axis] == pytest.approx(theirs_axis, rel=0.3)


def test_arrhenius_fit_recovers_Ea():
    Ea, D0 = 0.25, 1e-3
    T = np.array([600.0, 800.0, 1000.0, 1200.0])
    D = D0 * np.exp(-Ea / (units.kB * T)) * np.array([1.03, 0.97, 1.02, 0.99])
    fit = arrhenius_fit(T, D, D * 0.05)
    assert fit["Ea_eV"] == pytest.approx(Ea, abs=0.01)
    exact300 = D0 * math.exp(-Ea / (units.kB * 300))
    assert fit["D_target_cm2_per_s"] == pytest.approx(exact300, rel=0.3)
    lo, hi = fit["D_target_range_cm2_per_s"]
    assert lo < fit["D_target_cm2_per_s"] < hi
    fit2 = arrhenius_fit(np.r_[T, 400.0], np.r_[D, 0.0])  # D <= 0 excluded, unweighted fit
    assert fit2["excluded_T_K"] == [400.0] and fit2["Ea_eV"] == pytest.approx(Ea, abs=0.01)
    with pytest.raises(ValueError, match=">= 2"):
        arrhenius_fit([500.0, 600.0], [1e-6, -1.0])


def test_li_diffusion_on_existing_trajectories(tmp_path):
    """The workflow analyses files (no calculator) and writes JSON + PNGs."""
    from ase.io import write

    from mf_calc.workflows import diffusion_of_trajectories

    paths, Ts = [], [600.0, 900.0]
    for T, D in zip(Ts, (0.02, 0.08)):
        frames, _ = _random_walk([D, D, D], n_li=60, n_host=10, n_frames=120, seed=int(T))
        p = tmp_path / f"rw_{T:g}.extxyz"
        write(p, frames)
        paths.append(p)
    res = diffusion_of_trajectories(dict(zip(Ts, paths)), out=tmp_path / "out")
    assert res["arrhenius"]["total"]["Ea_eV"] > 0
    for f in ("diffusion.json", "msd.png", "arrhenius.png"):
        assert (tmp_path / "out" / f).stat().st_size > 0
    with pytest.raises(FileNotFoundError):
        diffusion_of_trajectories({500.0: tmp_path / "nope.traj"}, out=tmp_path / "o2")


# ----------------------------------------------------------------------------- relax + phonons (EMT)
def test_relax_and_phonons_emt_cu(tmp_path):
    """A relaxed fcc Cu primitive cell is dynamically stable: no imaginary modes beyond 0.1 THz."""
    atoms = bulk("Cu", "fcc", a=3.7)
    relaxed, s = relax(atoms, EMT(), RelaxSettings(fmax=1e-3, steps=200))
    assert s["converged"] and s["max_force_eV_per_A"] < 1e-3
    assert s["lattice"]["volume"] == pytest.approx(11.57, rel=0.02)  # EMT Cu: a ≈ 3.59 Å
    ph, summ = phonons(relaxed, EMT(), PhononSettings(supercell=(3, 3, 3), mesh=(8, 8, 8)), out=tmp_path, progress=False)
    assert summ["stable"] and summ["n_imaginary_gamma"] == 0
    assert summ["gamma_acoustic_max_abs_THz"] < 0.1
    assert 6.0 < summ["max_frequency_THz"] < 9.0  # Cu: ~7.5 THz
    assert summ["max_frequency_cm-1"] == pytest.approx(summ["max_frequency_THz"] * 33.356, rel=1e-4)
    assert summ["thermal_300K"]["heat_capacity_J_per_K_mol"] == pytest.approx(3 * 8.314, rel=0.1)
    for f in ("phonons.json", "phonon_bands_dos.png", "phonon_thermal.png", "phonopy_params.yaml"):
        assert (tmp_path / f).is_file()


def test_phonopy_keeps_the_axes_of_a_primitive_cell():
    """Phonopy's "auto" would relabel a Pnma cell's axes (b and c swapped); a cell that is already primitive is
    used as given, a conventional cell is still reduced, and an explicit choice passes through."""
    from mf_calc import lmfp
    from mf_calc.workflows.phonons import resolve_primitive_matrix

    assert resolve_primitive_matrix(lmfp(supercell=(1, 1, 1))) == "P"
    assert resolve_primitive_matrix(cu_cell((1, 1, 1))) == "auto"  # 4-atom conventional fcc -> 1-atom primitive
    assert resolve_primitive_matrix(cu_cell((1, 1, 1)), "F") == "F"


def test_phonons_detect_instability():
    """Cu squeezed far below its equilibrium volume with a Lennard-Jones fluid-like potential → the
    check must flag imaginary modes (guards against a check that always says 'stable')."""
    from ase.calculators.lj import LennardJones

    atoms = bulk("Ar", "sc", a=3.4)  # simple cubic LJ: mechanically unstable against shear
    calc = LennardJones(sigma=3.4, epsilon=0.01, rc=8.0, smooth=True)
    _, summ = phonons(atoms, calc, PhononSettings(supercell=(3, 3, 3), mesh=(6, 6, 6)), progress=False)
    assert not summ["stable"]
    assert summ["min_frequency_THz"] < -0.1


def test_relax_fix_symmetry_and_fixed_cell(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.rattle(0.005, seed=1)  # within symprec: refine_symmetry restores Fm-3m
    r, s = relax(atoms, EMT(), RelaxSettings(fix_symmetry=True, symprec=0.05, fmax=1e-3, optimizer="BFGS"),
                 trajectory=tmp_path / "r.traj")
    a, b, c = r.cell.lengths()
    assert s["converged"] and a == pytest.approx(b, abs=1e-6) and b == pytest.approx(c, abs=1e-6)
    assert atoms.cell.lengths()[0] == pytest.approx(3.7)  # input untouched
    r2, s2 = relax(atoms, EMT(), RelaxSettings(relax_cell=False, fmax=1e-3))
    assert np.allclose(r2.cell, atoms.cell) and s2["max_force_eV_per_A"] < 1e-3
    with pytest.raises(ValueError, match="unknown optimizer"):
        relax(atoms, EMT(), RelaxSettings(optimizer="Newton"))
