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
    legend: list[str] = field(default_factory=list)  # how to read it: folded away in HTML (<details>)
    folded: list[list[Cell]] = field(default_factory=list)  # rows shown on request (HTML: a <details> table)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], indent: str = "  ") -> list[str]:
    """Aligned plain-text lines: numbers right-aligned, text left-aligned, two spaces between columns."""
    widths = [max([len(h), *(len(r[i].text) for r in rows)]) for i, h in enumerate(headers)]
    numeric = [all(r[i].numeric for r in rows) if rows else False for i in range(len(headers))]

    def line(texts: Sequence[str]) -> str:
        return indent + "  ".join(t.rjust(w) if num else t.ljust(w)
                                  for t, w, num in zip(texts, widths, numeric)).rstrip()

    return [line(headers), *(line([c.text for c in r]) for r in rows)]
