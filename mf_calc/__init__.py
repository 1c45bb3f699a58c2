"""mf_calc: multi-fidelity CHGNet force field for Li-ion cathodes."""
