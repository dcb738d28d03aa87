"""Tests of `keras_dynmask.kernels.formatting`: labels, weights, keras-hub targets."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask.kernels import formatting

DTYPES = [tf.int32, tf.int64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_labels_and_sample_weights(dtype):
    ids = tf.constant([[5, 6, 7], [8, 9, 10]], dtype)
    selected = tf.constant([[True, False, True], [False, False, True]])
    labels = formatting.labels(ids, selected, -100)
    assert labels.dtype == dtype
    np.testing.assert_array_equal(labels.numpy(), [[5, -100, 7], [-100, -100, 10]])
    weights = formatting.sample_weights(selected)
    assert weights.dtype == tf.float32
    np.testing.assert_array_equal(weights.numpy(), [[1, 0, 1], [0, 0, 1]])


def targets_reference(ids, selected, width):
    rows = []
    for row_ids, row_selected in zip(ids, selected):
        positions = np.flatnonzero(row_selected)
        pad = width - len(positions)
        rows.append(
            (
                np.concatenate([positions, np.zeros(pad, np.int64)]),
                np.concatenate([row_ids[positions], np.zeros(pad, row_ids.dtype)]),
                np.concatenate([np.ones(len(positions)), np.zeros(pad)]),
            )
        )
    return [np.stack(column) if rows else None for column in zip(*rows)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "batch, width, max_predictions",
    [(6, 20, 5), (6, 3, 5), (4, 5, 5), (3, 0, 4), (5, 1, 1), (7, 12, 1)],
)
def test_prediction_targets(dtype, batch, width, max_predictions):
    rng = np.random.default_rng(batch * 100 + width)
    ids = rng.integers(0, 1000, size=(batch, width))
    selected = np.zeros((batch, width), bool)
    for row in range(batch):
        count = rng.integers(0, min(width, max_predictions) + 1)
        selected[row, rng.choice(width, size=count, replace=False)] = True
    if batch and width:
        selected[0, :] = False  # an empty row
        selected[-1, :] = False
        selected[-1, : min(width, max_predictions)] = True  # a full one
    positions, mask_ids, weights = formatting.prediction_targets(
        tf.constant(ids, dtype), tf.constant(selected), max_predictions
    )
    assert positions.dtype == tf.int32
    assert mask_ids.dtype == dtype
    assert weights.dtype == tf.float32
    for tensor in (positions, mask_ids, weights):
        assert tensor.shape == (batch, max_predictions)
    expected = targets_reference(ids, selected, max_predictions)
    np.testing.assert_array_equal(positions.numpy(), expected[0])
    np.testing.assert_array_equal(mask_ids.numpy(), expected[1])
    np.testing.assert_array_equal(weights.numpy(), expected[2])


def test_prediction_targets_empty_batch():
    positions, mask_ids, weights = formatting.prediction_targets(
        tf.zeros([0, 7], tf.int32), tf.zeros([0, 7], tf.bool), 3
    )
    assert positions.shape == mask_ids.shape == weights.shape == (0, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("leading", [[4], [], [0]])
def test_empty_prediction_targets(dtype, leading):
    positions, mask_ids, weights = formatting.empty_prediction_targets(
        tf.constant(leading, tf.int32), 5, dtype
    )
    shape = tuple(leading) + (5,)
    assert positions.dtype == tf.int32 and mask_ids.dtype == dtype
    assert weights.dtype == tf.float32
    for tensor in (positions, mask_ids, weights):
        assert tensor.shape == shape
        assert not tensor.numpy().any()
