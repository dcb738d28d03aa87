"""`SpecAugment` on the active Keras backend: eager tensors, statistics, models."""

import os

import keras
import numpy as np
import pytest
from distribution_bounds import chi2_critical
from distribution_bounds import chi_square

from keras_dynmask import SpecAugment

BACKEND = keras.backend.backend()


def test_eager_call_statistics_mean_fill_and_seed_purity(as_numpy):
    # Integer entries, a mean of k + 0.5 per example: a filled entry shows.
    values = np.arange(96, dtype="float32").reshape(1, 12, 8) + np.arange(2000)[:, None, None]
    x = keras.ops.convert_to_tensor(values.astype("float32"))
    layer = SpecAugment(1, 4, 1.0, 1, 3, mask_value="mean")
    out = layer(x, seed=[3, 4])
    assert type(out).__module__.split(".")[0] == type(x).__module__.split(".")[0]
    hit = as_numpy(out) != values
    means = np.broadcast_to(values.mean(axis=(1, 2))[:, None, None], values.shape)
    np.testing.assert_allclose(as_numpy(out)[hit], means[hit], rtol=1e-6)
    rows, cols = hit.all(axis=2), hit.all(axis=1)
    np.testing.assert_array_equal(hit, rows[:, :, None] | cols[:, None, :])  # whole bands
    for mask, width in ((rows, 4), (cols, 3)):
        counts = np.bincount(mask.sum(axis=1), minlength=width + 1)
        assert len(counts) == width + 1
        assert chi_square(counts, np.full(width + 1, 2000 / (width + 1))) < chi2_critical(width)
    np.testing.assert_array_equal(as_numpy(layer(x, seed=np.array([3, 4]))), as_numpy(out))
    assert (as_numpy(layer(x, seed=[3, 5])) != as_numpy(out)).any()
    assert (as_numpy(layer(x)) != as_numpy(layer(x))).any()  # unseeded: fresh
    np.testing.assert_array_equal(as_numpy(layer(x, training=False)), values)
    # With lengths: bands inside each example's real frames, mean of those.
    lengths = keras.ops.convert_to_tensor(np.tile(np.array([5, 12], "int32"), 1000))
    out = as_numpy(layer(x, lengths=lengths, seed=[1, 1]))
    assert (out[0::2, 5:] == values[0::2, 5:]).all()
    hit = out[0::2] != values[0::2]
    np.testing.assert_allclose(out[0::2][hit], np.broadcast_to(values[0::2, :5].mean(axis=(1, 2))[:, None, None], hit.shape)[hit], rtol=1e-6)
    with pytest.raises(ValueError, match="T=12"):
        layer(x, lengths=np.full(2000, 13, "int32"))


def _augmented_regressor():
    inputs, lengths = keras.Input((None, 6)), keras.Input((), dtype="int32")
    hidden = SpecAugment(2, 4, 0.5, 1, 2, name="augment")(inputs, lengths=lengths)
    pooled = keras.layers.GlobalAveragePooling1D()(hidden)
    return keras.Model([inputs, lengths], keras.layers.Dense(1)(pooled))


@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_fit_masks_and_predict_does_not(tmp_path, as_numpy, jit_compile):
    if BACKEND == "torch" and jit_compile is True:
        pytest.skip("torch.compile takes a minute a model; the eager torch fit covers the layer")
    if BACKEND == "jax" and jit_compile is True:
        pytest.skip("on JAX, 'auto' is jit_compile=True: the case above")
    keras.utils.set_random_seed(2)
    model = _augmented_regressor()
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    x = np.random.default_rng(0).normal(size=(8, 10, 6)).astype("float32")
    x = [x, np.array([10, 9, 8, 7, 6, 5, 4, 3], "int32")]
    y = np.zeros((8, 1), "float32")
    # Zero learning rate, same batch: only fresh masks can change the loss.
    losses = [float(model.train_on_batch(x, y)) for _ in range(4)]
    assert len(set(losses)) >= 3, losses
    expected = as_numpy(model.layers[-1](keras.ops.mean(x[0], axis=1)))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_layer("augment").get_config() == model.get_layer("augment").get_config()
    np.testing.assert_allclose(restored.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
