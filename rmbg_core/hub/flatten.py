"""Flatten top-level front-end modules, plus the rmbg_core modules they need, into one folder's sources.

transformers loads remote code from one flat folder and follows only ``from .name import ...``
imports. The front ends import the core as ``from rmbg_core.name import ...`` (or
``from rmbg_core.package.name import ...``) and each other as ``from sibling import ...``; exactly
those forms are rewritten to relative imports of the flat file, and any other way of importing
rmbg_core (or a sibling) fails loudly, so the copy can never silently reach for a package hub users do
not have. Core modules import each other relatively, by module (``from .name import ...``,
``from ..name import ...``, ``from .package.name import ...``), and those imports are rewritten to the
flat folder's ``from .name import ...``; each module becomes one file named after it, so module names
must be unique across the core's packages (a clash fails). The core modules copied are computed from
those imports, transitively, never listed by hand.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterable

from ..errors import RMBGError

# This module lives in rmbg_core/hub/; the package it flattens is rmbg_core itself.
CORE_DIR = Path(__file__).resolve().parents[1]
CORE_PACKAGE = CORE_DIR.name
# The front-end modules live beside the core package (the repository root, or site-packages).
PROJECT_ROOT = CORE_DIR.parent
# The relative-import patterns transformers itself uses to find the files remote code needs.
_TRANSFORMERS_RELATIVE_IMPORTS = (re.compile(r"^\s*import\s+\.(\S+)\s*$", re.MULTILINE),
                                  re.compile(r"^\s*from\s+\.(\S+)\s+import", re.MULTILINE))


class FlattenError(RMBGError):
    """A module imports the core or a sibling in a form that cannot be flattened."""


def flatten(entry_modules: Iterable[str], *, root: Path = PROJECT_ROOT,
            core_dir: Path = CORE_DIR) -> dict[str, str]:
    """``{file name: source}`` for the entry modules (imports rewritten) and every core module they need.

    Entry modules are ``root/<name>.py``; core module ``a.b`` is ``core_dir/a/b.py`` and becomes ``b.py``.
    """
    entries = list(entry_modules)
    sources: dict[str, str] = {}
    owners: dict[str, str] = {}  # flat file name -> the module it holds
    needed: list[str] = []
    for name in entries:
        path = Path(root) / f"{name}.py"
        if not path.is_file():
            raise FlattenError(f"{path}: front-end module {name!r} not found")
        source, core_imports = rewrite_entry(path.read_text(encoding="utf-8"), str(path), set(entries))
        _claim(owners, f"{name}.py", name)
        sources[f"{name}.py"] = source
        needed.extend(core_imports)
    while needed:
        module = needed.pop()
        filename = f"{flat_name(module)}.py"
        if owners.get(filename) == f"{CORE_PACKAGE}.{module}":
            continue
        path = Path(core_dir).joinpath(*module.split(".")).with_suffix(".py")
        if not path.is_file():
            if path.with_suffix("").joinpath("__init__.py").is_file():
                raise FlattenError(f"{CORE_PACKAGE}.{module} is a package: import from the module that "
                                   "defines the name, not from the package")
            raise FlattenError(f"{CORE_PACKAGE}.{module} is imported but {path} does not exist")
        _claim(owners, filename, f"{CORE_PACKAGE}.{module}")
        sources[filename], imported = rewrite_core(path.read_text(encoding="utf-8"), str(path), module)
        needed.extend(imported)
    for name in entries:
        sources[f"{name}.py"] += indirect_imports_block(f"{name}.py", sources)
    check_transformers_view(sources)
    return sources


def flat_name(module: str) -> str:
    """The flat folder's module name for core module ``module`` (``cpu.kernels`` -> ``kernels``)."""
    return module.rsplit(".", 1)[-1]


def _claim(owners: dict[str, str], filename: str, module: str) -> None:
    if owners.setdefault(filename, module) != module:
        raise FlattenError(f"{owners[filename]} and {module} would both be {filename} in the flat folder: "
                           "rename one (module names must be unique across the core's packages)")


