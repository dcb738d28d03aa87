"""Tests for `keras_dynmask.SpecAugment` (TensorFlow: tf.data, graphs, XLA, export)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from distribution_bounds import chi2_critical
from distribution_bounds import chi_square

from keras_dynmask import SpecAugment
from keras_dynmask.kernels import band_masks

BATCH, FRAMES, BINS = 3000, 20, 16
TIME_PARAM, FREQ_PARAM = 6, 5  # narrower than T and F: bands never cover a whole axis


def decode(masked, fill=0.0):
    """`(rows, cols)`: bool `[B, T]`, `[B, F]`, the fully masked frames and bins.

    Asserts that the mask holds nothing else: whole bands only.
    """
    hit = masked == fill
    rows, cols = hit.all(axis=2), hit.all(axis=1)
    np.testing.assert_array_equal(hit, rows[:, :, None] | cols[:, None, :])
    return rows, cols


def single_band(mask):
    """Width and start of each row's one band (start -1 when empty); asserts contiguity."""
    widths = mask.sum(axis=1)
    starts = np.where(widths > 0, mask.argmax(axis=1), -1)
    positions = np.arange(mask.shape[1])
    expected = (positions >= starts[:, None]) & (positions < (starts + widths)[:, None])
    np.testing.assert_array_equal(mask, expected)
    return widths, starts


def assert_uniform(values, support, label):
    counts = np.array([(values == v).sum() for v in support])
    assert counts.sum() == len(values), (label, "value outside the support")
    expected = np.full(len(support), len(values) / len(support))
    statistic = chi_square(counts, expected)
    assert statistic < chi2_critical(len(support) - 1), (label, counts)


def assert_widths_and_starts(mask, max_width, label):
    """Widths uniform on {0..W}; given the width w, starts uniform on {0..L-w}."""
    length = mask.shape[1]
    widths, starts = single_band(mask)
    assert_uniform(widths, range(max_width + 1), f"{label} widths")
    # Joint (width, start) cells for w >= 1, each of probability
    # 1 / ((W + 1) (L - w + 1)): one chi-square over all of them.
    observed, expected = [], []
    for w in range(1, max_width + 1):
        for s in range(length - w + 1):
            observed.append(((widths == w) & (starts == s)).sum())
            expected.append(len(widths) / (max_width + 1) / (length - w + 1))
    assert sum(observed) == (widths > 0).sum()
    assert chi_square(observed, expected) < chi2_critical(len(observed) - 1), label


@pytest.fixture(scope="module")
def one_band_each():
    """One time and one frequency band per example, on a batch of ones."""
    layer = SpecAugment(1, TIME_PARAM, 1.0, 1, FREQ_PARAM)
    return layer(np.ones((BATCH, FRAMES, BINS), "float32"), seed=[4, 2]).numpy()


def test_widths_and_starts_are_uniform(one_band_each):
    rows, cols = decode(one_band_each)
    assert_widths_and_starts(rows, TIME_PARAM, "time")
    assert_widths_and_starts(cols, FREQ_PARAM, "freq")


def test_draws_are_independent_per_example(one_band_each):
    rows, cols = decode(one_band_each)
    # Pairs of neighbouring examples: the joint law of their time widths is
    # the product of the marginals (49 equally likely cells).
    widths = rows.sum(axis=1)
    pairs = widths[0::2] * (TIME_PARAM + 1) + widths[1::2]
    assert_uniform(pairs, range((TIME_PARAM + 1) ** 2), "width pairs")
    # And an example's time width tells nothing of its frequency width.
    joint = rows.sum(axis=1) * (FREQ_PARAM + 1) + cols.sum(axis=1)
    assert_uniform(joint, range((TIME_PARAM + 1) * (FREQ_PARAM + 1)), "time x freq")


def test_several_bands_cover_whole_bands_only():
    layer = SpecAugment(3, 4, 1.0, 2, 3, mask_value=-1.0)
    x = np.ones((200, 30, 12), "float32")
    rows, cols = decode(layer(x, seed=[1, 1]).numpy(), fill=-1.0)
    # Three bands of at most 4 frames: at most 12 masked frames, 6 bins.
    assert rows.sum(axis=1).max() <= 12 and cols.sum(axis=1).max() <= 6
    assert rows.sum(axis=1).max() > 4  # bands at different places add up


