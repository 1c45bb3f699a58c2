"""GPU speed of MF-CHGNet: ASE MD with MFCalculator (eager and ``compile=True``) vs chgnet's CHGNetCalculator,
TorchSim batches (eager and compiled), and where a step's time goes. Writes a markdown report (device, torch
version, date).

    python benchmarks/gpu.py                                   # on a GPU: the full set, < 8 min on an H200
    python benchmarks/gpu.py --device cpu --sizes 104 --replicas 1 4 --out /tmp/gpu_cpu.md   # a CPU smoke run

Cells: olivine Li0.5(Mn0.5Fe0.5)PO4 (26 atoms per 28-atom cell: 104, 832, 6,656, 13,312 atoms); ASE Langevin
at 300 K, 1 fs, float32. Each MD case runs for at least ``--min-steps`` and at most ``--seconds`` of timed
steps after 3 warm-up steps. TorchSim: 28-atom LiMn0.5Fe0.5PO4 replicas, Langevin NVT in one batch.
Peak memory: torch's peak allocation on the device during the case.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch

CELLS = {104: (1, 2, 2), 832: (2, 4, 4), 6656: (4, 8, 8), 13312: (8, 8, 8)}
COMPILED = "-compiled"
CHGNET_MAX_ATOMS = 7000  # chgnet's calculator needs ~81 GB at 6,656 atoms: larger cells are skipped


def lmfp_cell(n_atoms: int):
    from mf_calc import lmfp

    atoms = lmfp(x_li=0.5, y_mn=0.5, supercell=CELLS[n_atoms], seed=0)
    atoms.rattle(0.02, seed=1)
    return atoms


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def reset_peak(device) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb(device) -> float | None:
    return torch.cuda.max_memory_allocated() / 1e9 if torch.device(device).type == "cuda" else None


def calculator(kind: str, device: str):
    """kind: lmfp-mf, chgnet-0.3.0 (MFCalculator), lmfp-mf-compiled (MFCalculator with compile=True) or chgnet
    (chgnet's own calculator)."""
    if kind == "chgnet":
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator

        with contextlib.redirect_stdout(io.StringIO()):
            return CHGNetCalculator(CHGNet.load(model_name="0.3.0", use_device=device, verbose=False),
                                    use_device=device)
    from mf_calc import MFCalculator, load_model

    return MFCalculator(load_model(kind.removesuffix(COMPILED)), device=device, compile=kind.endswith(COMPILED))


def md_rate(kind: str, n_atoms: int, args) -> dict:
    """Steps/s of ASE Langevin MD with one calculator, and the device's peak memory."""
    from ase import units
    from ase.md.langevin import Langevin

    reset_peak(args.device)
    atoms = lmfp_cell(n_atoms)
    atoms.calc = calculator(kind, args.device)
    dyn = Langevin(atoms, 1.0 * units.fs, temperature_K=300, friction=0.01, rng=np.random.default_rng(0))
    dyn.run(3)
    sync(args.device)
    steps, start = 0, time.perf_counter()
    while steps < args.min_steps or (time.perf_counter() - start < args.seconds and steps < args.max_steps):
        dyn.run(1)
        steps += 1
    sync(args.device)
    rate = steps / (time.perf_counter() - start)
    result = {"steps_per_s": rate, "steps": steps, "peak_gb": peak_gb(args.device)}
    del dyn, atoms
    return result


def step_split(n_atoms: int, args, reps: int = 5) -> dict:
    """Milliseconds per call of lmfp-mf: graph building (reused search), a fresh search, the model's forward
    and backward pass (energy, forces, stress, magmoms)."""
    from mf_calc import load_model
    from mf_calc.calculator import compiled
    from mf_calc.model.device_graph import DeviceGraphBuilder

    model = load_model("lmfp-mf").to(args.device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    atoms = lmfp_cell(n_atoms)
    numbers = torch.from_numpy(atoms.numbers)
    positions = torch.as_tensor(atoms.positions, device=args.device)
    cells = torch.as_tensor(atoms.cell.array, device=args.device)[None]
    builder = DeviceGraphBuilder(model.config.cutoff, model.config.bond_cutoff, 1.0)

    def timed(fn):
        sync(args.device)
        t0 = time.perf_counter()
        for _ in range(reps):
            out = fn()
        sync(args.device)
        return (time.perf_counter() - t0) / reps * 1e3, out

    search_ms, _ = timed(lambda: DeviceGraphBuilder(model.config.cutoff, model.config.bond_cutoff, 1.0).batch(
        numbers, positions, cells, [n_atoms], True, 1, dtype=model.dtype))
    builder.batch(numbers, positions, cells, [n_atoms], True, 1, dtype=model.dtype)
    graph_ms, batch = timed(lambda: builder.batch(numbers, positions + 1e-3, cells, [n_atoms], True, 1,
                                                  dtype=model.dtype))
    model_ms, _ = timed(lambda: model(batch, task="efsm", create_graph=False))
    run = compiled(model)
    run(batch, task="efsm", create_graph=False)  # compiles
    compiled_ms, _ = timed(lambda: run(batch, task="efsm", create_graph=False))
    return {"graph_ms": graph_ms, "search_ms": search_ms, "model_ms": model_ms, "compiled_ms": compiled_ms,
            "edges": len(batch.edges), "angles": len(batch.angles)}


def profile_model(n_atoms: int, args, reps: int = 5, top: int = 25) -> str:
    """torch.profiler table of lmfp-mf's forward and backward pass (efsm) at ``n_atoms``: the ops with the most
    self device time (CPU time on a CPU), with call counts."""
    from torch.profiler import ProfilerActivity, profile

    from mf_calc import load_model
    from mf_calc.model.device_graph import DeviceGraphBuilder

    model = load_model("lmfp-mf").to(args.device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    atoms = lmfp_cell(n_atoms)
    batch = DeviceGraphBuilder(model.config.cutoff, model.config.bond_cutoff, 1.0).batch(
        torch.from_numpy(atoms.numbers), torch.as_tensor(atoms.positions, device=args.device),
        torch.as_tensor(atoms.cell.array, device=args.device)[None], [n_atoms], True, 1, dtype=model.dtype)
    model(batch, task="efsm", create_graph=False)
    cuda = torch.device(args.device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(reps):
            model(batch, task="efsm", create_graph=False)
        sync(args.device)
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=60)


def torchsim_sweep(args) -> list[dict]:
    """Replica-steps/s of TorchSim Langevin NVT with n replicas of a 28-atom cell in one batch, with the model as
    it is and with ``compile=True`` (after a 2-step warm-up, which compiles)."""
    from mf_calc import lmfp, load_model
    from mf_calc.torchsim import MFTorchSimModel

    weights = load_model("lmfp-mf")  # one model, run as it is and compiled
    models = {"eager": MFTorchSimModel(weights, device=args.device),
              "compiled": MFTorchSimModel(weights, device=args.device, compile=True)}
    base = lmfp(x_li=1.0, y_mn=0.5, supercell=(1, 1, 1), seed=0)
    rows = []
    for n in args.replicas:
        systems = []
        for k in range(n):
            atoms = base.copy()
            atoms.rattle(0.02, seed=k)
            systems.append(atoms)
        rows.append({"replicas": n})
        for name, model in models.items():
            rows[-1] |= {f"{name}_{key}": value for key, value in _nvt_rate(model, systems, args).items()}
        print(f"torchsim {n} replicas: {rows[-1]}", flush=True)
    return rows


def _nvt_rate(model, systems: list, args) -> dict:
    """Replica-steps/s and peak device memory of ``args.torchsim_steps`` batched NVT steps of ``systems``."""
    from mf_calc.workflows.engine import NVTRun, batched_nvt

    n = len(systems)
    model.graphs = type(model.graphs)(model.model.config.cutoff, model.model.config.bond_cutoff, 1.0)
    reset_peak(args.device)
    batched_nvt(systems, model, NVTRun((300.0,) * n, steps=2, equil_steps=0, loginterval=2))  # warm-up
    sync(args.device)
    t0 = time.perf_counter()
    steps = args.torchsim_steps
    batched_nvt(systems, model, NVTRun((300.0,) * n, steps=steps, equil_steps=0, loginterval=steps))
    sync(args.device)
    return {"replica_steps_per_s": n * steps / (time.perf_counter() - t0), "peak_gb": peak_gb(args.device)}


def relax_check(args, n: int = 8) -> dict:
    """batched_relax of n rattled x = 1/2 cells on the device: seconds and how many converged."""
    from mf_calc import lmfp
    from mf_calc.torchsim import MFTorchSimModel
    from mf_calc.workflows.engine import batched_relax

    systems = [lmfp(x_li=0.5, y_mn=0.5, supercell=(1, 1, 1), seed=k) for k in range(n)]
    for k, atoms in enumerate(systems):
        atoms.rattle(0.05, seed=k)
    t0 = time.perf_counter()
    relaxed = batched_relax(systems, MFTorchSimModel("lmfp-mf", device=args.device), fmax=0.05, steps=300)
    return {"systems": n, "seconds": time.perf_counter() - t0, "converged": sum(c for _, c in relaxed)}


def parity(args, n_atoms: int = 104) -> dict:
    """Largest difference (float64) between MFCalculator on the device and ``predict`` on the CPU (the graph
    built on the CPU, collated, the model run on the CPU)."""
    from mf_calc import MFCalculator, load_model

    atoms = lmfp_cell(n_atoms)
    reference = load_model("lmfp-mf").double().predict([atoms], task="efsm")[0]
    atoms.calc = MFCalculator(load_model("lmfp-mf").double(), device=args.device)
    stress = atoms.get_stress(voigt=False)
    return {"energy_eV_per_atom": abs(atoms.get_potential_energy() - float(reference["energy"])) / n_atoms,
            "forces_eV_A": float(np.abs(atoms.get_forces() - reference["forces"]).max()),
            "stress_eV_A3": float(np.abs(stress - reference["stress"]).max())}


def device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name()
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"


def _gb(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def report(args, md: dict, splits: dict, sweep: list[dict], relax: dict | None) -> str:
    lines = [f"# GPU-resident inference: MD speed on {device_name(args.device)}", "",
             f"torch {torch.__version__}, {datetime.date.today().isoformat()}; command: `python benchmarks/gpu.py "
             + " ".join(sys.argv[1:]) + "`. float32, ASE Langevin 300 K, 1 fs; Li0.5(Mn0.5Fe0.5)PO4 cells.", "",
             "| atoms | MFCalculator lmfp-mf (steps/s) | the same, compile=True | MFCalculator CHGNet 0.3.0 weights "
             "| chgnet CHGNetCalculator 0.3.0 | lmfp-mf µs per atom-step | peak memory lmfp-mf / chgnet (GB) |",
             "|---|---|---|---|---|---|---|"]
    for n, row in md.items():
        ours, same, ref = row.get("lmfp-mf"), row.get("chgnet-0.3.0"), row.get("chgnet")
        fast = row.get("lmfp-mf" + COMPILED)

        def rate(r):
            return "–" if r is None else f"{r['steps_per_s']:.3g}"

        lines.append(f"| {n:,} | {rate(ours)} | {rate(fast)} | {rate(same)} | {rate(ref)} | "
                     f"{1e6 / (ours['steps_per_s'] * n):.1f} | {_gb(ours and ours['peak_gb'])} / "
                     f"{_gb(ref and ref['peak_gb'])} |")
    lines += ["", "Where a call's time goes (lmfp-mf, ms; graph = the device graph with the search reused, as in most "
              "MD steps; search = the same with a fresh neighbour search (vesin, on the device); model = forward and "
              "backward pass for energy, forces, stress and magmoms; compiled: the same with torch.compile):", "",
              "| atoms | graph | search | model | compiled | edges | angles |", "|---|---|---|---|---|---|---|"]
    for n, s in splits.items():
        lines.append(f"| {n:,} | {s['graph_ms']:.2f} | {s['search_ms']:.1f} | {s['model_ms']:.2f} | "
                     f"{s['compiled_ms']:.2f} | {s['edges']:,} | "
                     f"{s['angles']:,} |")
    lines += ["", f"TorchSim Langevin NVT, 28-atom LiMn0.5Fe0.5PO4 replicas in one batch ({args.torchsim_steps} "
              "steps after a 2-step warm-up):", "",
              "| replicas | replica-steps/s | compile=True | peak memory (GB) | compile=True |", "|---|---|---|---|---|"]
    for r in sweep:
        lines.append(f"| {r['replicas']} | {r['eager_replica_steps_per_s']:.0f} | "
                     f"{r['compiled_replica_steps_per_s']:.0f} | {_gb(r['eager_peak_gb'])} | {_gb(r['compiled_peak_gb'])} |")
    if relax is not None:
        lines += ["", f"`batched_relax` on {args.device}: {relax['systems']} rattled Li0.5(Mn0.5Fe0.5)PO4 cells in "
                  f"{relax['seconds']:.1f} s, {relax['converged']} of {relax['systems']} converged (fmax 0.05 eV/Å)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[104, 832, 6656, 13312], choices=sorted(CELLS))
    ap.add_argument("--models", nargs="+", default=["lmfp-mf", "lmfp-mf" + COMPILED, "chgnet-0.3.0", "chgnet"],
                    help="lmfp-mf, chgnet-0.3.0 (MFCalculator), lmfp-mf-compiled (MFCalculator, compile=True) and "
                    "chgnet (chgnet's own calculator)")
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 8, 32, 128, 512])
    ap.add_argument("--torchsim-steps", type=int, default=20)
    ap.add_argument("--min-steps", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=8.0, help="timed seconds per MD case (at least --min-steps)")
    ap.add_argument("--no-relax", action="store_true")
    ap.add_argument("--profile", action="store_true", help="add a torch.profiler table of the model per size")
    ap.add_argument("--out", default="benchmarks/results/gpu.md")
    args = ap.parse_args(argv)

    check = parity(args)
    print(f"parity with predict on the CPU (float64): {check}", flush=True)
    md: dict[int, dict] = {}
    splits, profiles = {}, {}
    for n in args.sizes:
        md[n] = {}
        for kind in args.models:
            if kind == "chgnet" and n > CHGNET_MAX_ATOMS:
                continue
            md[n][kind] = md_rate(kind, n, args)
            print(f"{n} atoms {kind}: {md[n][kind]['steps_per_s']:.3g} steps/s, peak {md[n][kind]['peak_gb']} GB",
                  flush=True)
        splits[n] = step_split(n, args)
        print(f"{n} atoms split: {splits[n]}", flush=True)
        if args.profile:
            profiles[n] = profile_model(n, args)
            print(profiles[n], flush=True)
    sweep = torchsim_sweep(args) if args.replicas else []
    relax = None if args.no_relax else relax_check(args)
    text = report(args, md, splits, sweep, relax)
    text += ("\nParity (float64, 104 atoms): MFCalculator on the device vs `predict` on the CPU differ by "
             + ", ".join(f"{k} {v:.1e}" for k, v in check.items()) + ".\n")
    for n, table in profiles.items():
        text += f"\nProfile of lmfp-mf's forward and backward pass at {n:,} atoms ({args.device}):\n\n```\n{table}\n```\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
