"""`DynamicMLMMasking._select_and_corrupt`: the layer's composition of the
selection and corruption kernels, checked on whole batches."""

import math

import numpy as np
import pytest
import tensorflow as tf

from mlm_reference import expected_exact_count
from keras_dynmask import DynamicMLMMasking

DTYPES = [tf.int32, tf.int64]


def make_layer(**overrides):
    config = dict(
        vocabulary_size=50,
        mask_token_id=4,
        mask_rate=0.15,
        mask_token_rate=0.8,
        random_token_rate=0.1,
        special_token_ids=(1, 2, 3),
        pad_token_id=0,
        selection="bernoulli",
        max_predictions=None,
    )
    config.update(overrides)
    return DynamicMLMMasking(**config)


def seed(a, b=0):
    return tf.constant([a, b], tf.int64)


def replacement_ids(layer):
    return sorted(set(range(layer.vocabulary_size)) - set(layer.excluded_ids))


def eligible_reference(ids, excluded):
    return ~np.isin(ids, np.array(sorted(excluded), dtype=np.int64))


def select_and_corrupt(token_ids, key, layer, valid=None):
    return layer._select_and_corrupt(token_ids, key, layer.mask_rate, valid)


def check_select_and_corrupt(token_ids, corrupted, selected, layer, valid=None):
    ids = token_ids.numpy()
    corrupted = corrupted.numpy()
    selected = selected.numpy()
    assert corrupted.shape == ids.shape and selected.shape == ids.shape
    assert selected.dtype == bool
    excluded = eligible_reference(ids, layer.excluded_ids)
    assert not (selected & ~excluded).any(), "selected an excluded id"
    if valid is not None:
        assert not (selected & ~valid).any(), "selected an invalid position"
    np.testing.assert_array_equal(corrupted[~selected], ids[~selected])
    changed = corrupted[selected]
    allowed = np.isin(changed, replacement_ids(layer)) | (
        changed == layer.mask_token_id
    ) | (changed == ids[selected])
    assert allowed.all()
    if layer.max_predictions is not None and selected.ndim == 2:
        assert selected.sum(axis=-1).max(initial=0) <= layer.max_predictions


def test_excluded_ids_and_corruption_shares():
    layer = make_layer(special_token_ids=(3, 1, 2), mask_token_rate=0.6, random_token_rate=0.3)
    assert layer.excluded_ids == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(layer.corruption_shares, (0.6, 0.3, 0.1))
    assert make_layer(pad_token_id=None, special_token_ids=()).excluded_ids == [4]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "selection, max_predictions", [("bernoulli", None), ("bernoulli", 4), ("exact", None), ("exact", 3)]
)
def test_select_and_corrupt_invariants(dtype, selection, max_predictions):
    layer = make_layer(mask_rate=0.3, selection=selection, max_predictions=max_predictions)
    rng = np.random.default_rng(0)
    ids = tf.constant(rng.integers(0, 50, size=(32, 40)), dtype)
    corrupted, selected = select_and_corrupt(ids, seed(1), layer)
    assert corrupted.dtype == dtype and selected.dtype == tf.bool
    check_select_and_corrupt(ids, corrupted, selected, layer)
    assert selected.numpy().any()
    if selection == "exact":
        eligible = eligible_reference(ids.numpy(), layer.excluded_ids)
        np.testing.assert_array_equal(
            selected.numpy().sum(axis=1),
            expected_exact_count(eligible.sum(axis=1), 0.3, max_predictions),
        )


@pytest.mark.parametrize("selection", ["bernoulli", "exact"])
def test_select_and_corrupt_is_a_function_of_inputs_and_seed(selection):
    layer = make_layer(mask_rate=0.3, selection=selection)
    ids = tf.constant(np.random.default_rng(1).integers(5, 50, size=(16, 64)), tf.int32)
    first = select_and_corrupt(ids, seed(4, 2), layer)
    again = select_and_corrupt(ids, seed(4, 2), layer)
    other = select_and_corrupt(ids, seed(4, 3), layer)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert (first[1].numpy() != other[1].numpy()).any()


@pytest.mark.parametrize(
    "selection, max_predictions", [("bernoulli", None), ("bernoulli", 2), ("exact", None), ("exact", 2)]
)
def test_select_and_corrupt_rows_with_nothing_eligible(selection, max_predictions):
    layer = make_layer(mask_rate=1.0, selection=selection, max_predictions=max_predictions)
    ids = tf.constant(
        [[1, 0, 0, 0], [4, 4, 2, 3], [1, 17, 2, 0], [0, 0, 0, 0]], tf.int32
    )
    corrupted, selected = select_and_corrupt(ids, seed(7), layer)
    np.testing.assert_array_equal(selected.numpy(), [[0] * 4, [0] * 4, [0, 1, 0, 0], [0] * 4])
    check_select_and_corrupt(ids, corrupted, selected, layer)