def rewrite_entry(source: str, filename: str, siblings: set[str]) -> tuple[str, list[str]]:
    """Rewrite ``from rmbg_core[.package].x import`` and ``from sibling import`` to flat relative imports.

    Returns the new source and the core modules it imports (dotted, below ``rmbg_core``). Any other
    import of the core or of a sibling (``import rmbg_core``, ``from rmbg_core import x``, relative
    imports) raises :class:`FlattenError` naming the file and line.
    """
    lines = source.splitlines(keepends=True)
    core_imports = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top == CORE_PACKAGE or top in siblings:
                    _fail(filename, node, f"'import {alias.name}' cannot be flattened; "
                                          f"use 'from {CORE_PACKAGE}.<module> import <name>'")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                _fail(filename, node, "a top-level front-end module cannot use relative imports")
            if module in siblings:
                target = module
            elif module.split(".")[0] == CORE_PACKAGE:
                target = module[len(CORE_PACKAGE) + 1:]
                if not target:
                    _fail(filename, node, f"'from {module} import ...' cannot be flattened; "
                                          f"use 'from {CORE_PACKAGE}.<module> import <name>'")
                core_imports.append(target)
                target = flat_name(target)
            else:
                continue
            _rewrite_line(lines, node, filename, re.escape(module), target)
    rewritten = "".join(lines)
    for node in ast.walk(ast.parse(rewritten, filename)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        if any(name.split(".")[0] in siblings | {CORE_PACKAGE} for name in names):
            _fail(filename, node, "import left absolute after rewriting")
    return rewritten, core_imports


def rewrite_core(source: str, filename: str, module: str) -> tuple[str, list[str]]:
    """Core module ``module``'s source with its relative imports made flat, and the modules it imports."""
    lines = source.splitlines(keepends=True)
    imported = []
    for node, target in _core_imports(source, filename, module):
        imported.append(target)
        _rewrite_line(lines, node, filename, re.escape("." * node.level + node.module), flat_name(target))
    return "".join(lines), imported


def core_relative_imports(source: str, filename: str, module: str | None = None) -> list[str]:
    """The core modules (dotted, below ``rmbg_core``) that core module ``module`` imports.

    ``module`` defaults to a top-level module named after ``filename``. Only relative imports naming a
    module are allowed (``from .name import x``, ``from ..name import x``, ``from .package.name import x``).
    """
    return [target for _, target in _core_imports(source, filename, module or Path(filename).stem)]


def _core_imports(source: str, filename: str, module: str) -> list[tuple[ast.ImportFrom, str]]:
    package = module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.ImportFrom) and node.level:
            if not node.module or node.level - 1 > len(package):
                _fail(filename, node, "core modules must import each other by module ('from .module import "
                                      "name', 'from ..module import name'; no 'from . import x', nothing "
                                      f"outside {CORE_PACKAGE})")
            base = package[:len(package) - (node.level - 1)]
            found.append((node, ".".join([*base, node.module])))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(name.split(".")[0] == CORE_PACKAGE for name in names):
                _fail(filename, node, f"core modules must not import {CORE_PACKAGE} by its absolute name")
    return found


def _rewrite_line(lines: list[str], node: ast.ImportFrom, filename: str, spelled: str, flat: str) -> None:
    """Turn ``from <spelled> import`` on ``node``'s line into ``from .<flat> import``."""
    index = node.lineno - 1
    head, tail = lines[index][:node.col_offset], lines[index][node.col_offset:]
    tail, count = re.subn(rf"^from\s+{spelled}(?=\s+import\b)", f"from .{flat}", tail)
    if count != 1:
        _fail(filename, node, "import statement must start with 'from <module> import' on one line")
    lines[index] = head + tail


def indirect_imports_block(filename: str, sources: dict[str, str]) -> str:
    """Import lines naming every module ``filename`` needs only indirectly ("" if there are none).

    transformers 4.x copies from a local folder just the files an entry file imports directly, then
    fails on the ones those import; naming them in the entry file makes it copy them too.
    """
    direct = set(core_relative_imports(sources[filename], filename))
    reached, pending = set(direct), list(direct)
    while pending:
        name = pending.pop()
        for imported in core_relative_imports(sources[f"{name}.py"], f"{name}.py"):
            if imported not in reached:
                reached.add(imported)
                pending.append(imported)
    indirect = sorted(reached - direct - {filename[:-3]})
    if not indirect:
        return ""
    lines = "".join(f"from .{name} import __name__ as _{name}_module  # noqa: E402,F401\n" for name in indirect)
    return ("\n\n# transformers 4.x copies from a local folder only the modules an entry file imports directly;\n"
            "# the ones this file needs through them are named here so they are copied too.\n" + lines)


def check_transformers_view(sources: dict[str, str]) -> None:
    """Every relative import transformers' own pattern finds (docstrings included) must be a shipped file."""
    for filename, source in sources.items():
        for pattern in _TRANSFORMERS_RELATIVE_IMPORTS:
            for name in pattern.findall(source):
                if f"{name}.py" not in sources:
                    raise FlattenError(f"{filename}: transformers would look for {name}.py (a line reading "
                                       f"like a relative import of .{name}), which is not part of the folder")


def _fail(filename: str, node: ast.AST, problem: str) -> None:
    raise FlattenError(f"{filename}:{getattr(node, 'lineno', '?')}: {problem}")
