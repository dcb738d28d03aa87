"""DynamicMLMMasking under XLA: `tf.function(jit_compile=True)` and `fit`.

Stateless random ops give other values under XLA than outside it, so these
tests check distributions and invariants, and check that the kernels' XLA
forms keep the same tokens as their other forms for the same draws.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask import DynamicMLMMasking
from keras_dynmask.kernels import formatting
from keras_dynmask.kernels import random_bits
from keras_dynmask.kernels import selection
from mlm_reference import expected_exact_count

VOCAB, MASK, PAD = 200, 3, 0
SPECIALS = [1, 2]
BATCH, LENGTH = 64, 96
Z = 6.0  # binomial bounds at about 1e-9 each


def make_layer(**kwargs):
    options = dict(
        vocabulary_size=VOCAB, mask_token_id=MASK, special_token_ids=SPECIALS,
        pad_token_id=PAD, mask_rate=0.15,
    )
    options.update(kwargs)
    return DynamicMLMMasking(**options)


def batch_of_ids(seed=0):
    """[B, T] int32 ids: specials at the ends, padded tails, some [MASK]s."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, VOCAB, (BATCH, LENGTH)).astype(np.int32)
    ids[:, 0], ids[:, 1] = 1, MASK
    lengths = rng.integers(LENGTH // 2, LENGTH + 1, BATCH)
    for row, length in enumerate(lengths):
        ids[row, length - 1] = 2
        ids[row, length:] = PAD
    return ids


def eligible_of(ids):
    return (ids >= 4) & (ids < VOCAB)


def compiled(layer, rank=2):
    spec = tf.TensorSpec([None] * rank, tf.int32)
    return tf.function(
        lambda x, seed: layer(x, training=True, seed=seed),
        input_signature=[spec, tf.TensorSpec([2], tf.int64)],
        jit_compile=True,
    )


def within_binomial(count, trials, p):
    mean = trials * p
    spread = Z * math.sqrt(trials * p * (1 - p)) + 1
    return abs(count - mean) <= spread


MODES = [("bernoulli", None), ("bernoulli", 8), ("exact", None), ("exact", 8)]


@pytest.mark.parametrize("selection_mode,max_predictions", MODES)
def test_dict_mode_statistics_under_xla(selection_mode, max_predictions):
    layer = make_layer(selection=selection_mode, max_predictions=max_predictions,
                       output_mode="dict")
    run = compiled(layer)
    ids = batch_of_ids()
    eligible = eligible_of(ids)
    selected_total = masked = randomised = kept = 0
    for step in range(6):
        out = {k: v.numpy() for k, v in run(ids, tf.constant([5, step], tf.int64)).items()}
        mask = out["mask"]
        assert not mask[~eligible].any()  # special, pad and [MASK] never selected
        np.testing.assert_array_equal(out["token_ids"][~mask], ids[~mask])
        np.testing.assert_array_equal(out["labels"][mask], ids[mask])
        assert (out["labels"][~mask] == -100).all()
        counts = mask.sum(axis=1)
        if selection_mode == "exact":
            np.testing.assert_array_equal(
                counts, expected_exact_count(eligible.sum(axis=1), 0.15, max_predictions))
        if max_predictions is not None:
            assert counts.max() <= max_predictions
            check_keras_hub_targets(ids, mask, out, max_predictions)
        corrupted = out["token_ids"][mask]
        selected_total += mask.sum()
        masked += (corrupted == MASK).sum()
        randomised += ((corrupted != MASK) & (corrupted != ids[mask])).sum()
        kept += (corrupted == ids[mask]).sum()
        replaced = corrupted[corrupted != MASK]
        assert ((replaced >= 4) & (replaced < VOCAB)).all()
    if selection_mode == "bernoulli" and max_predictions is None:
        assert within_binomial(selected_total, 6 * eligible.sum(), 0.15)
    # A random id equals the original with probability 1/196: kept absorbs it.
    assert within_binomial(masked, selected_total, 0.8)
    assert within_binomial(randomised, selected_total, 0.1 * 195 / 196)


def check_keras_hub_targets(ids, mask, out, width):
    for row in range(ids.shape[0]):
        positions = np.flatnonzero(mask[row])
        n = len(positions)
        np.testing.assert_array_equal(out["mask_positions"][row, :n], positions)
        np.testing.assert_array_equal(out["mask_ids"][row, :n], ids[row, positions])
        np.testing.assert_array_equal(out["mask_weights"][row], np.arange(width) < n)
        assert (out["mask_positions"][row, n:] == 0).all()
        assert (out["mask_ids"][row, n:] == 0).all()


@pytest.mark.parametrize("output_mode", ["ids", "fit", "dict", "masked_lm"])
@pytest.mark.parametrize("rank", [1, 2])
def test_every_output_mode_compiles_with_unknown_dims(output_mode, rank):
    layer = make_layer(output_mode=output_mode, max_predictions=8, selection="exact")
    ids = batch_of_ids()
    x = ids if rank == 2 else ids[0]
    if output_mode == "masked_lm" and rank == 1:
        x = ids[:1]
    out = tf.nest.flatten(compiled(layer, x.ndim)(x, tf.constant([1, 2], tf.int64)))
    assert all(np.all(np.isfinite(np.asarray(v, np.float64))) for v in out)


@pytest.mark.parametrize("granularity", ["word", "span"])
def test_word_granularities_compile(granularity):
    starts = [True] * VOCAB
    layer = make_layer(granularity=granularity, word_starts=starts, output_mode="dict",
                       max_predictions=8)
    ids = batch_of_ids()
    out = compiled(layer)(ids, tf.constant([1, 2], tf.int64))
    assert not out["mask"].numpy()[~eligible_of(ids)].any()


def test_out_of_range_ids_under_xla_never_selected_changed_or_counted():
    layer = make_layer(selection="exact", mask_rate=0.5, output_mode="dict")
    ids = batch_of_ids()
    ids[:, 2:12] = np.array([VOCAB, VOCAB + 7, -1, -5, 2**31 - 1] * 2)
    out = compiled(layer)(ids, tf.constant([3, 4], tf.int64))
    mask = out["mask"].numpy()
    outside = (ids < 0) | (ids >= VOCAB)
    assert not mask[outside].any()
    np.testing.assert_array_equal(out["token_ids"].numpy()[outside], ids[outside])
    # Counted against the in-range eligible tokens only.
    np.testing.assert_array_equal(
        mask.sum(axis=1), expected_exact_count(eligible_of(ids).sum(axis=1), 0.5, None))


def test_fixed_width_ranking_keeps_the_same_tokens():
    """The XLA form of `smallest_draws` and of the targets equal the others."""
    rng = np.random.default_rng(3)
    candidates = tf.constant(rng.random((16, 40)) < 0.6)
    draws = tf.constant(rng.integers(0, 2**32, (16, 40), dtype=np.uint64).astype(np.uint32))
    draws = tf.where(tf.constant(rng.random((16, 40)) < 0.1), tf.zeros_like(draws), draws)
    counts = tf.minimum(tf.constant(rng.integers(0, 9, 16), tf.int32),
                        tf.reduce_sum(tf.cast(candidates, tf.int32), 1))
    plain = selection.smallest_draws(candidates, draws, counts, most=8)
    xla = tf.function(lambda c, d, k: selection.smallest_draws(c, d, k, most=8),
                      jit_compile=True)(candidates, draws, counts)
    np.testing.assert_array_equal(plain.numpy(), xla.numpy())
    ids = tf.constant(rng.integers(4, VOCAB, (16, 40)), tf.int32)
    for got, want in zip(formatting.fixed_width_targets(ids, plain, 8),
                         formatting.prediction_targets(ids, plain, 8)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_dense_replacement_draws_are_uniform_over_allowed_ids():
    draws = random_bits.uniform_below([60000], tf.constant([1, 2], tf.int64), 7, tf.int32)
    counts = np.bincount(draws.numpy(), minlength=7)
    assert counts.size == 7
    # Chi-square, 6 degrees of freedom, p = 1e-6: 35.9 (Wilson-Hilferty).
    assert ((counts - 60000 / 7) ** 2 / (60000 / 7)).sum() < 36.0


def test_layer_supports_jit():
    assert make_layer().supports_jit


# model.fit with jit_compile=True, every output mode.


class OutputSummary(keras.layers.Layer):
    """[B, 1] float from every output of the masking layer."""

    def call(self, outputs):
        total = 0.0
        for value in tf.nest.flatten(outputs):
            value = tf.cast(value, "float32")
            total += tf.reduce_mean(tf.reshape(value, [tf.shape(value)[0], -1]), 1,
                                    keepdims=True)
        return total


@pytest.mark.parametrize("output_mode", ["ids", "fit", "dict", "masked_lm"])
def test_fit_with_jit_compile(output_mode):
    inputs = keras.Input((None,), dtype="int32")
    masked = make_layer(output_mode=output_mode, max_predictions=8,
                        selection="exact")(inputs)
    embedded = keras.layers.Embedding(VOCAB, 4)(inputs)
    pooled = keras.layers.GlobalAveragePooling1D()(embedded)
    outputs = keras.layers.Dense(1)(pooled) + OutputSummary()(masked) * 0.0
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse", jit_compile=True)
    assert model.jit_compile
    ids = batch_of_ids()
    history = model.fit(ids, np.zeros((BATCH, 1), "float32"), batch_size=16, epochs=1,
                        verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_fit_with_jit_compile_trains_on_masked_ids():
    """`model.add(layer)`: the layer masks in the compiled train step."""
    model = keras.Sequential([
        keras.Input((None,), dtype="int32"),
        make_layer(mask_rate=1.0, mask_token_rate=1.0, random_token_rate=0.0),
        keras.layers.Lambda(lambda x: tf.reduce_mean(
            tf.cast(tf.equal(x, MASK), "float32"), axis=1, keepdims=True)),
    ])
    model.compile("sgd", "mae", jit_compile=True)
    ids = np.full((8, 12), 50, np.int32)
    history = model.fit(ids, np.zeros((8, 1), "float32"), batch_size=4, verbose=0)
    assert history.history["loss"][0] == pytest.approx(1.0)


@pytest.mark.parametrize("mask_rate", [0.15, 0.5, 1.0, 0.999])
def test_exact_count_bound_covers_every_count(mask_rate):
    """The fixed ranking width is never below a row's exact count."""
    for length in (1, 2, 7, 190, 511, 512):
        bound = int(selection.exact_count_bound(tf.constant(length), mask_rate))
        counts = expected_exact_count(np.arange(length + 1), mask_rate, None)
        assert counts.max() <= bound <= length