@pytest.mark.parametrize(
    "frames, ratio, cap",
    [(20, 0.3, 6), (10, 0.7, 7), (3, 1.0, 3), (29, 0.1, 2)],
)
def test_max_time_ratio_caps_the_width(frames, ratio, cap):
    # 0.7 * 10 is 7 (the decimal), though the float 0.7 is just below it.
    assert band_masks.widest_band(None, frames, 100, ratio) == cap
    layer = SpecAugment(1, 100, ratio, 0, 0)
    rows, _ = decode(layer(np.ones((600, frames, 2), "float32"), seed=[0, 7]).numpy())
    assert_uniform(rows.sum(axis=1), range(cap + 1), f"capped widths T={frames}")


def test_a_numpy_float32_ratio_counts_as_the_decimal_it_prints_as():
    # np.float32(0.7) holds 0.6999999881...: read as is, 10 frames would cap at 6.
    layer = SpecAugment(max_time_ratio=np.float32(0.7))
    assert layer.get_config()["max_time_ratio"] == 0.7
    assert band_masks.widest_band(None, 10, 100, layer.max_time_ratio) == 7


def test_time_mask_param_caps_and_frequency_width_stays_inside():
    x = np.ones((800, 9, 4), "float32")
    rows, _ = decode(SpecAugment(1, 2, 1.0, 0, 0)(x, seed=[2, 2]).numpy())
    assert_uniform(rows.sum(axis=1), range(3), "time widths")
    # freq_mask_param above F = 4: widths uniform on {0..4}, a band may
    # cover every bin.
    hit = SpecAugment(0, 0, 1.0, 1, 50)(x, seed=[2, 2]).numpy() == 0
    cols = hit.all(axis=1)
    np.testing.assert_array_equal(hit, np.broadcast_to(cols[:, None, :], hit.shape))
    assert_uniform(single_band(cols)[0], range(5), "freq widths")


def test_mean_fill_is_each_examples_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (64, 25, 10)).astype("float32")
    x += np.arange(64, dtype="float32")[:, None, None]  # a different mean each
    out = SpecAugment(2, 8, 1.0, 2, 4, mask_value="mean")(x, seed=[5, 5]).numpy()
    changed = out != x
    assert changed.any(axis=(1, 2)).mean() > 0.8
    means = x.astype(np.float64).mean(axis=(1, 2))
    for b in range(64):
        np.testing.assert_allclose(out[b][changed[b]], means[b], rtol=1e-6)
        np.testing.assert_array_equal(out[b][~changed[b]], x[b][~changed[b]])


def test_not_training_is_the_identity_exactly():
    x = np.random.default_rng(1).normal(size=(4, 12, 6)).astype("float32")
    layer = SpecAugment(4, 12, 1.0, 4, 6)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    inputs = keras.Input((None, 6))
    model = keras.Model(inputs, layer(inputs))
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    np.testing.assert_array_equal(model(x).numpy(), x)
    assert (layer(x).numpy() != x).any()  # on its own it masks


def test_single_spectrogram_dtypes_and_shapes():
    layer = SpecAugment(1, 3, 1.0, 1, 2, mask_value="mean")
    for dtype in ("float16", "bfloat16", "float64"):
        x = tf.random.stateless_normal([10, 6], [1, 2], dtype=dtype)
        out = layer(x, seed=[3, 3])
        assert out.dtype == x.dtype and out.shape == (10, 6)
    assert layer(tf.zeros([0, 6]), seed=[1, 1]).shape == (0, 6)
    spec = layer.compute_output_spec(keras.KerasTensor((None, None, 6), "bfloat16"))
    assert spec.shape == (None, None, 6) and spec.dtype == "bfloat16"


def test_seeds():
    x = np.ones((8, 20, 8), "float32")
    layer = SpecAugment(2, 6, 1.0, 2, 4)
    first = layer(x, seed=[1, 2]).numpy()
    np.testing.assert_array_equal(first, layer(x, seed=tf.constant([1, 2], tf.int32)).numpy())
    assert (first != layer(x, seed=[1, 3]).numpy()).any()
    assert (layer(x).numpy() != layer(x).numpy()).any()  # unseeded: fresh
    seeded = [SpecAugment(2, 6, 1.0, 2, 4, seed=9) for _ in range(2)]  # two runs
    runs = [[layer(x).numpy() for _ in range(2)] for layer in seeded]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert (runs[0][0] != runs[0][1]).any()


