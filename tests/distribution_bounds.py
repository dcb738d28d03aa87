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
