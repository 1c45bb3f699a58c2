"""Thread defaults that survive a shared machine (mf_calc.threads)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mf_calc.cli import build_parser
from mf_calc.threads import available_cores, configure_threads


@pytest.fixture
def restore_threads():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


def test_import_sets_a_passive_openmp_wait_on_a_busy_machine_unless_the_user_chose(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}

    def policy(load: float, extra: dict | None = None) -> str:
        code = (f"import os; os.getloadavg = lambda: ({load}, 0.0, 0.0); os.sched_getaffinity = lambda pid: {{0, 1}}; "
                "import mf_calc; "
                "print(os.environ.get('OMP_WAIT_POLICY', 'unset'))")
        out = subprocess.run([sys.executable, "-c", code], env=env | (extra or {}), capture_output=True, text=True,
                             check=True)
        return out.stdout.strip()

    assert policy(64.0) == "PASSIVE"  # other work on every core: waiting threads must sleep
    assert policy(0.0) == "unset"  # idle: OpenMP's own default (spin briefly), faster per force call
    assert policy(64.0, {"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


def test_configure_threads_explicit_and_by_free_cores(monkeypatch, capsys, caplog, restore_threads):
    assert configure_threads(1) == 1 and torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="threads must be >= 1"):
        configure_threads(0)
    n = available_cores()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert configure_threads() == n and capsys.readouterr().err == ""
    monkeypatch.setattr(os, "getloadavg", lambda: (n + 3.0, 0.0, 0.0))
    assert configure_threads() == 1 and torch.get_num_threads() == 1
    if n > 1:
        assert "using 1 torch thread(s)" in caplog.text


def test_every_command_takes_threads():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, command in commands.items():
        assert any("--threads" in a.option_strings for a in command._actions), name
