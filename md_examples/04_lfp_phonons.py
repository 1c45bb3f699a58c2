"""LiFePO4 phonons: relax (tight), phonopy finite displacements in a (1,2,2) supercell (112 atoms), band
structure along Γ-X-S-Y-Γ-Z-U-R-T-Z|Y-T|U-X|S-R, DOS, thermal properties, imaginary-mode check.
Reference: highest modes (PO4 stretch) ≈ 1100 cm⁻¹ ≈ 135-140 meV; relaxed LFP has no imaginary modes.

    python md_examples/04_lfp_phonons.py --quick         # ~1.5 min on 2 cores
    python md_examples/04_lfp_phonons.py                 # denser mesh
"""

from _common import parser, setup

from mf_calc import lmfp
from mf_calc.workflows.phonons import PhononSettings, phonons
from mf_calc.workflows.relax import RelaxSettings, format_summary, relax


def main():
    args = parser(__doc__.splitlines()[0], "runs/md_examples/04_phonons").parse_args()
    calc, out = setup(args)
    # LFP has soft optical modes (lowest Γ optical 1.0 THz with lmfp-mf, 0.64 THz with the teacher): an earlier
    # lmfp-mf turned them imaginary (~0.2 THz) unless the cell was relaxed to fmax 5e-4 eV/Å (residual stress
    # < 0.01 GPa) and the finite differences ran in float64, so this example does both
    calc.model.double()
    relaxed, s = relax(lmfp(supercell=(1, 1, 1)), calc, RelaxSettings(fmax=0.0005, steps=1500))
    print(format_summary(s), flush=True)
    _, summ = phonons(relaxed, calc, PhononSettings(supercell=(1, 2, 2), displacement=0.01,
                                                    mesh=20.0 if args.quick else 40.0), out=out)
    print(f"{summ['n_displacements']} displacements, {summ['time_s']:.0f} s")
    print(f"highest frequency: {summ['max_frequency_THz']:.2f} THz = {summ['max_frequency_cm-1']:.0f} cm⁻¹ = "
          f"{summ['max_frequency_meV']:.1f} meV (reference ≈ 1100 cm⁻¹, 135-140 meV)")
    print(f"lowest frequency: {summ['min_frequency_THz']:.3f} THz; "
          f"Γ acoustic |f| ≤ {summ['gamma_acoustic_max_abs_THz']:.1e} THz; "
          f"imaginary beyond {summ['imag_tol_THz']} THz: Γ {summ['n_imaginary_gamma']}, band {summ['n_imaginary_band']}, "
          f"mesh {summ['n_imaginary_mesh']} -> {'dynamically stable' if summ['stable'] else 'UNSTABLE'}")
    t = summ["thermal_300K"]
    print(f"300 K (per mol of 28-atom cells): F = {t['free_energy_kJ_per_mol']:.1f} kJ/mol, "
          f"S = {t['entropy_J_per_K_mol']:.1f} J/K/mol, Cv = {t['heat_capacity_J_per_K_mol']:.1f} J/K/mol")
    print(f"wrote {out}/phonons.json, phonon_bands_dos.png, phonon_thermal.png, thermal_properties.csv, phonopy_params.yaml")


if __name__ == "__main__":
    main()
