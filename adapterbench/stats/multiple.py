"""Corrections for a family of comparisons.

* Holm–Bonferroni (Holm, 1979), controls the family-wise error rate: with the ``m`` p-values sorted ascending,
  ``p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``; reject where ``p~ < alpha``. Uniformly more powerful than
  Bonferroni, valid under any dependence (our comparisons share the best variant, so they are dependent).
* Benjamini–Hochberg, controls the false discovery rate: ``scipy.stats.false_discovery_control(method="bh")``.

"Tied" means not significant at ``alpha`` after the correction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

CORRECTIONS = ("holm", "bh", "none")


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values, in the input order."""
    p = _checked(p_values)
    if p.size == 0:
        return p
    order = np.argsort(p, kind="mergesort")
    m = len(p)
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def adjust(p_values: Sequence[float], method: str = "holm") -> np.ndarray:
    """Adjusted p-values by ``method`` (one of :data:`CORRECTIONS`)."""
    if method not in CORRECTIONS:
        raise ValueError(f"correction {method!r} is unknown; allowed: {list(CORRECTIONS)}")
    p = _checked(p_values)
    if method == "none" or p.size == 0:
        return p
    if method == "bh":
        return np.asarray(sps.false_discovery_control(p, method="bh"), dtype=np.float64)
    return holm(p)


def significant(p_values: Sequence[float], alpha: float = 0.05, method: str = "holm") -> np.ndarray:
    """Boolean mask: significant at ``alpha`` after the correction (the others are tied)."""
    return adjust(p_values, method) < alpha


def _checked(p_values: Sequence[float]) -> np.ndarray:
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    bad = [float(v) for v in p if not 0.0 <= v <= 1.0][:3]
    if bad:
        raise ValueError(f"p-values {bad} are outside [0, 1]")
    return p
