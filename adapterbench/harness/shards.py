"""``--shard i/n``: a deterministic 1/n of a matrix, for CI job matrices.

The runs are ordered by the SHA-256 of their run id and dealt out like cards: shard ``i`` (1-based) takes the
runs at positions ``i-1, i-1+n, i-1+2n, ...`` of that order. So

* the shards of one matrix are disjoint and together are the whole matrix (every position goes to one shard);
* their sizes differ by at most one run (hashing each run id modulo n alone leaves shards of 12 runs at 1 to 6);
* the split depends only on the run ids, not on the order of ``--variants`` or the machine.

Every shard must be given the same matrix: a shard is a share of the run ids it is given. The shards' result
folders merge in ``bench report A B C``, which reads several folders (the newest record of each run id counts).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from adapterbench.errors import UserError

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``; anything else is a one-line error."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise UserError(f"--shard {text!r} is not allowed; give i/n with 1 <= i <= n, for example --shard 1/4")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise UserError(f"--shard {text!r} is not allowed; i must be between 1 and n (n >= 1), for example 1/{max(count, 1)}")
    return index, count


def shard_order(run_ids: Sequence[str]) -> list[int]:
    """Positions of ``run_ids`` sorted by the SHA-256 of each id (ties, i.e. equal ids, by position)."""
    return sorted(range(len(run_ids)), key=lambda i: (hashlib.sha256(run_ids[i].encode()).hexdigest(), i))


def select_shard(items: Sequence[T], index: int, count: int, run_id: Any = None) -> list[T]:
    """The items of shard ``index`` of ``count`` (1-based), in their original order.

    ``run_id(item)`` gives an item's run id (default: the item's ``run_id`` attribute).
    """
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: index must be in 1..{count}")
    ids = [run_id(item) if run_id else item.run_id for item in items]
    keep = {position for rank, position in enumerate(shard_order(ids)) if rank % count == index - 1}
    return [item for position, item in enumerate(items) if position in keep]
