"""CPU runtime defaults: set before torch starts, never over a user's own values, off on request."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

PRINT_SETTINGS = "import json, os; print(json.dumps({k: os.environ.get(k) for k in ('GOMP_SPINCOUNT', 'OMP_WAIT_POLICY', 'THP_MEM_ALLOC_ENABLE')}))"


def settings_after(code: str, **env) -> dict:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "THP_MEM_ALLOC_ENABLE", "RMBG_NO_CPU_DEFAULTS")}
    environment.update(env)
    result = subprocess.run([sys.executable, "-c", f"{code}; {PRINT_SETTINGS}"], env=environment, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


APPLY = "from rmbg_core.cpu_settings import apply_cpu_defaults; apply_cpu_defaults()"
DEFAULTS = {"GOMP_SPINCOUNT": "1000", "OMP_WAIT_POLICY": None, "THP_MEM_ALLOC_ENABLE": "1"}
UNSET = {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": None, "THP_MEM_ALLOC_ENABLE": None}


@pytest.mark.parametrize("code,env,expected", [
    (APPLY, {}, DEFAULTS),
    (APPLY, {"GOMP_SPINCOUNT": "50"}, {**DEFAULTS, "GOMP_SPINCOUNT": "50"}),
    # The user's own wait policy stands: no spin count of ours overrides it.
    (APPLY, {"OMP_WAIT_POLICY": "ACTIVE"}, {**UNSET, "OMP_WAIT_POLICY": "ACTIVE", "THP_MEM_ALLOC_ENABLE": "1"}),
    (APPLY, {"RMBG_NO_CPU_DEFAULTS": "1"}, UNSET),
    (f"import torch; {APPLY}", {}, UNSET),
    ("import rmbg_core; rmbg_core.load_model", {}, UNSET),
])
def test_defaults_apply_only_before_torch_and_never_override(code, env, expected):
    assert settings_after(code, **env) == expected


@pytest.mark.parametrize("code", [
    "import rmbg_core",
    "import rmbg_core.cpu; rmbg_core.cpu.apply_cpu_defaults(); rmbg_core.cpu.accelerate_by_default()",
    "from rmbg_core.cpu.settings import apply_cpu_defaults; apply_cpu_defaults()",
    "from rmbg_core.cpu_settings import apply_cpu_defaults; apply_cpu_defaults()",
])
def test_importing_the_settings_does_not_import_torch(code):
    # The public names load on first use, so the rmbg command can set the defaults before torch starts.
    result = subprocess.run([sys.executable, "-c", f"import sys; {code}; print('torch' in sys.modules)"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.parametrize("value,expected", [(None, True), ("", True), ("1", True), ("yes", True), ("0", False),
                                            ("false", False), (" Off ", False), ("no", False)])
def test_rmbg_accelerate_sets_the_default(value, expected, monkeypatch):
    from rmbg_core.cpu.settings import accelerate_by_default, resolve_accelerate

    if value is None:
        monkeypatch.delenv("RMBG_ACCELERATE", raising=False)
    else:
        monkeypatch.setenv("RMBG_ACCELERATE", value)
    assert accelerate_by_default() is expected and resolve_accelerate(None) is expected
    assert resolve_accelerate(True) is True and resolve_accelerate(False) is False


def test_rmbg_command_applies_them_before_torch():
    code = ("import sys, rmbg_core.__main__ as entry; sys.argv = ['rmbg', '--version']\n"
            "try:\n    entry.main()\nexcept SystemExit:\n    pass\nimport torch\n"
            "assert torch.get_num_threads() > 0")
    assert settings_after(code) == DEFAULTS
