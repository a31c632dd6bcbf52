"""The pieces of the report model that every writer renders the same way: a cell, and a titled block of text
and one table. Kept apart from :mod:`adapterbench.reports.model` so that the modules building parts of a report
(:mod:`adapterbench.reports.answer`) need not import the model that calls them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False
    numeric: bool = True


@dataclass
class Block:
    """A titled section of text and an optional table; ``level`` 2 is a section, 3 a subsection."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    headers: Sequence[str] = ()
    rows: list[list[Cell]] = field(default_factory=list)
    level: int = 2
