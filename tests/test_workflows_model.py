"""Workflows with the default model (``lmfp-mf``) on the 28-atom LiFePO4 cell (one module-scope model, few calls).

References: LiFePO4 experiment (single-crystal XRD, Janssen et al., Chem. Mater. 25, 4574 (2013))
a = 10.3244, b = 6.0064, c = 4.6901 Å, V = 290.84 Å³,
which r2SCAN reproduces to about 1 %; PBE+U a ≈ 10.41-10.45, b ≈ 6.07-6.09, c ≈ 4.75-4.76 Å, V ≈ 300-302 Å³
(the low fidelity ``pbe_u`` was trained on CHGNet 0.3.0 labels, itself trained on PBE/PBE+U).
"""

import numpy as np
import pytest
import torch

from mf_calc import MFCalculator, lmfp, load_model
from mf_calc.workflows import phonons, relax, run_md
from mf_calc.workflows.md import MDOutput, MDSettings, read_md_log
from mf_calc.workflows.phonons import PhononSettings
from mf_calc.workflows.relax import RelaxSettings

LFP_PBEU = {"a": 10.43, "b": 6.08, "c": 4.755, "volume": 301.0}
LFP_EXP = {"a": 10.3244, "b": 6.0064, "c": 4.6901, "volume": 290.84}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def calc():
    return MFCalculator(load_model())


@pytest.fixture(scope="module")
def lfp_relaxed(calc):
    return relax(lmfp(supercell=(1, 1, 1)), calc, RelaxSettings(fmax=0.02, steps=300))


def test_relax_lfp_lattice(lfp_relaxed):
    atoms, s = lfp_relaxed
    assert s["converged"]
    assert s["max_force_eV_per_A"] < 0.02
    assert np.linalg.norm(atoms.get_forces(), axis=1).max() < 0.02
    for key, ref in LFP_EXP.items():
        assert s["lattice"][key] == pytest.approx(ref, rel=0.02), key
    assert s["lattice"]["alpha"] == pytest.approx(90, abs=0.1)
    assert s["fidelity"] == "r2scan"
    assert s["energy_per_atom_eV"] == pytest.approx(s["energy_eV"] / 28)
    assert len(s["magmoms"]) == 28 and s["oxidation"]["balanced"]


def test_low_fidelity_relaxes_to_the_pbe_u_lattice(lfp_relaxed):
    """The same model at fidelity pbe_u relaxes LiFePO4 to the PBE+U cell, larger than at r2scan."""
    from mf_calc import MFCalculator

    _, s_high = lfp_relaxed
    _, s = relax(lmfp(supercell=(1, 1, 1)), MFCalculator(load_model(), fidelity="pbe_u"), RelaxSettings(fmax=0.02,
                                                                                                        steps=300))
    assert s["converged"] and s["fidelity"] == "pbe_u"
    for key, ref in LFP_PBEU.items():
        assert s["lattice"][key] == pytest.approx(ref, rel=0.01), key
    assert s["lattice"]["volume"] > s_high["lattice"]["volume"] * 1.02


def test_nve_energy_conservation_model(lfp_relaxed, calc):
    """The model's forces are the exact gradient of its energy: 40 NVE steps of 1 fs at 300 K keep
    E_tot within 1 meV/atom (measured ≈ 0.06 meV/atom)."""
    atoms, _ = lfp_relaxed
    _, s = run_md(atoms, calc, MDSettings("nve", temperature_K=300, timestep_fs=1.0, steps=40),
                  MDOutput(None, None, loginterval=5, progress=False))
    assert s["conserved_max_dev_meV_per_atom"] < 1.0
    assert s["model_calls_per_step"] <= 1.05


def test_npt_model_logs_magmoms(lfp_relaxed, calc, tmp_path):
    """A few NPT steps with the model: the CSV has lattice, pressure and Fe magmom / oxidation columns."""
    atoms, _ = lfp_relaxed
    final, s = run_md(atoms, calc, MDSettings("npt", temperature_K=300, steps=10),
                      MDOutput(tmp_path / "npt.extxyz", tmp_path / "npt.csv", loginterval=5, progress=False))
    d = read_md_log(tmp_path / "npt.csv")
    assert list(d["step"]) == [0, 5, 10]
    assert np.all(d["n_Fe2"] == 4) and np.all(d["charge_excess"] == 0)
    assert 3.6 < d["magmom_Fe"].mean() < 4.1
    assert abs(s["volume_A3_change_pct"]) < 2
    assert s["final_oxidation"]["counts"] == {"Fe2+": 4}
    assert s["model_calls_per_step"] <= 1.1  # forces and stress from one model call (after the first step)


def test_phonons_lfp_gamma_stable(lfp_relaxed, calc):
    """Γ-point phonons of relaxed LiFePO4 (a (1,1,1) supercell gives exact Γ frequencies): no imaginary
    optical mode, acoustic modes ~0, highest mode a PO4 stretch near 900-1100 cm⁻¹. LiFePO4 has a soft
    optical mode (~1.0 THz here, 0.64 THz for the CHGNet r2scan teacher) that a loose relaxation (fmax 0.02)
    left imaginary with an earlier lmfp-mf, so phonons start from a tight one."""
    atoms, s = relax(lfp_relaxed[0], calc, RelaxSettings(fmax=0.001, steps=600))
    assert s["converged"]
    ph, s = phonons(atoms, calc, PhononSettings(supercell=(1, 1, 1), mesh=(1, 1, 1)), plot=False, progress=False)
    assert np.allclose(ph.primitive.cell, atoms.cell)  # axes as given: the band path's Y is along b
    assert s["n_imaginary_gamma"] == 0
    assert s["gamma_acoustic_max_abs_THz"] < 0.05
    gamma = np.array(s["gamma_frequencies_THz"])
    assert len(gamma) == 84 and gamma.max() * 33.356 == pytest.approx(1000, abs=150)


def test_fidelity_gap_two_fidelity_model():
    """Warm start with two fidelities (identical by construction), then shift fidelity 'low's Fe reference
    energy by +0.1 eV: the gap is exactly 0.1 eV × n_Fe / n_atoms in energy and zero in forces."""
    from mf_calc.model.mfchgnet import MFCHGNet
    from mf_calc.workflows import fidelity_gap

    model = MFCHGNet.from_chgnet("0.3.0", fidelities=("low", "high"), modules="EMRC").eval()
    with torch.no_grad():
        model.composition.weight[0, 26 - 1] += 0.1
    lfp = lmfp(supercell=(1, 1, 1))
    fp = lmfp(x_li=0.0, supercell=(1, 1, 1))
    rows = fidelity_gap([fp, lfp], model, sort_by="energy")
    assert [r["index"] for r in rows] == [0, 1]  # FePO4 (4 Fe in 24 atoms) ranks above LiFePO4 (4 in 28)
    g = rows[0]["gaps"]["low"]
    assert g["dE_meV_per_atom"] == pytest.approx(100 * 4 / 24, abs=1e-3)
    assert g["dF_rms"] < 1e-5 and rows[1]["gaps"]["low"]["dE_meV_per_atom"] == pytest.approx(100 * 4 / 28, abs=1e-3)
    with pytest.raises(ValueError, match="single fidelity"):
        fidelity_gap([lfp], load_model("chgnet-0.3.0"))
