"""TorchSim model interface (mf_calc.torchsim): a batch of different sizes, compositions and fidelities equals
MFCalculator system by system; stress has ASE's sign and units; TorchSim's own integrator runs with it."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch

ts = pytest.importorskip("torch_sim", reason="TorchSim is optional: install it with `make torchsim`")

from conftest import tiny_model  # noqa: E402

from mf_calc import MFCalculator, lmfp  # noqa: E402
from mf_calc.torchsim import MFTorchSimModel  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _systems():
    systems = [lmfp(supercell=(1, 1, 1)), lmfp(x_li=0.5, y_mn=0.5, supercell=(1, 1, 2), seed=1),
               lmfp(x_li=0.25, y_mn=1.0, supercell=(1, 1, 1), seed=2)]
    for i, a in enumerate(systems):
        a.rattle(0.05, seed=i)
        a.set_cell(a.cell.array @ (np.eye(3) + 0.01 * np.random.default_rng(i).normal(size=(3, 3))),
                   scale_atoms=True)  # strained, so the stress is not diagonal
    return systems


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batch_equals_the_ase_calculator_system_by_system(dtype):
    model = tiny_model(fidelities=("low", "high")).to(dtype)
    systems, fidelities = _systems(), ["high", "low", "high"]
    out = MFTorchSimModel(model, fidelity=fidelities)(ts.io.atoms_to_state(systems, torch.device("cpu"), torch.float64))
    assert out["energy"].shape == (3,) and out["stress"].shape == (3, 3, 3)
    start = 0
    tol_f = 1e-8 if dtype == torch.float64 else 1e-4
    for b, (atoms, fid) in enumerate(zip(systems, fidelities)):
        n = len(atoms)
        atoms.calc = MFCalculator(model, fidelity=fid)
        assert out["energy"][b].item() / n == pytest.approx(atoms.get_potential_energy() / n, abs=1e-5 * (tol_f / 1e-4))
        np.testing.assert_allclose(out["forces"][start:start + n].numpy(), atoms.get_forces(), atol=tol_f)
        np.testing.assert_allclose(out["stress"][b].numpy(), atoms.get_stress(voigt=False), atol=tol_f)  # eV/Å³
        np.testing.assert_allclose(out["magmoms"][start:start + n].numpy(), atoms.get_magnetic_moments(), atol=tol_f)
        start += n


def test_stress_sign_and_units_match_ase_after_a_round_trip():
    model = tiny_model(fidelities=("low", "high"))
    atoms = _systems()[0]
    tsm = MFTorchSimModel(model, fidelity="high")
    state = ts.io.atoms_to_state([atoms], torch.device("cpu"), torch.float64)
    out = tsm(state)
    # finite difference of the energy under a small uniform expansion: dE/dε_ii = V σ_ii (ASE sign)
    eps = 1e-5
    energies = []
    for s in (1 + eps, 1 - eps):
        scaled = atoms.copy()
        scaled.set_cell(atoms.cell.array * s, scale_atoms=True)
        energies.append(tsm(ts.io.atoms_to_state([scaled], torch.device("cpu"), torch.float64))["energy"].item())
    pressure_fd = (energies[0] - energies[1]) / (2 * eps) / atoms.get_volume() / 3
    assert np.trace(out["stress"][0].numpy()) / 3 == pytest.approx(pressure_fd, rel=1e-4, abs=1e-7)


def test_fidelity_per_system_must_match_the_state_and_unknown_names_fail():
    model = tiny_model(fidelities=("low", "high"))
    state = ts.io.atoms_to_state(_systems(), torch.device("cpu"), torch.float64)
    with pytest.raises(ValueError, match="2 fidelities given for a state of 3 systems"):
        MFTorchSimModel(model, fidelity=["low", "high"])(state)
    with pytest.raises(ValueError, match="unknown fidelity 'medium'"):
        MFTorchSimModel(model, fidelity="medium")


def test_from_calculator_keeps_the_calculators_compile_choice():
    model = tiny_model()
    for compile in (False, True):
        tsm = MFTorchSimModel.from_calculator(MFCalculator(model, fidelity="low", compile=compile))
        assert (tsm.run_model is not tsm.model) == compile and tsm.fidelity == "low"


def test_compiled_batch_of_mixed_fidelities_equals_the_eager_one():
    """compile=True on a batch whose systems differ in size and fidelity (per-row fidelities: the model's
    data-dependent branches run between compiled graphs)."""
    torch._dynamo.reset()
    model = tiny_model().float()
    state = ts.io.atoms_to_state(_systems(), torch.device("cpu"), torch.float32)
    fidelities = ["high", "low", "high"]
    eager = MFTorchSimModel(model, fidelity=fidelities)(state)
    fast = MFTorchSimModel(model, fidelity=fidelities, compile=True)(state)
    for key in ("energy", "forces", "stress", "magmoms"):
        torch.testing.assert_close(fast[key], eager[key], atol=2e-4, rtol=1e-4)


def test_torchsim_nvt_runs_a_batch_of_replicas(warm_model):
    tsm = MFTorchSimModel(warm_model, fidelity="pbe_u")
    replicas = [lmfp(supercell=(1, 1, 1)) for _ in range(3)]
    final = ts.integrate(system=replicas, model=tsm, integrator=ts.integrators.nvt_langevin, n_steps=5,
                         temperature=600.0, timestep=0.002)  # K, ps (TorchSim metal units)
    assert final.n_systems == 3 and torch.isfinite(final.positions).all()
    from ase.geometry import find_mic

    for before, after in zip(replicas, final.to_atoms()):  # TorchSim wraps positions into the cell
        _, moved = find_mic(after.positions - before.positions, before.cell, pbc=True)
        assert 0 < moved.max() < 0.5


def test_li_diffusion_runs_every_temperature_as_one_torchsim_batch(warm_model, tmp_path):
    from mf_calc.workflows.diffusion import MSDSettings, li_diffusion
    from mf_calc.workflows.engine import NVTRun

    atoms = lmfp(x_li=0.5, supercell=(1, 1, 1), seed=0)
    run = NVTRun((900.0, 1200.0), steps=20, equil_steps=5, loginterval=2)
    res = li_diffusion(atoms, MFCalculator(warm_model, fidelity="pbe_u"), run, MSDSettings(), tmp_path,
                       engine="torchsim", progress=False, plot=False)
    assert res["settings"]["engine"] == "torchsim" and res["settings"]["method"] == "langevin"
    for T in ("900", "1200"):
        frames = ase.io.read(tmp_path / f"md_{T}K.traj", ":")
        assert len(frames) == 11 and frames[-1].info["md_time_ps"] == pytest.approx(0.020)
    with pytest.raises(ValueError, match="needs an MFCalculator"):
        from ase.calculators.emt import EMT

        li_diffusion(atoms, EMT(), NVTRun((900.0,), steps=5), out=tmp_path, engine="torchsim")


def test_hull_relaxations_as_one_torchsim_batch(warm_model, tmp_path):
    from mf_calc.workflows.hull import HullSettings, formation_hull, stable_structures

    def make():
        return MFCalculator(warm_model, fidelity="pbe_u")

    host = lmfp(supercell=(1, 1, 1))
    result = formation_hull(host, make, tmp_path, HullSettings(x_values=[0.5], max_per_x=1, fmax=0.1,
                                                               engine="torchsim"), progress=False)
    assert sorted(result["x"]) == [0.0, 0.5, 1.0] and all(r["converged"] for r in result["records"])
    for atoms in stable_structures(result):  # relaxed: forces and cell forces below fmax with the ASE calculator
        atoms.calc = make()
        assert np.linalg.norm(atoms.get_forces(), axis=1).max() < 0.1
    again = formation_hull(host, make, tmp_path, HullSettings(x_values=[0.5], max_per_x=1, fmax=0.1, engine="torchsim"),
                           progress=False)
    assert again["formation_energy_eV"] == result["formation_energy_eV"]  # records reused
