"""``mf-calc relax | md | diffusion | phonons | gap``: clear errors before any work, and small end-to-end runs."""

import time

import pytest

from mf_calc.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(argv, capsys):
    t0 = time.perf_counter()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err, time.perf_counter() - t0


@pytest.mark.parametrize("cmd", ["relax", "md", "diffusion", "phonons"])
def test_unknown_fidelity_fails_before_work(cmd, tmp_path, capsys):
    out = tmp_path / "o"
    rc, _, err, dt = _run([cmd, "--supercell", 1, 1, 1, "--fidelity", "r2scan_hse", "--out", out], capsys)
    assert rc == 2
    assert "unknown fidelity 'r2scan_hse'" in err and "pbe_u" in err  # lists the known names
    assert not out.exists() or not any(out.iterdir())  # nothing computed or written
    assert dt < 30


@pytest.mark.parametrize("cmd", ["relax", "md", "diffusion", "phonons"])
def test_unreadable_structure_fails_before_work(cmd, tmp_path, capsys):
    bad = tmp_path / "broken.cif"
    bad.write_text("this is not a CIF file\n_cell_length_a ???\n")
    rc, _, err, _ = _run([cmd, bad, "--out", tmp_path / "o"], capsys)
    assert rc == 2 and "cannot read structure file" in err and "broken.cif" in err
    rc, _, err, _ = _run([cmd, tmp_path / "missing.vasp", "--out", tmp_path / "o"], capsys)
    assert rc == 2 and "not found" in err and "missing.vasp" in err
    assert not (tmp_path / "o").exists()


def test_other_bad_inputs(tmp_path, capsys):
    rc, _, err, _ = _run(["relax", "--model", "no-such-model", "--out", tmp_path], capsys)
    assert rc == 2 and "unknown model" in err
    rc, _, err, _ = _run(["relax", "--x-li", 0.3, "--supercell", 1, 1, 1, "--out", tmp_path], capsys)
    assert rc == 2 and "x_li" in err
    rc, _, err, _ = _run(["md", "--ensemble", "npt", "--method", "bussi", "--out", tmp_path], capsys)
    assert rc == 2 and "supports" in err
    rc, _, err, _ = _run(["relax", "--optimizer", "SteepestHope", "--out", tmp_path], capsys)
    assert rc == 2 and "unknown optimizer" in err
    rc, _, err, _ = _run(["diffusion", "--trajectories", tmp_path / "nope.traj", "--temperatures", 800,
                          "--out", tmp_path], capsys)
    assert rc == 2 and "not found" in err


def test_cli_relax_then_md_restart(tmp_path, capsys):
    """relax writes a structure that md reads; md --restart-from continues the same trajectory."""
    from ase.io import read

    rc, out, _, _ = _run(["relax", "--supercell", 1, 1, 1, "--steps", 5, "--fmax", 0.5, "--out", tmp_path / "r"],
                         capsys)
    assert rc == 0 and "a=" in out and "oxidation: Fe2+:4" in out
    relaxed = tmp_path / "r" / "relaxed.extxyz"
    assert relaxed.is_file() and (tmp_path / "r" / "relax_summary.json").is_file()
    md = tmp_path / "m"
    rc, out, _, _ = _run(["md", relaxed, "--ensemble", "npt", "--steps", 4, "--loginterval", 2, "--quiet",
                          "--out", md], capsys)
    assert rc == 0 and (md / "md.png").is_file()
    rc, out, _, _ = _run(["md", "--restart-from", md / "md.traj", "--ensemble", "npt", "--steps", 2,
                          "--loginterval", 2, "--quiet", "--out", md], capsys)
    assert rc == 0
    assert [f.info["md_step"] for f in read(md / "md.traj", ":")] == [0, 2, 4, 6]


def test_cli_gap_single_fidelity_and_diffusion_files(tmp_path, capsys):
    import numpy as np
    from ase import Atoms
    from ase.io import write

    from mf_calc import lmfp

    write(tmp_path / "frames.extxyz", [lmfp(supercell=(1, 1, 1))])
    rc, _, err, _ = _run(["gap", tmp_path / "frames.extxyz", "--model", "chgnet-0.3.0", "--out", tmp_path / "g"], capsys)
    assert rc == 2 and "single fidelity" in err
    rc, out, _, _ = _run(["gap", tmp_path / "frames.extxyz", "--out", tmp_path / "g"], capsys)  # lmfp-mf: 2 fidelities
    assert rc == 0 and "pbe_u" in out

    rng = np.random.default_rng(0)
    paths = []
    for T, D in ((600, 0.02), (900, 0.08)):
        r = rng.normal(size=(100, 30, 3)).cumsum(axis=0) * np.sqrt(2 * D * 0.05)
        frames = [Atoms(["Li"] * 30 + ["O"], positions=np.vstack([p, [[0, 0, 0]]]), cell=[15] * 3, pbc=True)
                  for p in r]
        write(tmp_path / f"rw{T}.extxyz", frames)
        paths.append(tmp_path / f"rw{T}.extxyz")
    rc, out, _, _ = _run(["diffusion", "--trajectories", *paths, "--temperatures", 600, 900, "--frame-interval",
                          0.05, "--out", tmp_path / "d"], capsys)
    assert rc == 0 and "Ea =" in out and (tmp_path / "d" / "arrhenius.png").is_file()


def test_cli_phonons_float64_and_residual_force_note(tmp_path, capsys):
    """phonons runs the model in float64 by default and warns when the structure is not relaxed tightly
    (soft modes then come out spuriously imaginary); --precision float32 is honoured."""
    import json

    args = ["phonons", "--supercell", 1, 1, 1, "--no-relax", "--phonon-supercell", 1, 1, 1, "--mesh", 3, "--quiet"]
    rc, out, _, _ = _run([*args, "--out", tmp_path / "p64"], capsys)
    assert rc == 0 and "(float64)" in out
    assert "note: the structure's max force is" in out  # the built cell is not relaxed
    summary = json.loads((tmp_path / "p64" / "phonons.json").read_text())
    assert summary["n_displacements"] > 0
    rc, out, _, _ = _run([*args, "--precision", "float32", "--out", tmp_path / "p32"], capsys)
    assert rc == 0 and "(float32)" in out


def test_demo_quick_writes_its_summary(tmp_path, capsys):
    """The main job on the shipped default model: every fidelity, a relaxation and a few NPT steps."""
    import json

    rc, out, _, _ = _run(["demo", "--quick", "--md-steps", 4, "--out", tmp_path], capsys)
    assert rc == 0 and "wrote" in out
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert len(summary["fidelities"]) >= 2 and summary["md"]["steps"] == 4
    assert all((tmp_path / name).stat().st_size > 0 for name in ("relaxed.extxyz", "md.traj", "md.csv", "md.png"))


@pytest.mark.parametrize("cmd", ["relax", "md", "diffusion", "phonons"])
def test_compile_flag_reaches_the_calculator(cmd):
    """``--compile`` makes the calculator run its model through torch.compile (compiled lazily, at the first step)."""
    from mf_calc.cli import build_parser
    from mf_calc.cli.args import calculator_from_args

    parser = build_parser()
    calc = calculator_from_args(parser.parse_args([cmd]))
    assert calc.run_model is calc.model
    calc = calculator_from_args(parser.parse_args([cmd, "--compile"]))
    assert calc.run_model is not calc.model and calc.run_model._orig_mod is calc.model
