"""Critical values for the statistical tests, computed from the formulas.

No SciPy: the normal quantile comes from bisection on `math.erfc`, and the
chi-square critical value is exact for df = 2 and Wilson-Hilferty
otherwise.
"""

import math

import numpy as np


def normal_upper_quantile(p):
    """z with P(Z > z) = p for a standard normal Z (bisection on erfc)."""
    low, high = 0.0, 40.0
    for _ in range(200):
        mid = (low + high) / 2
        if 0.5 * math.erfc(mid / math.sqrt(2)) > p:
            low = mid
        else:
            high = mid
    return high


def chi2_critical(df, p=1e-6):
    """Upper-`p` critical value of chi-square with `df` degrees of freedom.

    df = 2 is the exponential distribution with mean 2: exactly -2 ln p.
    Otherwise Wilson-Hilferty: (X/df)^(1/3) is nearly normal with mean
    1 - 2/(9 df) and variance 2/(9 df).
    """
    if df == 2:
        return -2.0 * math.log(p)
    z = normal_upper_quantile(p)
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi_square(observed, expected):
    """Pearson's statistic of `observed` counts against `expected` ones."""
    observed = np.asarray(observed, np.float64)
    expected = np.asarray(expected, np.float64)
    return float(((observed - expected) ** 2 / expected).sum())


def binomial_upper_critical(n, p, alpha=1e-6):
    """Smallest k with P(X >= k) <= `alpha` for X ~ Binomial(`n`, `p`).

    The upper tail is summed exactly from k = n down, each term
    C(n, k) p^k (1 - p)^(n - k) taken in log space (`math.lgamma`), so
    large `n` neither overflows nor loses the tail. A count of `k` or more
    successes happens with probability at most `alpha` when the success
    rate is `p` (or lower).
    """
    if not 0 < p < 1:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    log_p, log_q = math.log(p), math.log1p(-p)
    log_n = math.lgamma(n + 1)
    tail = 0.0
    for k in range(n, -1, -1):
        tail += math.exp(
            log_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q
        )
        if tail > alpha:
            return k + 1
    return 0
