"""Li/vacancy formation-energy hull and voltage profile of Li_xFePO4 and Li_x(Mn0.5Fe0.5)PO4 at one fidelity:
does Li_xFePO4 phase-separate (only x = 0 and 1 on the hull, as GGA+U finds), and how large is the step from
the Fe2+/3+ to the Mn2+/3+ plateau (experiment: 3.45 → 4.1 V)? Absolute voltages use bcc Li metal relaxed with
the shipped CHGNet model of the same fidelity where one exists (chgnet-0.3.0 for pbe_u, chgnet-r2scan for
r2scan); a rerun with the same --out reuses finished relaxations.

    python md_examples/07_hull_voltage.py --quick   # (1,1,1) cells (4 Li sites), ≤ 3 orderings per x, fmax 0.1
    python md_examples/07_hull_voltage.py           # (1,2,1) cells (8 Li sites), ≤ 10 orderings per x
"""

from _common import parser, setup

from mf_calc import MFCalculator, lmfp
from mf_calc.atomic import write_json
from mf_calc.workflows.hull import HullSettings, formation_hull, li_chemical_potential, plot_hull
from mf_calc.workflows.io import fidelity_of


def main():
    p = parser(__doc__.splitlines()[0], "runs/md_examples/07_hull")
    args = p.parse_args()
    calc, out = setup(args)
    fid = fidelity_of(calc)
    supercell, max_per_x, fmax = ((1, 1, 1), 3, 0.1) if args.quick else ((1, 2, 1), 10, 0.05)
    mu_li = li_chemical_potential("auto", fid)
    results = {}
    for y in (0.0, 0.5):
        host = lmfp(x_li=1.0, y_mn=y, supercell=supercell, seed=0)
        r = formation_hull(host, lambda: MFCalculator(calc.model, fidelity=fid), out / f"relaxed_y{y}",
                           HullSettings(max_per_x=max_per_x, fmax=fmax), mu_li=mu_li)
        results[f"y_Mn={y}"] = r
        on = sorted({x for x, h in zip(r["x"], r["on_hull"]) if h})
        print(f"{host.get_chemical_formula()} [{fid}]: on the hull at x = {on}; plateaus "
              + ", ".join(f"{s['x_from']:.2f}-{s['x_to']:.2f}: "
                          + (f"{s['voltage_V']:.2f} V" if s["voltage_V"] is not None else f"{s['relative_V']:+.2f} V")
                          for s in r["segments"])
              + ("" if r["voltage_step_V"] is None else f"; Fe→Mn step {r['voltage_step_V']:.2f} V"), flush=True)
    write_json(out / "hull.json", results)
    print(f"wrote {out}/hull.json and {plot_hull(results, out / 'hull.png')}")


if __name__ == "__main__":
    main()
