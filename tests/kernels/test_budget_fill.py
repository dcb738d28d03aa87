"""`keras_dynmask.kernels.budget_fill`: the budget's edge against a full sort."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask.kernels import budget_fill


@pytest.mark.parametrize(
    "dtype, key_bound", [(tf.int32, 2**24), (tf.int32, 2**31), (tf.int64, 2**41)]
)
def test_budget_edge_equals_a_full_sort(dtype, key_bound):
    # Keys with many ties (words), non-candidates, and budgets from 0 to
    # every candidate: the histogram's two edge keys are the sorted list's.
    rng = np.random.default_rng(11)
    rows, length = 300, 90
    words = np.cumsum(rng.random((rows, length)) < 0.6, axis=1)
    word_keys = rng.integers(0, key_bound, size=(rows, length + 1))
    keys = np.take_along_axis(word_keys, words, axis=1)
    keys[:40] = rng.integers(0, 5, size=(40, length))  # rows of few distinct keys
    candidates = rng.random((rows, length)) < 0.8
    counts = candidates.sum(1)
    budget = np.minimum(rng.integers(0, length + 1, rows), counts)
    budget[:3] = [0, counts[1], 1]
    keyed, last, following = budget_fill._budget_edge(
        tf.constant(candidates), tf.constant(keys, dtype), tf.constant(budget, tf.int32), key_bound
    )
    top = np.iinfo(dtype.as_numpy_dtype).max
    for b in range(rows):
        ordered = np.sort(keys[b][candidates[b]])
        if budget[b] == 0:
            continue  # no edge: fill_budget keeps nothing
        assert last[b] == ordered[budget[b] - 1], b
        expected_following = ordered[budget[b]] if budget[b] < len(ordered) else top
        assert following[b] == expected_following, b
    np.testing.assert_array_equal(keyed, np.where(candidates, keys, top))