def test_tf_data_with_a_length_known_only_at_run_time():
    def spectrograms(i):  # T = 10, then 20: a None dimension in the dataset
        return tf.ones(tf.stack([500, 10 + 10 * tf.cast(i, tf.int32), 3]))

    layer = SpecAugment(1, 100, 0.7, 1, 2)
    dataset = tf.data.Dataset.range(2).map(spectrograms).map(layer)
    assert dataset.element_spec.shape.as_list() == [500, None, 3]
    for frames, out in zip((10, 20), dataset):
        rows, _ = decode(out.numpy())
        assert rows.shape[1] == frames
        assert_uniform(rows.sum(axis=1), range(int(0.7 * frames + 1e-9) + 1), f"T={frames}")
    # Each epoch draws fresh masks.
    first, second = (np.stack([m.numpy()[:, :10] for m in dataset.take(1)]) for _ in range(2))
    assert (first != second).any()


def test_xla_keeps_the_statistics():
    layer = SpecAugment(1, TIME_PARAM, 1.0, 1, FREQ_PARAM)

    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec([None, None, BINS])])
    def augment(x):
        return layer(x, training=True, seed=tf.constant([8, 1], tf.int64))

    rows, cols = decode(augment(np.ones((BATCH, FRAMES, BINS), "float32")).numpy())
    assert_widths_and_starts(rows, TIME_PARAM, "time under XLA")
    assert_uniform(cols.sum(axis=1), range(FREQ_PARAM + 1), "freq under XLA")
    unseeded = tf.function(lambda x: layer(x, training=True), jit_compile=True)
    rows, _ = decode(unseeded(np.ones((4, 7, 4), "float32")).numpy())
    assert rows.shape == (4, 7)


def test_saved_model_masks_at_any_length_and_serves_unmasked(tmp_path):
    layer = SpecAugment(1, 100, 0.5, 1, 2)
    module = tf.Module()
    module.layer = layer
    module.augment = tf.function(
        lambda x, seed: layer(x, training=True, seed=seed),
        input_signature=[tf.TensorSpec([None, None, 4]), tf.TensorSpec([2], tf.int64)],
    )
    path = os.path.join(tmp_path, "augment")
    tf.saved_model.save(module, path)
    loaded = tf.saved_model.load(path)
    seed = tf.constant([6, 6], tf.int64)
    for frames in (8, 30):
        x = np.ones((300, frames, 4), "float32")
        out = loaded.augment(x, seed).numpy()
        np.testing.assert_array_equal(out, loaded.augment(x, seed).numpy())  # pure
        np.testing.assert_array_equal(out, module.augment(x, seed).numpy())
        rows, _ = decode(out)
        assert rows.sum(axis=1).max() == frames // 2
    # A Keras model's export serves unmasked.
    inputs = keras.Input((None, 4))
    model = keras.Model(inputs, keras.layers.Dense(2)(SpecAugment(2, 5, 1.0, 2, 2)(inputs)))
    exported = os.path.join(tmp_path, "model")
    model.export(exported, verbose=False)
    x = np.random.default_rng(2).normal(size=(2, 9, 4)).astype("float32")
    reloaded = tf.saved_model.load(exported)  # kept: its variables die with it
    served = reloaded.serve(x).numpy()
    np.testing.assert_allclose(served, model.predict(x, verbose=0), rtol=1e-6)


def test_keras_file_round_trip(tmp_path):
    layer = SpecAugment(3, 7, 0.25, 1, 9, mask_value="mean", seed=3, name="augment")
    config = layer.get_config()
    assert SpecAugment.from_config(config).get_config() == config
    inputs = keras.Input((None, 5))
    model = keras.Model(inputs, layer(inputs))
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path).get_layer("augment")
    assert restored.get_config() == config
    x = np.random.default_rng(3).normal(size=(2, 10, 5)).astype("float32")
    np.testing.assert_array_equal(restored(x, seed=[1, 2]).numpy(), layer(x, seed=[1, 2]).numpy())


