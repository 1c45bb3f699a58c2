"""Li diffusion in a delithiated olivine: NVT MD at several temperatures → MSD per axis (b = [010] is the
channel) → D(T) → Arrhenius Ea and D(300 K). Compare: Li hop along [010] 0.27 eV (GGA NEB), 0.16 eV
(universal MLIP); D(300 K) ≈ 3.6e-10 cm²/s (LiFePO4, μSR). High temperatures are needed for hops on
the MD time scale; short runs give D to a factor ~2 — quick mode shows the mechanics only.

    python md_examples/03_li_diffusion.py --quick        # Li0.5FePO4 (1,1,1), 26 atoms, 3 T × 0.8 ps, ~2 min
    python md_examples/03_li_diffusion.py                # Li0.5FePO4 (1,2,1), 52 atoms, 4 T × 20 ps (~1 h on CPU)
    python md_examples/03_li_diffusion.py --trajectories a.traj b.traj --temperatures 900 1100  # analyse only
"""

from pathlib import Path

from _common import parser, setup

from mf_calc import lmfp
from mf_calc.atomic import write_json
from mf_calc.workflows.diffusion import MSDSettings, diffusion_of_trajectories, li_diffusion
from mf_calc.workflows.engine import NVTRun
from mf_calc.workflows.hops import hop_arrhenius, hop_rate
from mf_calc.workflows.msd import format_arrhenius
from mf_calc.workflows.relax import RelaxSettings, relax


def hop_summary(out: Path, temps: list[float], sites) -> None:
    """Li hop rates between the host's Li sites per temperature and their Arrhenius fit → out/hops.json."""
    import ase.io

    rates = {t: hop_rate(ase.io.read(out / f"md_{t:g}K.traj", ":"), sites) for t in temps}
    for t, r in rates.items():
        print(f"  {t:.0f} K: {r['hops']} Li hops in {r['duration_ps']:.0f} ps of {r['atoms']} Li: "
              f"{r['rate_per_ps']:.3f} ± {r['rate_err_per_ps']:.3f} per Li per ps")
    try:
        fit = hop_arrhenius(rates)
        print(f"  hop-rate Arrhenius: Ea = {fit['Ea_eV']:.3f} ± {fit['Ea_err_eV']:.3f} eV")
    except ValueError as exc:
        fit = {"error": str(exc)}
    write_json(out / "hops.json", {"rates": {str(t): r for t, r in rates.items()}, "arrhenius": fit})


def main():
    p = parser(__doc__.splitlines()[0], "runs/md_examples/03_diffusion")
    p.add_argument("--temperatures", type=float, nargs="+", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--trajectories", nargs="+", default=None, help="analyse existing trajectories instead")
    args = p.parse_args()
    if args.trajectories:
        temps = args.temperatures or []
        res = diffusion_of_trajectories(dict(zip(temps, args.trajectories)), out=args.out)
    else:
        calc, out = setup(args)
        supercell = (1, 1, 1) if args.quick else (1, 2, 1)
        atoms = lmfp(x_li=0.5, supercell=supercell, seed=0)
        if args.quick:
            temps, steps, equil = args.temperatures or [1000.0, 1200.0, 1400.0], args.steps or 400, 50
        else:
            temps, steps, equil = args.temperatures or [700.0, 850.0, 1000.0, 1200.0], args.steps or 10000, 1000
        print(f"{atoms.get_chemical_formula()} ({len(atoms)} atoms); relaxing, then NVT (Bussi) at {temps} K, "
              f"{steps} steps of 2 fs each after {equil} equilibration steps", flush=True)
        atoms, _ = relax(atoms, calc, RelaxSettings(fmax=0.05, steps=300))
        run = NVTRun(tuple(temps), steps, equil, timestep_fs=2.0, loginterval=5 if args.quick else 20)
        res = li_diffusion(atoms, calc, run, MSDSettings(n_blocks=3 if args.quick else 5), out)
    for key in ("total", "x", "y", "z"):
        print(f"  Arrhenius {key:5}: {format_arrhenius(res['arrhenius'][key])}")
    if not args.trajectories:  # the sites are known: every Li site of the fully lithiated host
        hop_summary(out, temps, lmfp(x_li=1.0, supercell=supercell, seed=0))
    if args.quick:
        print("note: --quick runs are ~0.8 ps per temperature with 2 Li atoms; D is noise-dominated and the fit "
              "may fail. Converged D needs ≥ 10-20 ps per temperature and more Li (run without --quick).")
    print(f"wrote {args.out}/diffusion.json, hops.json, msd.png, arrhenius.png")


if __name__ == "__main__":
    main()
