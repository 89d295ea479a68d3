"""The layers of docs/architecture.md, checked from the source: imports flow one way (front ends -> public
API -> model/, edges/ -> cpu/), and the library never loads its command line."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "rmbg_core"
FRONT_ENDS = {"cli", "serve", "ray", "hub", "__main__"}
PUBLIC_API = {"api", "batch", "formats", "files", "errors", "options", "version", "cpu_settings", ""}
CORE = {"model", "edges"}
# What edges/ may take from model/: image reading and channel splitting, nothing of the network.
EDGES_FROM_MODEL = {"model.images"}
ROOT_FRONT_ENDS = ["pipeline_rmbg.py", "modeling_rmbg.py", "configuration_rmbg.py", *sorted(
    str(path.relative_to(REPO)) for path in (REPO / "nodes").glob("*.py"))]


def module_name(path: Path) -> str:
    """``rmbg_core/model/images.py`` -> ``model.images``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, package: str | None) -> set[str]:
    """The rmbg_core modules (as ``model.images``) that ``path`` imports anywhere, functions included;
    ``package`` is ``path``'s package inside rmbg_core, None for a file outside it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level and package is None:  # nodes/: ``from ..rmbg_core.model import ...``
                if (node.module or "").startswith("rmbg_core"):
                    found.add(node.module.removeprefix("rmbg_core").lstrip("."))
                continue
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                name = ".".join([*base, node.module] if node.module else base)
                names = [name] if node.module else [f"{name}.{alias.name}".lstrip(".") for alias in node.names]
            elif (node.module or "").startswith("rmbg_core"):
                names = [node.module.removeprefix("rmbg_core").lstrip(".")]
            else:
                continue
            found.update(names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.removeprefix("rmbg_core").lstrip(".") for alias in node.names
                         if alias.name.split(".")[0] == "rmbg_core")
    return found


def layer(module: str) -> str:
    """The subpackage (``model``) or top-level module (``api``) a module belongs to."""
    return module.split(".")[0]


def package_imports() -> dict[str, set[str]]:
    """Every rmbg_core module and the rmbg_core modules it imports."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = imported(path, package)
    return graph


GRAPH = package_imports()


def test_the_parser_sees_relative_and_absolute_imports():
    assert "cpu.settings" in GRAPH["model.model"] and "model.network" in GRAPH["model.inference"]
    assert "cli.main" in GRAPH["__main__"] and "errors" in GRAPH["edges.compose"]


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) == "cpu"))
def test_the_accelerator_imports_only_itself(module):
    outside = {name for name in GRAPH[module] if layer(name) != "cpu"}
    assert not outside, f"rmbg_core.{module} (cpu/) imports {sorted(outside)}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) in CORE))
def test_model_and_edges_import_no_front_end_nor_the_public_api(module):
    allowed = CORE | {"cpu", "errors", "options", "version"}
    outside = {name for name in GRAPH[module] if layer(name) not in allowed}
    assert not outside, f"rmbg_core.{module} imports {sorted(outside)}, above its layer"
    if layer(module) == "edges":
        network = {name for name in GRAPH[module] if layer(name) == "model"} - EDGES_FROM_MODEL
        assert not network, f"rmbg_core.{module} (edges/) imports model internals {sorted(network)}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) in PUBLIC_API and m not in FRONT_ENDS))
def test_the_public_api_imports_no_front_end(module):
    front = {name for name in GRAPH[module] if layer(name) in FRONT_ENDS}
    assert not front, f"rmbg_core.{module} imports the front ends {sorted(front)}"


@pytest.mark.parametrize("path", ROOT_FRONT_ENDS)
def test_library_front_ends_do_not_import_the_application_front_ends(path):
    """nodes/ and the transformers files use the library, never the CLI, the server or Ray."""
    front = {name for name in imported(REPO / path, None) if layer(name) in FRONT_ENDS}
    assert not front, f"{path} imports {sorted(front)}"


def test_nothing_in_the_package_imports_a_front_end_file():
    outside = {"nodes", "pipeline_rmbg", "modeling_rmbg", "configuration_rmbg"}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                     else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            assert not {name.split(".")[0] for name in names} & outside, f"{path} imports a front-end file"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) not in FRONT_ENDS))
def test_the_library_imports_no_application_machinery(module):
    """Argument parsing, progress bars and signal handling belong to cli/."""
    path = PACKAGE / (module.replace(".", "/") or "__init__")
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert not names & {"argparse", "tqdm", "signal"}, f"rmbg_core.{module} imports {sorted(names & {'argparse', 'tqdm', 'signal'})}"


def test_removing_a_background_loads_no_command_line_module(fixture_dir):
    """``import rmbg_core`` and a remove_background call leave the CLI, serve, Ray and hub unloaded (torch
    itself loads tqdm and argparse, so those are checked in the source: see the test above)."""
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import rmbg_core
        model = rmbg_core.load_model({str(fixture_dir)!r}, device="cpu", dtype="float32")
        rmbg_core.remove_background(np.zeros((32, 48, 3), dtype=np.uint8), model=model, background="#00ff00")
        unwanted = ("rmbg_core.cli", "rmbg_core.serve", "rmbg_core.ray", "rmbg_core.hub")
        print(sorted(name for name in sys.modules if name.startswith(unwanted) or name == "rmbg_core.__main__"))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"loaded: {done.stdout.strip()}"
