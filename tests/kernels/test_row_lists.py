"""pad_rows: listed values into a padded batch, against a NumPy reference."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask.kernels import row_lists


def padded_reference(values, row_ids, nrows, width, default):
    rows = [values[row_ids == r] for r in range(nrows)]
    if width is None:
        width = max([len(r) for r in rows], default=0)
    out = np.full((nrows, width), default, values.dtype)
    for r, row in enumerate(rows):
        out[r, : min(len(row), width)] = row[:width]
    return out


@pytest.mark.parametrize("width", [None, 0, 2, 9])
@pytest.mark.parametrize("key", range(3))
def test_pad_rows_matches_numpy(key, width):
    rng = np.random.default_rng(key)
    nrows = int(rng.integers(1, 7))
    # Some rows empty, some long; ids listed row by row as tf.where lists them.
    mask = rng.random((nrows, 8)) < rng.random((nrows, 1))
    row_ids, columns = np.nonzero(mask)
    values = (columns * 10 + row_ids).astype(np.int64)
    out = row_lists.pad_rows(
        tf.constant(values), tf.constant(row_ids, tf.int64), nrows, width, default=-7
    ).numpy()
    np.testing.assert_array_equal(out, padded_reference(values, row_ids, nrows, width, -7))


def test_pad_rows_keeps_dtype_and_handles_no_values():
    out = row_lists.pad_rows(tf.zeros([0], tf.int32), tf.zeros([0], tf.int64), 3, 4)
    assert out.dtype == tf.int32 and out.shape == (3, 4) and not out.numpy().any()
    assert row_lists.pad_rows(tf.zeros([0], tf.float32), tf.zeros([0], tf.int64), 2).shape == (2, 0)


def test_pad_rows_in_a_graph_with_tensor_sizes():
    @tf.function
    def pad(values, row_ids, nrows, width):
        return row_lists.pad_rows(values, row_ids, nrows, width)

    out = pad(tf.constant([1.5, 2.5]), tf.constant([1, 1], tf.int64), tf.constant(2), tf.constant(3))
    np.testing.assert_array_equal(out.numpy(), [[0, 0, 0], [1.5, 2.5, 0]])


@pytest.mark.parametrize("length", [1, 31, 32, 33, 100, 512])
def test_row_counts_is_an_exact_cumulative_sum(length):
    flags = np.random.default_rng(length).random((5, length)) < 0.6
    np.testing.assert_array_equal(
        row_lists.row_counts(tf.constant(flags)), np.cumsum(flags, axis=1)
    )


def test_row_counts_in_float64_stay_exact_past_float32s_integers():
    values = np.random.default_rng(4).integers(0, 2**24, size=(3, 1000))
    sums = row_lists.row_counts(tf.constant(values, tf.int32), float_dtype=tf.float64)
    assert sums.dtype == tf.int64
    np.testing.assert_array_equal(sums.numpy(), np.cumsum(values, axis=1))


@pytest.mark.parametrize("shape", [(6, 9), (1, 1), (3, 0), (0, 4), (4, 40)])
@pytest.mark.parametrize("key", range(3))
def test_listed_rows_lists_each_rows_entries_in_order(shape, key):
    rng = np.random.default_rng(key)
    # Rows of every density, empty and full ones among them.
    mask = rng.random(shape) < rng.random((shape[0], 1)) * 1.4 - 0.2
    positions, splits = row_lists.listed_rows(tf.constant(mask))
    assert positions.dtype == tf.int64 and splits.dtype == tf.int64
    np.testing.assert_array_equal(positions, np.flatnonzero(mask))
    np.testing.assert_array_equal(splits, np.concatenate([[0], np.cumsum(mask.sum(axis=1))]))


@pytest.mark.parametrize("width", [0, 2, 9])
@pytest.mark.parametrize("key", range(3))
def test_pad_split_rows_matches_pad_rows(key, width):
    rng = np.random.default_rng(key)
    mask = rng.random((5, 8)) < rng.random((5, 1))
    row_ids, columns = np.nonzero(mask)
    values = (columns * 10 + row_ids).astype(np.int32)
    splits = np.concatenate([[0], np.cumsum(mask.sum(axis=1))])
    out = row_lists.pad_split_rows(tf.constant(values), tf.constant(splits, tf.int64), width, -3)
    np.testing.assert_array_equal(out, padded_reference(values, row_ids, 5, width, -3))
