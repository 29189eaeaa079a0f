"""Uncertainty of small-sample scores: 95% intervals and a base-vs-tuned significance test.

A benchmark score is a proportion of n items, so its interval is the Wilson score interval (scipy), which stays
honest at n = 2 (2/2 correct gives [34%, 100%], where the normal stderr gives a zero-width [100%, 100%]). Means
of non-binary quantities (judge scores, the loss gap) get a percentile bootstrap."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95


def wilson_interval(value: float, n: int) -> tuple[float, float]:
    """95% Wilson interval of a proportion `value` measured on `n` items (as fractions)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    ci = stats.binomtest(round(value * n), n).proportion_ci(confidence_level=LEVEL, method="wilson")
    return (float(ci.low), float(ci.high))


def difference_p_value(a: float, n_a: int, b: float, n_b: int) -> float:
    """Two-sided Fisher exact p-value that two proportions (e.g. base and tuned accuracy) differ."""
    k_a, k_b = round(a * n_a), round(b * n_b)
    return float(stats.fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]]).pvalue)


def bootstrap_interval(
    samples: Sequence[Sequence[float]],
    statistic: Callable[..., float],
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile 95% interval of `statistic(*samples)`, each sample resampled independently with replacement."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(s, dtype=float) for s in samples]
    draws = [statistic(*(a[rng.integers(0, len(a), len(a))] for a in arrays)) for _ in range(resamples)]
    low, high = np.nanpercentile(draws, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return (float(low), float(high))
