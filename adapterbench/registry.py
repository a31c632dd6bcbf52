"""One generic registry for variants and tasks.

Entries are registered either eagerly (a decorator on the class) or lazily as a ``"module:attr"`` string, so
that ``bench list`` can name every built-in without importing torch. Third-party packages add entries through a
Python entry-point group; duplicate names raise, unknown names get a "did you mean".
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar

from adapterbench.errors import UserError

T = TypeVar("T")


@dataclass
class Entry:
    name: str
    target: Any  # the object itself, or a "module:attr" string resolved on first use
    origin: str  # "built-in", or the distribution that provided it ("my-variants 1.2")

    def load(self) -> Any:
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            self.target = getattr(importlib.import_module(module_name), attr)
        return self.target


class Registry(Generic[T]):
    """Name -> object, with lazy targets, entry-point plugins and helpful errors."""

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind  # "variant" or "task", used in messages
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        # "prefix:anything" names resolved by a factory, e.g. "peft:ia3" -> factory("ia3")
        self._families: dict[str, Entry] = {}
        self._plugins_loaded = entry_point_group is None

    def register(self, name: str, target: Any = None, *, origin: str = "built-in",
                 aliases: tuple[str, ...] = ()) -> Any:
        """Register ``target`` under ``name``; without a target, return a class decorator."""
        if target is None:
            def decorator(obj: T) -> T:
                self.register(name, obj, origin=origin, aliases=aliases)
                return obj
            return decorator
        if name in self._entries or name in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is registered twice "
                             f"({self._entries[name].origin if name in self._entries else 'alias'} and {origin})")
        self._entries[name] = Entry(name, target, origin)
        for alias in aliases:
            self._aliases[alias] = name
        return target

    def register_family(self, prefix: str, factory: Any, *, origin: str = "built-in") -> None:
        """Names ``prefix:suffix`` resolve to ``factory(suffix)`` (``factory`` may be a lazy string)."""
        if prefix in self._families:
            raise ValueError(f"{self.kind} family {prefix!r} is registered twice")
        self._families[prefix] = Entry(prefix, factory, origin)

    def families(self) -> list[Entry]:
        return [self._families[p] for p in sorted(self._families)]

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            dist = getattr(ep, "dist", None)
            origin = f"{dist.name} {dist.version}" if dist is not None else "plugin"
            self.register(ep.name, ep.value, origin=origin)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry]:
        self._load_plugins()
        for name in sorted(self._entries):
            yield self._entries[name]

    def entry(self, name: str) -> Entry:
        self._load_plugins()
        name = self._aliases.get(name, name)
        prefix, sep, suffix = name.partition(":")
        if name not in self._entries and sep and prefix in self._families:
            family = self._families[prefix]
            return Entry(name, family.load()(suffix), family.origin)
        if name not in self._entries:
            raise UserError(self.unknown_message(name))
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).load()

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        prefix, sep, _ = name.partition(":")
        return name in self._entries or name in self._aliases or bool(sep and prefix in self._families)

    def unknown_message(self, name: str) -> str:
        known = self.names() + sorted(self._aliases)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        if self._families:
            hint += " Families: " + ", ".join(f"{p}:<name>" for p in sorted(self._families)) + "."
        return f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(self.names())}."


