"""What ``bench list variants`` shows, read from the variants' source without importing them.

Importing a variant imports torch (about 2.5 s); listing needs only class-level literals: ``paper``,
``default_lr`` and the defaults of the ``Config`` dataclass. :func:`static_summary` reads those from the module's
syntax tree (following base classes and ``from ... import`` within Python source), and returns None as soon as
anything is not a plain literal (a computed default, a ``field(default_factory=...)``, a class it cannot find);
the caller then imports the variant as usual. ``tests/test_cli.py`` checks that the two agree for every built-in.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Summary:
    paper: str
    default_lr: float
    defaults: dict[str, Any]


class _Unknown(Exception):
    """Something the static reading cannot decide; the caller imports instead."""


def static_summary(target: str) -> Summary | None:
    """The listing facts of a ``"module:Class"`` variant target, or None when they need an import."""
    module, _, name = target.partition(":")
    try:
        cls = _find_class(module, name)
        attrs = _class_attrs(*cls)
        config = attrs.get("Config")
        if not isinstance(config, _ClassRef):
            raise _Unknown
        defaults = _dataclass_defaults(*config.found)
        paper, lr = attrs.get("paper", ""), attrs.get("default_lr")
        if not isinstance(paper, str) or not isinstance(lr, (int, float)) or isinstance(lr, bool):
            raise _Unknown
        return Summary(paper, float(lr), defaults)
    except (_Unknown, OSError, SyntaxError, ImportError, ValueError):
        return None


@dataclass(frozen=True)
class _ClassRef:
    found: tuple[ast.ClassDef, str]  # the class and the module it lives in


_TREES: dict[str, ast.Module] = {}


def _tree(module: str) -> ast.Module:
    if module not in _TREES:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            raise _Unknown
        with open(spec.origin, encoding="utf-8") as f:
            _TREES[module] = ast.parse(f.read())
    return _TREES[module]


def _find_class(module: str, name: str, depth: int = 0) -> tuple[ast.ClassDef, str]:
    if depth > 8:
        raise _Unknown
    tree = _tree(module)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node, module
    for node in tree.body:  # imported into this module
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _find_class(node.module, alias.name, depth + 1)
    raise _Unknown


def _resolve(expr: ast.expr, module: str) -> Any:
    if isinstance(expr, ast.Name):
        return _ClassRef(_find_class(module, expr.id))
    return ast.literal_eval(expr)  # ValueError for anything that is not a literal


def _class_attrs(cls: ast.ClassDef, module: str) -> dict[str, Any]:
    """Class-level assignments, base classes first (so the class's own win)."""
    attrs: dict[str, Any] = {}
    for base in cls.bases:
        if not isinstance(base, ast.Name):
            raise _Unknown
        if base.id != "object":
            attrs.update(_class_attrs(*_find_class(module, base.id)))
    for node in cls.body:
        target, value = _assignment(node)
        if target in ("paper", "default_lr", "Config") and value is not None:
            attrs[target] = _resolve(value, module)
    return attrs


def _dataclass_defaults(cls: ast.ClassDef, module: str) -> dict[str, Any]:
    """Field -> default of a dataclass, inherited fields first in their original places (dataclass order)."""
    fields: dict[str, Any] = {}
    for base in cls.bases:
        if not isinstance(base, ast.Name):
            raise _Unknown
        fields.update(_dataclass_defaults(*_find_class(module, base.id)))
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if "ClassVar" in ast.unparse(node.annotation):
                continue
            if node.value is None:
                raise _Unknown  # a field without default
            fields[node.target.id] = ast.literal_eval(node.value)
    return fields


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id, node.value
    return None, None
