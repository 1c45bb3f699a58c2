"""Cheap stand-ins for a DFT code in the labelling tests (importable by spawned worker processes)."""

import os

from ase.calculators.calculator import all_changes
from ase.calculators.lj import LennardJones


class FlakyLJ(LennardJones):
    """Lennard-Jones that raises, like an SCF that does not converge, for structures of ``fail_sizes`` atoms,
    and ends its process abruptly (like a segfault) for ``crash_sizes`` atoms."""

    def __init__(self, fail_sizes=(), crash_sizes=(), **kwargs):
        super().__init__(**kwargs)
        self.fail_sizes, self.crash_sizes = tuple(fail_sizes), tuple(crash_sizes)

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        if len(atoms) in self.crash_sizes:
            os._exit(3)
        if len(atoms) in self.fail_sizes:
            raise RuntimeError("SCF did not converge in 200 iterations (test)")
        super().calculate(atoms, properties, system_changes)
