"""NPT MD (anisotropic MTK barostat) of a half-delithiated LiMn0.5Fe0.5PO4 supercell at 300 K, 0 GPa:
lattice a, b, c, volume, pressure, energy and Fe/Mn oxidation states along the run; trajectory + CSV + PNG.

    python md_examples/02_npt_delithiated.py --quick     # (1,1,2) 52 atoms, 200 steps
    python md_examples/02_npt_delithiated.py             # (1,2,2) 104 atoms, 5000 steps (5 ps)
"""

from _common import parser, setup

from mf_calc import lmfp
from mf_calc.atomic import write_json
from mf_calc.workflows.md import MDOutput, MDSettings, plot_md_log, run_md
from mf_calc.workflows.relax import RelaxSettings, format_summary, relax


def main():
    p = parser(__doc__.splitlines()[0], "runs/md_examples/02_npt")
    p.add_argument("--temperature", type=float, default=300.0)
    p.add_argument("--steps", type=int, default=None)
    args = p.parse_args()
    calc, out = setup(args)
    supercell = (1, 1, 2) if args.quick else (1, 2, 2)
    steps = args.steps or (200 if args.quick else 5000)
    atoms = lmfp(x_li=0.5, y_mn=0.5, supercell=supercell, seed=0)
    print(f"{atoms.get_chemical_formula()} ({len(atoms)} atoms), relaxing ...", flush=True)
    relaxed, s = relax(atoms, calc, RelaxSettings(fmax=0.05, steps=300))
    print(format_summary(s), flush=True)
    final, summ = run_md(relaxed, calc,
                         MDSettings("npt", args.temperature, steps=steps, tdamp_fs=50.0, pdamp_fs=500.0),
                         MDOutput(out / "md.traj", out / "md.csv", max(steps // 200, 1),
                                  print_interval=max(steps // 10, 1)))
    plot_md_log(out / "md.csv", out / "md.png", title=f"{final.get_chemical_formula()} NPT {args.temperature:g} K")
    print(f"second half: <T> = {summ['T_K_mean']:.0f} ± {summ['T_K_std']:.0f} K, <P> = {summ['P_GPa_mean']:.2f} ± "
          f"{summ['P_GPa_std']:.2f} GPa")
    for k in ("a", "b", "c", "volume_A3"):
        print(f"  <{k}> = {summ[k + '_mean']:.3f} ± {summ[k + '_std']:.3f} (relaxed {s['lattice'][k.split('_')[0]]:.3f})")
    print(f"  angles: α {summ['alpha_mean']:.2f} β {summ['beta_mean']:.2f} γ {summ['gamma_mean']:.2f}°; "
          f"final oxidation {summ['final_oxidation']['counts']} balanced={summ['final_oxidation']['balanced']}; "
          f"{summ['s_per_step']:.3f} s/step")
    write_json(out / "npt_summary.json", {"relax": {k: v for k, v in s.items() if k != "magmoms"}, "md": summ})
    print(f"wrote {out}/md.traj, md.csv, md.png, npt_summary.json")


if __name__ == "__main__":
    main()