@pytest.mark.parametrize(
    "selection, max_predictions", [("bernoulli", None), ("bernoulli", 3), ("exact", None), ("exact", 3)]
)
@pytest.mark.parametrize("shape", [(3, 0), (0, 6), (0, 0)])
def test_select_and_corrupt_empty_shapes(selection, max_predictions, shape):
    layer = make_layer(selection=selection, max_predictions=max_predictions)
    ids = tf.zeros(shape, tf.int64)
    corrupted, selected = select_and_corrupt(ids, seed(1), layer)
    assert corrupted.shape == shape and corrupted.dtype == tf.int64
    assert selected.shape == shape and selected.dtype == tf.bool


def test_select_and_corrupt_plain_bernoulli_takes_any_rank():
    layer = make_layer(mask_rate=0.5)
    for shape in [(0,), (37,), (3, 4, 5)]:
        ids = tf.constant(np.random.default_rng(2).integers(0, 50, size=shape), tf.int32)
        corrupted, selected = select_and_corrupt(ids, seed(3), layer)
        check_select_and_corrupt(ids, corrupted, selected, layer)


@pytest.mark.parametrize(
    "selection, max_predictions", [("bernoulli", None), ("bernoulli", 3), ("exact", None)]
)
def test_select_and_corrupt_respects_valid(selection, max_predictions):
    layer = make_layer(mask_rate=0.9, selection=selection, max_predictions=max_predictions)
    rng = np.random.default_rng(3)
    ids = tf.constant(rng.integers(5, 50, size=(20, 30)), tf.int32)
    lengths = rng.integers(0, 31, size=20)
    valid = np.arange(30)[None, :] < lengths[:, None]
    corrupted, selected = select_and_corrupt(ids, seed(5), layer, valid=tf.constant(valid))
    check_select_and_corrupt(ids, corrupted, selected, layer, valid=valid)
    if selection == "exact":
        np.testing.assert_array_equal(
            selected.numpy().sum(axis=1), expected_exact_count(lengths, 0.9, None)
        )


@pytest.mark.parametrize("selection", ["bernoulli", "exact"])
def test_select_and_corrupt_certain_outcomes(selection):
    ids = np.random.default_rng(4).integers(0, 50, size=(8, 25))
    eligible = eligible_reference(ids, (0, 1, 2, 3, 4))
    # Everything eligible is selected and masked.
    layer = make_layer(mask_rate=1.0, mask_token_rate=1.0, random_token_rate=0.0, selection=selection)
    corrupted, selected = select_and_corrupt(tf.constant(ids), seed(1), layer)
    np.testing.assert_array_equal(selected.numpy(), eligible)
    np.testing.assert_array_equal(corrupted.numpy(), np.where(eligible, 4, ids))
    # Everything eligible is selected and kept.
    layer = make_layer(mask_rate=1.0, mask_token_rate=0.0, random_token_rate=0.0, selection=selection)
    corrupted, selected = select_and_corrupt(tf.constant(ids), seed(1), layer)
    np.testing.assert_array_equal(selected.numpy(), eligible)
    np.testing.assert_array_equal(corrupted.numpy(), ids)
    # Everything eligible gets a random allowed id.
    layer = make_layer(mask_rate=1.0, mask_token_rate=0.0, random_token_rate=1.0, selection=selection)
    corrupted, selected = select_and_corrupt(tf.constant(ids), seed(1), layer)
    np.testing.assert_array_equal(selected.numpy(), eligible)
    assert np.isin(corrupted.numpy()[eligible], replacement_ids(layer)).all()
    np.testing.assert_array_equal(corrupted.numpy()[~eligible], ids[~eligible])


def test_select_and_corrupt_bernoulli_cap_that_never_binds_keeps_every_selection():
    # With max_predictions >= T the cap removes nothing: the selected
    # fraction stays mask_rate (a 5-sigma binomial bound).
    layer = make_layer(vocabulary_size=1000, mask_rate=0.15, max_predictions=64)
    ids = tf.constant(np.random.default_rng(5).integers(5, 1000, size=(2000, 64)), tf.int32)
    _, selected = select_and_corrupt(ids, seed(8), layer)
    n = 2000 * 64
    count = int(selected.numpy().sum())
    assert abs(count - 0.15 * n) <= 5 * math.sqrt(n * 0.15 * 0.85), count / n
