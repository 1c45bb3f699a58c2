"""Give up a stalled GPAW SCF, so that the spec's retry settings take over (or the frame is recorded as failed) at
once instead of after ``maxiter``.

An SCF with a gentle mixer can settle on a plateau: the density error stops falling (charge or spin sloshing
between near-degenerate d states) and the run goes on until ``maxiter``. ``GiveUpStalled`` is a GPAW convergence
criterion that never holds an SCF back; it raises ``SCFStalled`` once the density error (GPAW's, per valence
electron) has not halved for ``window`` iterations. The label pipeline records that attempt as failed, with the
reason, and runs the spec's retry, if it has one and this was the first try, at once. The labels are those of a
converged SCF either way; only the time spent on an SCF that would not converge changes.

An SCF whose density error is already within ``NEAR_CONVERGED`` times the density criterion is not stalled: its
error flickers around the criterion while the other criteria (forces) finish, and giving up there threw away an
almost converged SCF (a 50-atom ``gpaw_afm`` frame after 167 iterations, its density error between 1.0 and 1.6
times the criterion for the last 50 of them).
"""

from __future__ import annotations

import math
import warnings

GPAW_DENSITY_CRITERION = 1e-4  # GPAW's default density criterion (electrons per valence electron)
NEAR_CONVERGED = 3.0  # a density error below this many times the criterion never counts as a stall


class SCFStalled(RuntimeError):
    """The SCF's density error stopped falling."""


class GiveUpStalled:
    """GPAW convergence criterion (duck-typed, so that GPAW stays optional here); ``window``: iterations;
    ``floor``: a density error (per valence electron) below which the SCF never counts as stalled."""

    name = "stall"
    tablename = "stall"
    calc_last = False
    override_others = False

    def __init__(self, window: int, floor: float = 0.0):
        if window < 2:
            raise ValueError(f"a stalled SCF needs a window of at least 2 iterations, got {window}")
        self.window, self.floor = window, float(floor)
        self.description = (f"Give up when the density error has not halved in {window} iterations "
                            f"(not below {self.floor:g})")
        self.reset()

    def reset(self) -> None:
        self.best, self.since, self.iterations = math.inf, 0, 0

    def todict(self) -> dict:
        return {"name": self.name, "window": self.window, "floor": self.floor}

    def __call__(self, context) -> tuple[bool, str]:
        niter = getattr(context, "niter", None)
        if niter is not None and niter <= self.iterations:  # a new SCF on the same calculator (next frame)
            self.reset()
        self.iterations = niter if niter is not None else self.iterations + 1
        error, valence = context.dens.error, context.wfs.nvalence
        if error is None or not valence or not math.isfinite(error):
            return True, ""
        error /= valence
        if error < self.best / 2 or error < self.floor:
            self.best, self.since = min(error, self.best), 0
        else:
            self.since += 1
        if self.since >= self.window:
            raise SCFStalled(f"SCF stalled: the density error ({error:.2g} per valence electron) has not halved in "
                             f"{self.window} iterations (best {self.best:.2g}; {self.iterations} iterations)")
        return True, ""


def with_stall(convergence: dict | None, window: int | None) -> dict:
    """GPAW ``convergence`` settings with a fresh ``GiveUpStalled(window)`` among its custom criteria, blind below
    ``NEAR_CONVERGED`` times their density criterion (unchanged for ``window`` None)."""
    convergence = dict(convergence or {})
    if window is not None:  # GPAW warns of every custom criterion; each calculator gets its own instance here
        warnings.filterwarnings("ignore", message="Custom convergence criterion stall encountered")
        custom = convergence.get("custom", [])
        floor = NEAR_CONVERGED * float(convergence.get("density", GPAW_DENSITY_CRITERION))
        convergence["custom"] = [*(custom if isinstance(custom, (list, tuple)) else [custom]),
                                 GiveUpStalled(window, floor)]
    return convergence
