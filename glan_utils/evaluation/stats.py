"""Uncertainty of small-sample scores: 95% intervals and base-vs-tuned significance tests.

A benchmark score is a proportion of n items, so its interval is the Wilson score interval (scipy), which stays
honest at n = 2 (2/2 correct gives [34%, 100%], where the normal stderr gives a zero-width [100%, 100%]). Means
of non-binary quantities (judge scores, the loss gap) get a percentile bootstrap."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

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


def paired_p_value(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[float, int]:
    """Exact McNemar test over the items both models answered: the two-sided p-value and the shared item count.

    Base and tuned answer the same items, so only the items where they disagree carry evidence; a test that
    treats the two scores as independent samples (Fisher's) loses that pairing and with it most of its power.
    Non-binary per-item scores reduce to the sign of each difference (the sign test, of which McNemar's is the
    binary case)."""
    shared = a.keys() & b.keys()
    better = sum(b[k] > a[k] for k in shared)
    worse = sum(b[k] < a[k] for k in shared)
    p = 1.0 if better + worse == 0 else float(stats.binomtest(better, better + worse, 0.5).pvalue)
    return p, len(shared)


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
