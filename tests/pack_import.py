"""Import the repository root as a package, as ComfyUI imports a folder in custom_nodes/.

Plain Python (no pytest), so the tests, the in-process ComfyUI check and subprocesses share it. The
nodes reach rmbg_core relatively, so the pack has its own copy (``<name>.rmbg_core``), as it does
inside ComfyUI: compare errors by message or base class, not by the top-level rmbg_core's classes.
"""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK = "rmbg_kit_pack"


def import_pack(name: str = PACK):
    """The pack imported under ``name`` (once; later calls return the same module)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
