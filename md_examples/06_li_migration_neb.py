"""Li migration barriers in LiFePO4 by climbing-image NEB, at every fidelity of the model side by side: the
vacancy hop within the [010] channel and across channels along [001]. Reference: GGA+U NEB 0.27 eV along
[010] and about 2.5 eV across channels (Morgan, Van der Ven & Ceder 2004); universal ML potentials ~0.16 eV.

    python md_examples/06_li_migration_neb.py --quick   # (1,1,2) cell, 55 atoms, 3 images, fmax 0.1
    python md_examples/06_li_migration_neb.py           # (1,2,2) cell, 111 atoms, 5 images, fmax 0.05
"""

from _common import parser, setup

from mf_calc import MFCalculator, lmfp
from mf_calc.atomic import write_json
from mf_calc.workflows.neb import NEBSettings, li_barriers, plot_profiles


def main():
    p = parser(__doc__.splitlines()[0], "runs/md_examples/06_neb")
    p.add_argument("--y-mn", type=float, default=0.0, help="Mn fraction (0: LiFePO4, 1: LiMnPO4)")
    args = p.parse_args()
    calc, out = setup(args)
    model = calc.model
    supercell, images, fmax = ((1, 1, 2), 3, 0.1) if args.quick else ((1, 2, 2), 5, 0.05)
    atoms = lmfp(x_li=1.0, y_mn=args.y_mn, supercell=supercell, seed=0)
    fidelities = [args.fidelity] if args.fidelity else list(model.fidelities.names)
    print(f"{atoms.get_chemical_formula()} ({len(atoms)} atoms, one Li removed), {images} images, fmax {fmax} eV/Å, "
          f"fidelities {fidelities}", flush=True)
    results = {}
    for fid in fidelities:
        results[fid] = li_barriers(atoms, lambda fid=fid: MFCalculator(model, fidelity=fid),
                                   settings=NEBSettings(images, fmax))
        for direction, r in results[fid].items():
            print(f"  {fid:>8} [{direction}]: barrier {r.barrier:.3f} eV, hop {r.hop_distance:.2f} Å, "
                  f"{'converged' if r.converged else 'not converged'} ({r.steps} steps, {r.seconds:.0f} s)", flush=True)
    write_json(out / "barriers.json", {f: {d: r.barrier for d, r in rs.items()} for f, rs in results.items()})
    print(f"wrote {out}/barriers.json and {plot_profiles(results, out / 'neb_profile.png')}")


if __name__ == "__main__":
    main()
