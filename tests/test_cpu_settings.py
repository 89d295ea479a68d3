"""CPU runtime defaults: set before torch starts, never over a user's own values, off on request."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

PRINT_SETTINGS = "import json, os; print(json.dumps({k: os.environ.get(k) for k in ('OMP_WAIT_POLICY', 'THP_MEM_ALLOC_ENABLE')}))"


def settings_after(code: str, **env) -> dict:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("OMP_WAIT_POLICY", "THP_MEM_ALLOC_ENABLE", "RMBG_NO_CPU_DEFAULTS")}
    environment.update(env)
    result = subprocess.run([sys.executable, "-c", f"{code}; {PRINT_SETTINGS}"], env=environment, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("code,env,expected", [
    ("import rmbg_core", {}, {"OMP_WAIT_POLICY": "PASSIVE", "THP_MEM_ALLOC_ENABLE": "1"}),
    ("import rmbg_core", {"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "ACTIVE", "THP_MEM_ALLOC_ENABLE": "1"}),
    ("import rmbg_core", {"RMBG_NO_CPU_DEFAULTS": "1"}, {"OMP_WAIT_POLICY": None, "THP_MEM_ALLOC_ENABLE": None}),
    ("import torch, rmbg_core", {}, {"OMP_WAIT_POLICY": None, "THP_MEM_ALLOC_ENABLE": None}),
])
def test_defaults_apply_only_before_torch_and_never_override(code, env, expected):
    assert settings_after(code, **env) == expected
