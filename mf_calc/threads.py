"""CPU threads that stay fast on a shared machine.

Two torch threads on a 2-core machine where another process is busy were measured 58x slower per force
call (7.3 s instead of 0.12 s): OpenMP threads spin while they wait for each other, and a spinning thread
steals the core its partner needs. Two defences:

- ``import mf_calc`` sets ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep) when the load average says
  other work shares this process's cores, unless the variable is set already. On an idle machine OpenMP's
  own default (spin briefly, then sleep) is kept: sleeping threads wake late after every small operation,
  which slows a force call on an idle machine. OpenMP reads the variable when torch loads, so it works when
  mf_calc is imported before torch; a script that imports torch first sets it itself:
  ``OMP_WAIT_POLICY=PASSIVE python script.py``.
- :func:`configure_threads` picks the torch thread count: the number given, or by default the cores of
  this process's CPU set that the load average leaves free (at least one), with a one-line note on
  stderr when other work shares the cores. Every ``mf-calc`` command and example has ``--threads``.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

WAIT_POLICY = "OMP_WAIT_POLICY"


def set_passive_wait() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless set, when other work shares this process's cores (:func:`free_cores`);
    effective only before torch (OpenMP) is loaded."""
    if free_cores() < available_cores():
        os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def free_cores(n_cores: int | None = None) -> int:
    """Cores not taken by other work (at least 1): a core counts as busy per 1.0 of the 1-minute load average,
    from 0.75 on (the load of a process that just ended decays over a minute)."""
    n_cores = n_cores or available_cores()
    try:
        busy = int(os.getloadavg()[0] + 0.25)
    except OSError:
        return n_cores
    return max(1, min(n_cores, n_cores - busy))


def configure_threads(threads: int | None = None, quiet: bool = False) -> int:
    """Set torch's intra-op threads to ``threads`` or, when None, to :func:`free_cores`; return the count."""
    import torch

    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
    else:
        n_cores = available_cores()
        threads = free_cores(n_cores)
        if threads < n_cores and not quiet:
            log.warning("note: other work is using %d of this process's %d cores (load average %.1f); using %d torch "
                        "thread(s). --threads N overrides.", n_cores - threads, n_cores, os.getloadavg()[0], threads)
    torch.set_num_threads(threads)
    return threads
