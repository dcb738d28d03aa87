"""NumPy statements of the masking contract that several test files check."""

import numpy as np


def expected_exact_count(eligible_count, mask_rate, max_predictions):
    """round(mask_rate * n) in float32, half to even (tf.round), >= 1, capped."""
    n = np.asarray(eligible_count)
    counts = np.round(np.float32(mask_rate) * n.astype(np.float32)).astype(np.int64)
    counts = np.where(n > 0, np.maximum(counts, 1), 0)
    counts = np.minimum(counts, n)
    if max_predictions is not None:
        counts = np.minimum(counts, max_predictions)
    return counts
