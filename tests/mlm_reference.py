"""NumPy statements of the masking contract that several test files check."""

import numpy as np


def expected_exact_count(eligible_count, mask_rate, max_predictions):
    """round(mask_rate * n) in float64, half to even, >= 1 when n > 0, capped.

    This is the contract (`round(mask_rate * eligible)`), computed in NumPy
    float64, not the kernel's formula: 190 eligible at 0.15 is 28.5, which
    gives 28.
    """
    n = np.asarray(eligible_count, np.int64)
    counts = np.round(np.float64(mask_rate) * n.astype(np.float64)).astype(np.int64)
    counts = np.where(n > 0, np.maximum(counts, 1), 0)
    counts = np.minimum(counts, n)
    if max_predictions is not None:
        counts = np.minimum(counts, max_predictions)
    return counts
