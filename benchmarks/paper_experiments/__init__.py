"""The paper's training experiments (sections 3.1-3.3) as a small package; ``benchmarks/experiments.py``
is its command line.

- :mod:`plan`: scales, the four experiments as training runs, runs shared between experiments;
- :mod:`data`: the benchmark frames by role, file hashes, seeded nested subsets, synthetic test data;
- :mod:`runs`: training one run per method, reuse of finished runs, the sweep and its time estimate;
- :mod:`aggregate`: mean ± std over seeds (pandas);
- :mod:`report`: tables, plots, findings and README.md.
"""
