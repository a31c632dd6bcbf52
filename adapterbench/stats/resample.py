"""Resampling as matrix products over per-example sufficient statistics (:mod:`adapterbench.stats.metrics`).

**Bootstrap.** A resample of ``n`` examples drawn with replacement is a count vector ``w`` (how often each was
drawn); for a metric with sufficient statistics ``X`` ``(n, q)`` its value is ``from_sums(w @ X)``, so ``B``
resamples are one product ``W @ X`` with ``W`` ``(B, n)``. ``W`` is drawn exactly as
``scipy.stats.bootstrap(paired=True)`` draws its indices (``rng.integers(0, n, (B, n))`` from
``np.random.default_rng(rng)``), so with the same ``rng`` both give the same resamples, and one ``W`` serves
every configuration of a task (every estimate with ``rng=0`` on ``n`` examples used the same draws before
too). ``W`` and each ``W @ X`` are memoised by content. **BCa** (Efron, 1987; scipy's ``_bca_interval``):
``z0 = Phi^-1(share of resamples below the estimate, ties counted half)``, the acceleration from the jackknife
``theta_(i) = from_sums(T - x_i)`` (all ``n`` at once from the total ``T``):
``a = sum U^3 / (6 (sum U^2)^1.5)``, ``U_i = (n - 1)(mean theta_(.) - theta_(i))``; the interval is the
``Phi(z0 + (z0 + z) / (1 - a (z0 + z)))`` quantiles (linear, as scipy) for ``z = Phi^-1(alpha/2)``, ``Phi^-1(1 -
alpha/2)``. A degenerate distribution (no finite BCa bound) falls back to the percentile interval.

**Sign flips.** Swapping A's and B's predictions on the examples flagged by ``f`` (0/1, ``(n,)``) gives A the sums
``T_A + f @ (X_B - X_A)`` and B the sums ``T_B - f @ (X_B - X_A)``; ``B`` draws of ``f`` are one product
``F @ D`` (only the examples where A and B differ have a nonzero row in ``D``). ``F`` is drawn in chunks of
:data:`FLIP_CHUNK` rows, chunk ``k`` from ``np.random.default_rng([seed, n, k])``: deterministic, shared by
every pair of a task (each test is valid alone; Holm is valid under any dependence between them), and
extendable when a test near its threshold needs more draws.

**Monte-Carlo error** of an estimated p-value ``p`` from ``B`` draws: ``sqrt(p (1 - p) / B)`` (binomial); for the
two-sided ``2 min(p_less, p_greater)`` twice that of the smaller one-sided p.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

FLIP_CHUNK = 1000
_CHUNK_CELLS = 8_000_000  # bootstrap rows x examples drawn at once (64 MB of int64 indices)
_MEMO_BYTES = 200_000_000  # per memo (counts, flips); products a quarter of it
_counts_memo: OrderedDict[tuple, np.ndarray] = OrderedDict()
_flips_memo: OrderedDict[tuple, np.ndarray] = OrderedDict()
_products_memo: OrderedDict[tuple, np.ndarray] = OrderedDict()


_lock = threading.Lock()  # the memos are shared by the threads of stats.answer.answer


def _remember(memo: OrderedDict, key: tuple, value: np.ndarray, budget: int = _MEMO_BYTES) -> np.ndarray:
    with _lock:
        memo[key] = value
        memo.move_to_end(key)
        while sum(v.nbytes for v in memo.values()) > budget and len(memo) > 1:
            memo.popitem(last=False)
    return value


def _recall(memo: OrderedDict, key: tuple) -> np.ndarray | None:
    with _lock:
        value = memo.get(key)
        if value is not None:
            memo.move_to_end(key)
        return value


def seed_of(rng: Any) -> int | None:
    """An int seed (memoisable draws), or None for a Generator or None (fresh draws each time)."""
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return int(rng)
    return None


def _counts_of(indices: np.ndarray, n: int) -> np.ndarray:
    """Index rows ``(b, n)`` -> count rows ``(b, n)``: one bincount over all rows, row r shifted by ``r n``."""
    b = indices.shape[0]
    shifted = indices + (np.arange(b, dtype=np.int64) * n)[:, None]
    return np.bincount(shifted.ravel(), minlength=b * n).reshape(b, n).astype(np.float32)


def bootstrap_counts(n: int, n_resamples: int, rng: Any = 0) -> np.ndarray:
    """Counts ``(n_resamples, n)`` of ``n_resamples`` bootstrap resamples, drawn as scipy draws them."""
    seed = seed_of(rng)
    key = (n, n_resamples, seed)
    found = _recall(_counts_memo, key) if seed is not None else None
    if found is not None:
        return found
    generator = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    parts = [_counts_of(generator.integers(0, n, (min(rows, n_resamples - start), n)), n)
             for start in range(0, n_resamples, rows)]
    counts = np.concatenate(parts) if len(parts) > 1 else parts[0]
    counts.setflags(write=False)
    return _remember(_counts_memo, key, counts) if seed is not None else counts


def resampled_sums(key: str, x: np.ndarray, counts: np.ndarray, counts_key: tuple) -> np.ndarray:
    """``counts @ x`` ``(B, q)``, memoised by the sums' content key and the draws."""
    memo_key = (key, counts_key)
    found = _recall(_products_memo, memo_key) if key and counts_key[-1] is not None else None
    if found is not None:
        return found
    exact = _small_integers(x, counts.shape[1])
    product = (counts @ x.astype(np.float32)).astype(np.float64) if exact else counts.astype(np.float64) @ x
    if key and counts_key[-1] is not None:
        _remember(_products_memo, memo_key, product, budget=_MEMO_BYTES // 4)
    return product


def _small_integers(x: np.ndarray, n: int) -> bool:
    """Whether float32 products of 0..n weights with ``x`` are exact: integers whose weighted sums stay below
    2^24 (confusion cells and entity counts are)."""
    return bool(np.all(x == np.round(x))) and n * float(np.abs(x).max(initial=0.0)) < 2 ** 24


def _random_bits(generator: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """``(rows, n)`` independent fair 0/1 values (uint8), eight from each random byte."""
    packed = generator.integers(0, 256, size=(rows, (n + 7) // 8), dtype=np.uint8)
    return np.unpackbits(packed, axis=1, count=n)


def flips(n: int, n_draws: int, rng: Any = 0) -> Iterator[np.ndarray]:
    """Sign-flip indicator rows ``(b, n)`` (0/1 uint8, each 1 with probability 1/2), ``n_draws`` in all."""
    seed = seed_of(rng)
    if seed is None:
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        for start in range(0, n_draws, FLIP_CHUNK):
            yield _random_bits(generator, min(FLIP_CHUNK, n_draws - start), n)
        return
    for k, start in enumerate(range(0, n_draws, FLIP_CHUNK)):
        key = (n, seed, k)
        chunk = _recall(_flips_memo, key)
        if chunk is None:
            chunk = _random_bits(np.random.default_rng([seed, n, k]), FLIP_CHUNK, n)
            chunk.setflags(write=False)
            _remember(_flips_memo, key, chunk)
        yield chunk[:min(FLIP_CHUNK, n_draws - start)]


# ---- intervals ------------------------------------------------------------------------------------------------
def weighted_value(from_sums: Callable[[np.ndarray], np.ndarray], sums: np.ndarray, weights: np.ndarray
                   ) -> np.ndarray:
    """``sum_j weights[j] from_sums(sums[..., j, :])``: the seed-mean metric, or a seed-mean difference."""
    return (from_sums(sums) * weights).sum(axis=-1)


def bca_quantiles(dist: np.ndarray, value: float, jackknife: np.ndarray, level: float) -> tuple[float, float]:
    """The BCa interval's quantile levels (module docstring); NaN when undefined."""
    from scipy.special import ndtr, ndtri

    with np.errstate(divide="ignore", invalid="ignore"):
        # ties counted half, as scipy does; "equal" within float noise, since the resamples and the estimate
        # are summed in different orders (a seed mean of per-seed accuracies is discrete and ties are common)
        tol = 1e-12 * max(1.0, abs(value))
        share = (np.count_nonzero(dist < value - tol) + np.count_nonzero(dist <= value + tol)) / (2 * len(dist))
        z0 = ndtri(share)
        u = (len(jackknife) - 1) * (jackknife.mean() - jackknife)
        a = (u ** 3).sum() / (6 * ((u ** 2).sum()) ** 1.5)
        z = ndtri((1 - level) / 2)
        low = ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))
        high = ndtr(z0 + (z0 - z) / (1 - a * (z0 - z)))
    return float(low), float(high)


def interval_of(dist: np.ndarray, value: float, level: float, method: str,
                jackknife: Callable[[], np.ndarray] | None) -> tuple[float, float, str]:
    """Percentile or BCa bounds of ``dist`` -> (low, high, method used)."""
    tail = (1 - level) / 2
    if method == "BCa" and jackknife is not None and np.isfinite(value):
        q_low, q_high = bca_quantiles(dist, value, jackknife(), level)
        if math.isfinite(q_low) and math.isfinite(q_high) and not np.isnan(dist).any():
            low, high = (float(v) for v in np.quantile(dist, [q_low, q_high]))
            if math.isfinite(low) and math.isfinite(high):
                return low, high, "BCa"
    finite = dist[np.isfinite(dist)]
    if len(finite) == 0:
        return math.nan, math.nan, "percentile"
    low, high = (float(v) for v in np.quantile(finite, [tail, 1 - tail]))
    return low, high, "percentile"


def bootstrap_sums(blocks: Sequence[tuple[str, np.ndarray]], weights: Sequence[float],
                   from_sums: Callable[[np.ndarray], np.ndarray], *, level: float = 0.95, n_resamples: int = 2000,
                   method: str = "BCa", rng: Any = 0) -> tuple[float, float, float, np.ndarray, str]:
    """Bootstrap over the shared example axis of ``blocks`` (``(key, X)`` pairs, each ``X`` ``(n, q)``) of the
    statistic ``sum_j weights[j] from_sums(sum X_j)`` -> (value, low, high, distribution, method used)."""
    n = blocks[0][1].shape[0]
    w = np.asarray(weights, dtype=np.float64)
    counts = bootstrap_counts(n, n_resamples, rng)
    counts_key = (n, n_resamples, seed_of(rng))
    resampled = np.stack([resampled_sums(key, x, counts, counts_key) for key, x in blocks], axis=-2)  # (B, J, q)
    totals = np.stack([x.sum(axis=0) for _, x in blocks])  # (J, q)
    value = float(weighted_value(from_sums, totals, w))
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = weighted_value(from_sums, resampled, w)

    def jackknife() -> np.ndarray:
        leave_out = totals[None, :, :] - np.stack([x for _, x in blocks], axis=1)  # (n, J, q)
        with np.errstate(divide="ignore", invalid="ignore"):
            return weighted_value(from_sums, leave_out, w)

    low, high, used = interval_of(dist, value, level, method, jackknife)
    return value, low, high, dist, used


def bootstrap_weighted(predictions: Sequence[np.ndarray], references: np.ndarray, weights: Sequence[float],
                       statistic: Callable[..., np.ndarray], *, level: float = 0.95, n_resamples: int = 2000,
                       rng: Any = 0, chunk: int = 100) -> tuple[np.ndarray, float, float]:
    """Percentile bootstrap of ``sum_j weights[j] m_j`` for a metric with a weighted form (Spearman):
    ``statistic(counts, predictions, references)`` gives every ``m_j`` of a chunk of resamples ``(b, J)`` ->
    (distribution, low, high). Chunks of 100 resamples keep a chunk's rank arrays in cache (twice as fast as
    500 at n = 1500)."""
    n = len(references)
    counts = bootstrap_counts(n, n_resamples, rng)
    dist = np.zeros(n_resamples)
    w = np.asarray(weights, dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        dist[start:start + chunk] = statistic(counts[start:start + chunk], predictions, references) @ w
    low, high, _ = interval_of(dist, math.nan, level, "percentile", None)
    return dist, low, high


# ---- sign flips -----------------------------------------------------------------------------------------------
def sign_flip_nulls(pairs: Sequence[tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
                    from_sums: Callable[[np.ndarray], np.ndarray], n_draws: int, rng: Any = 0) -> list[np.ndarray]:
    """Null distributions of ``d = mean_s [m(A_s) - m(B_s)]`` under random swaps of A and B per example (the same
    examples swapped in every seed), for several pairs on the same examples at once: one product ``F @ D`` with
    the pairs' ``D`` side by side, the same draws ``F`` for every pair. ``pairs[k] = (x_a, x_b)``, ``x_a[s]`` the
    sufficient statistics ``(n, q)`` of A's seed ``s``."""
    n, q = pairs[0][0][0].shape
    t_a = np.concatenate([np.stack([x.sum(axis=0) for x in x_a]) for x_a, _ in pairs])  # (sum_k S_k, q)
    t_b = np.concatenate([np.stack([x.sum(axis=0) for x in x_b]) for _, x_b in pairs])
    # D with the statistic as the outer column index, (n, q * sum_k S_k): the product then holds each statistic's
    # values contiguously, and from_sums reads s[..., j] as contiguous (b, S) blocks instead of strided ones.
    d = np.stack([xb - xa for x_a, x_b in pairs for xa, xb in zip(x_a, x_b)], axis=2).reshape(n, -1)
    widths = np.array([len(x_a) for x_a, _ in pairs])
    starts = np.cumsum(np.r_[0, widths[:-1]])
    weights = np.repeat(1.0 / widths, widths)  # the mean over each pair's seeds
    differs = np.flatnonzero(np.any(d != 0, axis=1))  # examples where no pair differs never change a sum
    moving = np.flatnonzero(np.any(d != 0, axis=0))  # sums no swap changes (the references' own) stay 0
    d = d[np.ix_(differs, moving)]
    # float32: exact for counts (small integers); for moments (Pearson) a relative error near 1e-7 of a swapped
    # sum, far below what could move a p-value (ties of a continuous statistic have probability 0), at half the
    # memory traffic of float64 (the conversion of the 0/1 draws dominates).
    d = d.astype(np.float32)
    null = np.empty((n_draws, len(pairs)))
    start = 0
    buffer = np.zeros((min(FLIP_CHUNK, n_draws), q * len(weights)))
    for f in flips(n, n_draws, rng):
        flat = buffer[:len(f)]
        flat[:, moving] = f[:, differs].astype(np.float32) @ d
        shift = flat.reshape(len(f), q, len(weights)).transpose(0, 2, 1)  # (b, sum_k S_k, q), q-major memory
        with np.errstate(divide="ignore", invalid="ignore"):
            moved_a = np.add(t_a, shift, out=np.empty_like(shift))  # empty_like keeps the q-major layout
            moved_b = np.subtract(t_b, shift, out=np.empty_like(shift))
            per_seed = (from_sums(moved_a) - from_sums(moved_b)) * weights  # (b, sum_k S_k)
        null[start:start + len(f)] = np.add.reduceat(per_seed, starts, axis=1)
        start += len(f)
    return [null[:, k].copy() for k in range(len(pairs))]


def sign_flip_null_sums(x_a: Sequence[np.ndarray], x_b: Sequence[np.ndarray],
                        from_sums: Callable[[np.ndarray], np.ndarray], n_draws: int, rng: Any = 0) -> np.ndarray:
    """:func:`sign_flip_nulls` of one pair."""
    return sign_flip_nulls([(x_a, x_b)], from_sums, n_draws, rng)[0]


def p_values(null: np.ndarray, observed: float) -> tuple[float, float, float]:
    """(two-sided, less, greater) with the +1 correction; values within float noise count as equal."""
    tol = 1e-12 * max(1.0, abs(observed))
    count = len(null) + 1
    less = (np.sum(null <= observed + tol) + 1) / count
    greater = (np.sum(null >= observed - tol) + 1) / count
    return min(1.0, 2 * min(less, greater)), float(less), float(greater)


def mc_error(p_less: float, p_greater: float, n_draws: int) -> float:
    """Monte-Carlo standard error of the two-sided p ``min(1, 2 min(p_less, p_greater))`` from ``n_draws``."""
    p = min(p_less, p_greater)
    return float(min(1.0, 2 * math.sqrt(max(p * (1 - p), 0.0) / max(n_draws, 1))))
