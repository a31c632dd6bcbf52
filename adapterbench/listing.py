"""What ``bench list`` shows: variants read from their source without importing them, the learning rate each
profile gives each variant, and a table folded to the terminal's width.

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


# ---- the learning rate each profile uses -----------------------------------------------------------------------
PAPER_RATE = "paper rate, not swept"


def lr_origin(profile: str, variant: str, task: str | None, settings: Any) -> str:
    """Where :func:`~adapterbench.harness.settings.resolve_lr` takes a run's rate from, in its order: ``--set
    lr``, the profile's rate swept on this task, the profile's rate, else the variant's paper rate."""
    from adapterbench.harness.settings import PROFILE_LR, PROFILE_TASK_LR

    if settings.lr is not None:
        return "--set lr"
    if variant in PROFILE_TASK_LR.get(profile, {}).get(task or "", {}):
        return f"{profile} profile, swept on {task}"
    if variant in PROFILE_LR.get(profile, {}):
        return f"{profile} profile"
    return PAPER_RATE


def profile_rates(variant: str, default_lr: float) -> str:
    """``bench list variants``' learning-rate cell: the paper's rate, then per profile the rate a run uses (with
    the tasks that have their own), profiles without a rate of their own named as such."""
    from adapterbench.harness.settings import PROFILE_TASK_LR, PROFILES, resolve_lr

    parts, unswept = [f"paper lr={default_lr:g}"], []
    for profile, settings in PROFILES.items():
        if lr_origin(profile, variant, None, settings) == PAPER_RATE:
            unswept.append(profile)
            continue
        rate = resolve_lr(profile, variant, default_lr, settings)
        per_task = [f"{task} {rates[variant]:g}" for task, rates in PROFILE_TASK_LR.get(profile, {}).items()
                    if variant in rates and rates[variant] != rate]  # tasks swept apart that chose another rate
        parts.append(f"{profile} {rate:g}" + (f" ({', '.join(per_task)})" if per_task else ""))
    if unswept:
        parts.append(f"{', '.join(unswept)}: {PAPER_RATE}")
    return "; ".join(parts)


# ---- a table that fits the terminal -----------------------------------------------------------------------------
GAP = 2
MIN_COLUMN = 8  # a column is never folded narrower than this


def column_widths(natural: list[int], width: int, foldable: set[int]) -> list[int]:
    """Widths that fit ``width`` (with :data:`GAP` between columns): the widest foldable column gives up one
    character at a time until the table fits or every foldable column is down to :data:`MIN_COLUMN`."""
    widths = list(natural)
    while sum(widths) + GAP * (len(widths) - 1) > width:
        candidates = [i for i in foldable if widths[i] > MIN_COLUMN]
        if not candidates:
            break  # a terminal narrower than the unfoldable columns: the lines overflow rather than vanish
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def fit_table(headers: tuple[str, ...], rows: list[tuple[str, ...]], width: int | None = None,
              fixed: tuple[int, ...] = (0,)) -> list[str]:
    """Plain-text table lines at most ``width`` wide (default: the terminal's): the columns not in ``fixed`` fold
    their text onto more lines (at spaces where possible); a row's first line starts with its first column."""
    import shutil
    import textwrap

    width = width or shutil.get_terminal_size(fallback=(120, 24)).columns
    natural = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    widths = column_widths(natural, width, set(range(len(headers))) - set(fixed))
    blocks = []
    for row in [headers, *rows]:
        cells = [textwrap.wrap(str(text), w, break_on_hyphens=False) or [""] for text, w in zip(row, widths)]
        blocks.append([(" " * GAP).join((c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths)).rstrip()
                       for k in range(max(len(c) for c in cells))])
    folded = any(len(b) > 1 for b in blocks)
    lines = []
    for i, block in enumerate(blocks):
        if folded and i > 1:
            lines.append("")  # folded rows read as rows only with a line between them
        lines += block
    return lines


def list_rows(what: str) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Headers and rows of ``bench list variants|tasks|presets`` (read without importing torch)."""
    if what == "presets":
        from adapterbench.presets import preset_rows

        return ("name", "paper", "runs", "from"), preset_rows()
    if what == "variants":
        from adapterbench.cli import variant_summary
        from adapterbench.variants import VARIANTS

        rows = []
        for entry in VARIANTS.entries():
            summary = variant_summary(entry)
            rows.append((entry.name, summary.paper, profile_rates(entry.name, summary.default_lr),
                         " ".join(f"{k}={v}" for k, v in summary.defaults.items()), entry.origin))
        for family in VARIANTS.families():
            rows.append((f"{family.name}:<method>", "wraps PEFT's own implementation of <method>",
                         f"peft:lora: lora's rate in every profile; other methods: their own default, {PAPER_RATE}",
                         "PEFT config fields", family.origin))
        return ("name", "paper", "learning rate per profile", "defaults", "from"), rows
    from adapterbench.tasks import TASKS

    rows = []
    for entry in TASKS.entries():
        task = entry.load()
        rows.append((task.name, task.paper, f"{task.kind}, primary {task.primary_metric}, "
                     f"eval {'+'.join(task.eval_splits)}, v{task.version}", entry.origin))
    return ("name", "paper", "defaults", "from"), rows