def test_lengths_keep_bands_inside_each_examples_real_frames():
    lengths = np.tile([8, 20], BATCH // 2).astype("int64")
    layer = SpecAugment(1, 100, 0.5, 1, FREQ_PARAM, mask_value=-1.0)
    out = layer(np.ones((BATCH, FRAMES, BINS), "float32"), seed=[3, 9], lengths=lengths).numpy()
    hit = out == -1.0
    short = hit[lengths == 8]
    assert not short[:, 8:].any()  # padded frames stay as they are
    rows, cols = decode(np.where(short[:, :8], -1.0, 1.0), fill=-1.0)
    assert_widths_and_starts(rows, 4, "time, 8 real frames")  # floor(0.5 * 8)
    rows, _ = decode(np.where(hit[lengths == 20], -1.0, 1.0), fill=-1.0)
    assert_widths_and_starts(rows, 10, "time, 20 real frames")
    assert_uniform(cols.sum(axis=1), range(FREQ_PARAM + 1), "freq, 8 real frames")
    # One spectrogram, one length; "mean": the mean of the real frames.
    x = np.arange(40, dtype="float32").reshape(10, 4)
    out = SpecAugment(3, 100, 1.0, 2, 2, mask_value="mean")(x, seed=[1, 4], lengths=5).numpy()
    np.testing.assert_array_equal(out[5:], x[5:])
    assert (out != x).any()
    np.testing.assert_allclose(out[out != x], x[:5].mean(), rtol=1e-6)


def test_lengths_are_checked_eagerly_and_in_graphs():
    x = np.ones((2, 6, 3), "float32")
    layer = SpecAugment(1, 3, 1.0, 1, 1)
    for lengths in ([7, 1], [-1, 1]):
        with pytest.raises(ValueError, match="must lie in \\[0, T\\]"):
            layer(x, lengths=lengths)
    with pytest.raises(ValueError, match="shape \\[B\\] with B = 2"):
        layer(x, lengths=[1, 2, 3])
    with pytest.raises(ValueError, match="must be integers"):
        layer(x, lengths=[1.0, 2.0])
    signature = [tf.TensorSpec([None, None, 3]), tf.TensorSpec([None], tf.int32)]
    graph = tf.function(lambda x, l: layer(x, training=True, lengths=l), input_signature=signature)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must lie in"):
        graph(x, [7, 1])
    assert graph(x, [6, 0]).shape == (2, 6, 3)


# Errors.


@pytest.mark.parametrize(
    "kwargs, quoted",
    [
        (dict(num_time_masks=-1), "num_time_masks=-1"),
        (dict(time_mask_param=-3), "time_mask_param=-3"),
        (dict(num_freq_masks=1.5), "num_freq_masks=1.5"),
        (dict(freq_mask_param=-1), "freq_mask_param=-1"),
        (dict(max_time_ratio=0.0), "max_time_ratio=0.0"),
        (dict(max_time_ratio=1.5), "max_time_ratio=1.5"),
        (dict(mask_value="median"), "mask_value='median'"),
        (dict(mask_value=None), "mask_value=None"),
        (dict(seed="1"), "seed='1'"),
    ],
)
def test_bad_configuration_raises(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        SpecAugment(**kwargs)


@pytest.mark.parametrize(
    "spectrogram, quoted",
    [
        (np.ones((2, 3, 4), np.int32), "dtype int32"),
        (np.ones((2, 3, 4), bool), "dtype bool"),
        (np.ones((5,), np.float32), "rank 1"),
        (np.ones((1, 2, 3, 4), np.float32), "rank 4"),
        (tf.ragged.constant([[[1.0]], [[2.0], [3.0]]], ragged_rank=1), "ragged"),
        ("loud", "spectrogram='loud'"),
    ],
)
def test_bad_inputs_raise(spectrogram, quoted):
    with pytest.raises(ValueError, match=quoted):
        SpecAugment()(spectrogram)


def test_unknown_rank_is_refused_at_trace_time():
    traced = tf.function(lambda x: SpecAugment()(x), input_signature=[tf.TensorSpec(None)])
    with pytest.raises(ValueError, match="rank 3 \\[B, T, F\\]"):
        traced.get_concrete_function()
