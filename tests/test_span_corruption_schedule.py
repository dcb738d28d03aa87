"""`SpanCorruption(noise_density=<schedule>)`: every call follows its step's density.

The noise and span counts of every row are checked against T5's formula at
the schedule's value for that step (exact), in eager calls, through
`mask_dataset` (step `epoch * N + index`) and under XLA.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask import MaskRateLogger
from keras_dynmask import SpanCorruption
from keras_dynmask.data import mask_dataset

VOCABULARY = 1000
MEAN_SPAN = 3.0


def schedule():
    return keras.optimizers.schedules.PolynomialDecay(0.5, 10, 0.15)


def density_at(step):
    return float(np.float32(schedule()(step)))


def formula_counts(lengths, density):
    """T5's arithmetic in float32, written out independently."""
    lengths = np.asarray(lengths)
    num_noise = np.clip(np.round(lengths.astype(np.float32) * np.float32(density)), 1, lengths - 1)
    num_spans = np.maximum(np.round(num_noise.astype(np.float32) / np.float32(MEAN_SPAN)), 1)
    num_spans = np.minimum(num_spans, np.minimum(num_noise, lengths - num_noise))
    return num_noise.astype(int), num_spans.astype(int)


def ragged_rows(seed=0, batch=8):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 120, batch)
    rows = [rng.integers(5, VOCABULARY - 200, n).tolist() for n in lengths]
    return tf.ragged.constant(rows, dtype=tf.int32), lengths


def assert_counts(outputs, lengths, density, sentinels):
    num_noise, num_spans = formula_counts(lengths, density)
    targets = outputs["targets"].to_list()
    inputs = outputs["inputs"].to_list()
    for row, (t, i) in enumerate(zip(targets, inputs)):
        assert sum(token in sentinels for token in t) == num_spans[row]
        assert len(t) == num_noise[row] + num_spans[row]
        assert len(i) == lengths[row] - num_noise[row] + num_spans[row]


def test_each_call_uses_the_density_of_its_step():
    layer = SpanCorruption(VOCABULARY, noise_density=schedule(), mean_noise_span_length=MEAN_SPAN)
    sentinels = set(layer.sentinel_ids)
    for step in range(13):
        assert layer.current_noise_density() == pytest.approx(density_at(step), abs=1e-7)
        rows, lengths = ragged_rows(step)
        assert_counts(layer(rows), lengths, density_at(step), sentinels)
    assert int(layer.schedule_step.numpy()) == 13


def test_mask_dataset_keys_the_step_and_is_reproducible():
    layer = SpanCorruption(VOCABULARY, noise_density=schedule(), mean_noise_span_length=MEAN_SPAN)
    rows, lengths = ragged_rows(7, batch=12)
    batches = tf.data.Dataset.from_tensor_slices(rows).batch(3)  # N = 4
    first = list(mask_dataset(batches, layer, seed=2, num_epochs=3, num_parallel_calls=3))
    again = list(mask_dataset(batches, layer, seed=2, num_epochs=3, num_parallel_calls=1))
    assert len(first) == 12
    for position, (a, b) in enumerate(zip(first, again)):
        assert a["targets"].to_list() == b["targets"].to_list()
        index = position % 4
        assert_counts(a, lengths[3 * index: 3 * index + 3], density_at(position), set(layer.sentinel_ids))
    assert int(layer.schedule_step.numpy()) == 0


def test_scheduled_density_compiles_under_xla_with_fixed_lengths():
    layer = SpanCorruption(
        VOCABULARY, noise_density=schedule(), mean_noise_span_length=MEAN_SPAN,
        inputs_length=128, targets_length=96,
    )
    corrupt = tf.function(lambda ids: layer(ids, training=True), jit_compile=True)
    rows, lengths = ragged_rows(3)
    dense = rows.to_tensor()
    for step in range(3):
        outputs = corrupt(dense)
        assert outputs["inputs"].shape == (8, 128) and outputs["targets"].shape == (8, 96)
        ragged = {
            key: tf.RaggedTensor.from_tensor(value, padding=0) for key, value in outputs.items()
        }
        assert_counts(ragged, lengths, density_at(step), set(layer.sentinel_ids))


def test_config_round_trip_logger_and_lengths_for():
    layer = SpanCorruption(VOCABULARY, noise_density=schedule())
    restored = SpanCorruption.from_config(layer.get_config())
    assert isinstance(restored.noise_density, keras.optimizers.schedules.PolynomialDecay)
    logs = {}
    MaskRateLogger(restored).on_epoch_end(0, logs)
    assert logs["mask_rate"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="noise_density"):
        layer.lengths_for(128)


def test_negative_step_is_refused_not_extrapolated():
    # PolynomialDecay(0.5, 10, 0.15) at step -100 would be 4 (clipped):
    # nearly the whole row noise.
    layer = SpanCorruption(VOCABULARY, noise_density=schedule(), num_sentinels=20)
    row = tf.range(5, 45)[None, :]
    with pytest.raises(ValueError, match="step=-100"):
        layer(row, step=-100)
    in_graph = tf.function(lambda ids, step: layer(ids, step=step)["targets"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="step"):
        in_graph(row, tf.constant(-100))
    targets = layer(row, step=0, seed=tf.constant([1, 2]))["targets"]
    noise, spans = formula_counts([40], density_at(0))
    assert targets.shape[1] == noise[0] + spans[0]
