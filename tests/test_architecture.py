"""Public seams: no module of fastifkl imports, or reaches into, another module's ``_private`` names.

An AST scan of every module under ``fastifkl/``.  The rules:

1. ``from M import _name`` (``_name`` not a dunder) is a violation, unless ``M._name`` is a
   module (then rule 3 decides).
2. ``<expr>._name`` is a violation when ``<expr>`` is a name bound by an import (another
   module, or a name taken from one), and otherwise unless ``_name`` is defined in the module
   itself (a function, class, method, module or class attribute, or ``self._name = ...``):
   a module may use its own privates, on its own objects.
3. A private module (a dotted path with a ``_component``) may be imported only from inside the
   package that holds it: ``fastifkl._gammatone_kernels`` (the filterbank's Numba kernels, used
   by ``fastifkl.gammatone``), ``fastifkl._itml_kernels`` (used by ``fastifkl.itml``) and
   ``fastifkl._threads`` (the BLAS thread limiter) by modules of ``fastifkl``;
   ``fastifkl.features._common`` by modules of ``fastifkl.features``.  The names such a module
   offers its package carry no underscore.  A third-party private module is never allowed.

``__dunder__`` names are always fine.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fastifkl"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    """Dotted name of a source file under ``root``'s parent, and whether it is a package."""
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join(parts), is_pkg


def _resolve(node: ast.ImportFrom, module: str, is_pkg: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_module(dotted: str, root: Path) -> bool:
    """Whether ``dotted`` names a module or package of the scanned tree."""
    parts = dotted.split(".")
    if parts[0] != root.name:
        return False
    p = root.parent.joinpath(*parts)
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _private_module_ok(target: str, importer: str) -> bool:
    """Rule 3: every private component of ``target`` belongs to a package ``importer`` is in."""
    parts = target.split(".")
    for k, part in enumerate(parts):
        if _private(part):
            owner = ".".join(parts[:k])
            if not owner or not (importer == owner or importer.startswith(owner + ".")):
                return False
    return True


def _own_names(tree: ast.AST) -> set[str]:
    """Names the module defines: functions, classes, assignment targets, attributes it sets."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
        elif isinstance(node, ast.arg):
            own.add(node.arg)
    return own


def scan_source(source: str, module: str, is_pkg: bool = False, root: Path = PACKAGE) -> list[str]:
    """Violations of the rules in one module's source: ``"line: what"`` strings."""
    tree = ast.parse(source)
    bad: list[str] = []
    imported: set[str] = set()  # local names bound by imports
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if not _private_module_ok(a.name, module):
                    bad.append(f"{node.lineno}: import of the private module {a.name}")
                imported.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            src = _resolve(node, module, is_pkg)
            if not _private_module_ok(src, module):
                bad.append(f"{node.lineno}: import from the private module {src}")
            for a in node.names:
                imported.add(a.asname or a.name)
                if _private(a.name):
                    sub = f"{src}.{a.name}"
                    if _is_module(sub, root):
                        if not _private_module_ok(sub, module):
                            bad.append(f"{node.lineno}: import of the private module {sub}")
                    else:
                        bad.append(f"{node.lineno}: import of the private name {a.name} from {src}")
    own = _own_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            v = node.value
            if isinstance(v, ast.Name) and v.id in ("self", "cls"):
                continue
            if isinstance(v, ast.Name) and v.id in imported:
                bad.append(f"{node.lineno}: {v.id}.{node.attr} reaches into another module's private name")
            elif node.attr not in own:
                bad.append(f"{node.lineno}: .{node.attr} is a private name this module does not define")
    return bad


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_scan_covers_the_package():
    names = {_module_name(p, PACKAGE)[0] for p in _modules()}
    assert {"fastifkl", "fastifkl.separator", "fastifkl.experiment.run", "fastifkl.features.pitch_features"} <= names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_module_uses_another_modules_private_names(path):
    module, is_pkg = _module_name(path, PACKAGE)
    bad = scan_source(path.read_text(), module, is_pkg)
    assert not bad, f"{path.relative_to(PACKAGE.parent)}:\n  " + "\n  ".join(bad)


# the scanner itself: each rule catches what it should, and lets through what it should


@pytest.mark.parametrize("source, module, n_bad", [
    ("from .separator import _decision\n", "fastifkl.tuning", 1),
    ("from .separator import Separator, _PARAMS\n", "fastifkl.experiment", 1),
    ("from ..separator import _PARAMS\n", "fastifkl.experiment.config", 1),
    ("from .gammatone import _coeffs, _zero_phase\n", "fastifkl.experiment", 2),
    ("from .separator import __version__\n", "fastifkl.x", 0),
])
def test_scanner_private_names_imported(source, module, n_bad):
    assert len(scan_source(source, module)) == n_bad, scan_source(source, module)


@pytest.mark.parametrize("source, n_bad", [
    ("from . import pitch_features as _pitch\nx = _pitch._pitch_features(1)\n", 1),
    ("def f(sep):\n    sep._check_params()\n", 1),
    ("import numpy as np\nnp._core\n", 1),
    ("class A:\n    def __init__(self):\n        self._x = 1\n    def f(self, o):\n        return o._x + self._x\n", 0),
    ("_POOL = object()\n_POOL.__class__\n", 0),
])
def test_scanner_private_attributes(source, n_bad):
    assert len(scan_source(source, "fastifkl.features.other")) == n_bad, scan_source(source, "fastifkl.features.other")


def test_scanner_private_modules():
    """A private module is open to its own package only; a third-party one to nobody."""
    assert len(scan_source("import numpy._core\n", "fastifkl.x")) == 1
    assert len(scan_source("from .features import _common\n", "fastifkl.tuning")) == 1
    assert len(scan_source("from .features._common import check_responses\n", "fastifkl.tuning")) == 1
    assert scan_source("from ._common import check_responses\n", "fastifkl.features.ams") == []
    assert scan_source("from . import _threads\nfrom ._threads import blas_single_thread\n", "fastifkl.itml") == []
    assert scan_source("from ._gammatone_kernels import filter_forward\n", "fastifkl.gammatone") == []
