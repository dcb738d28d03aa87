"""`SpanMasking` on the active Keras backend (TensorFlow, JAX, PyTorch).

Eager calls on backend tensors return backend tensors; the masked share of
each frame position over one big batch follows wav2vec 2.0's rule
(binomial bounds around the exact chances of `frame_span_reference`);
padding is never masked; a call-time seed makes the output pure; inside a
functional model the learned mask vector trains under `fit` (Keras's
default jit and `jit_compile=True`), only training masks, and the model
survives a `.keras` round trip.
"""

import keras
import numpy as np
import pytest
from distribution_bounds import binomial_upper_critical
from frame_span_reference import frame_probabilities
from frame_span_reference import runs

from keras_dynmask import SpanMasking

BACKEND = keras.backend.backend()
ROWS, WIDTH, DEPTH = 1024, 32, 3
LENGTH = 27  # real frames of every row, padding at the end
PADDING = np.arange(WIDTH)[None, :] < np.full((ROWS, 1), LENGTH)
RULE = dict(mask_prob=0.4, mask_length=4, min_masks=1)
FEATURES = np.random.default_rng(0).normal(size=(ROWS, WIDTH, DEPTH)).astype("float32") + 5.0


def tensor(x):
    return keras.ops.convert_to_tensor(x)


def two_sided(n, p, alpha=1e-7):
    return n - binomial_upper_critical(n, 1 - p, alpha), binomial_upper_critical(n, p, alpha)


@pytest.mark.parametrize("allow_overlap", [True, False])
def test_positions_follow_the_rule_and_padding_stays(as_numpy, allow_overlap):
    layer = SpanMasking(allow_overlap=allow_overlap, mask_value=-1.0, **RULE)
    masked, mask = layer(tensor(FEATURES), padding_mask=tensor(PADDING), seed=[2, 3])
    module = type(mask).__module__.split(".")[0]
    assert module in {"jax": ("jax", "jaxlib"), "torch": ("torch",),
                      "tensorflow": ("tensorflow",)}[BACKEND]
    masked, mask = as_numpy(masked), as_numpy(mask)
    assert mask.dtype == bool and not mask[:, LENGTH:].any()
    expected = frame_probabilities(LENGTH, allow_overlap=allow_overlap, **RULE)
    for t, count in enumerate(mask[:, :LENGTH].sum(axis=0)):
        low, high = two_sided(ROWS, expected[t])
        assert low < count < high, (t, count, expected[t] * ROWS)
    np.testing.assert_array_equal(masked[mask], -1.0)
    np.testing.assert_array_equal(masked[~mask], FEATURES[~mask])
    if not allow_overlap:
        assert all(r % 4 == 0 for row in mask for r in runs(row))
        assert set(mask.sum(axis=1)) <= {8, 12}  # int(0.4 * 27 / 4 + u) spans


def test_call_seed_purity_and_training_false(as_numpy):
    # The shapes and rule of the test above: JAX reuses its compiled ops.
    layer = SpanMasking(mask_value=-1.0, **RULE)
    x, padding = tensor(FEATURES), tensor(PADDING)
    first, again = layer(x, padding, seed=[7, 8]), layer(x, padding, seed=[7, 8])
    for a, b in zip(first, again):
        np.testing.assert_array_equal(as_numpy(a), as_numpy(b))
    assert (as_numpy(layer(x, padding, seed=[7, 9])[1]) != as_numpy(first[1])).any()
    unchanged, none = layer(x, training=False)
    np.testing.assert_array_equal(as_numpy(unchanged), FEATURES)
    assert not as_numpy(none).any()


def masking_model(jit_compile):
    frames = keras.Input((WIDTH, DEPTH))
    padding = keras.Input((WIDTH,), dtype="bool")
    masked, mask = SpanMasking(mask_prob=0.3, mask_length=4, feature_mask_prob=0.3,
                                feature_mask_length=1, seed=1)(frames, padding_mask=padding)
    hidden = keras.layers.Dense(DEPTH)(masked)
    model = keras.Model([frames, padding], [hidden, mask])
    model.compile(keras.optimizers.SGD(0.1), loss=["mse", None], jit_compile=jit_compile)
    return model


@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_fit_trains_the_mask_vector_and_only_training_masks(tmp_path, as_numpy, jit_compile):
    if BACKEND == "torch" and jit_compile is True:
        pytest.skip("torch.compile of a fit takes a minute")
    if BACKEND == "jax" and jit_compile is True:
        pytest.skip('on JAX "auto" is jit already')
    keras.utils.set_random_seed(2)
    model = masking_model(jit_compile)
    layer = next(l for l in model.layers if isinstance(l, SpanMasking))
    before = as_numpy(layer.mask_vector).copy()
    x = [FEATURES[:64], PADDING[:64]]
    model.fit(x, np.zeros((64, WIDTH, DEPTH), "float32"), batch_size=32, verbose=0)
    assert not np.allclose(as_numpy(layer.mask_vector), before)
    _, mask = model.predict(x, verbose=0)
    assert not mask.any()
    first, second = (as_numpy(model([tensor(v[:8]) for v in x], training=True)[1]) for _ in range(2))
    assert first.any() and (first != second).any()  # the seed generator moves on
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    restored_layer = next(l for l in restored.layers if isinstance(l, SpanMasking))
    assert restored_layer.get_config() == layer.get_config()
    for saved, loaded in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(as_numpy(loaded), as_numpy(saved))


class FrameEncoder(keras.layers.Layer):
    """A layer that masks inside its own `call` (as a speech encoder does)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.masking = SpanMasking(mask_prob=0.5, mask_length=2, mask_value=0.0)

    def call(self, frames, lengths, training=None):
        return self.masking(frames, lengths=lengths, training=training)[1]


def test_inside_a_layer_of_a_functional_model_with_unknown_batch(as_numpy):
    # JAX traces the outer layer with a symbolic batch dim to infer its output.
    frames, lengths = keras.Input((WIDTH, DEPTH)), keras.Input((), dtype="int32")
    model = keras.Model([frames, lengths], FrameEncoder()(frames, lengths))
    assert tuple(model.output.shape) == (None, WIDTH)
    mask = as_numpy(model([tensor(FEATURES[:4]), tensor(np.full(4, LENGTH, "int32"))], training=True))
    assert mask.shape == (4, WIDTH) and mask.any() and not mask[:, LENGTH:].any()


def test_lengths_outside_the_frames_are_an_error_eagerly():
    layer = SpanMasking(mask_value=0.0, **RULE)
    with pytest.raises(ValueError, match="lengths"):
        layer(tensor(FEATURES[:2]), lengths=tensor(np.array([WIDTH + 1, 3], "int32")))


def test_a_keras_mask_is_the_padding_mask(as_numpy):
    """After `Masking`, Keras passes the mask: padded frames are never
    masked, and the masked features carry the Keras mask on."""
    padded = np.where(PADDING[:, :, None], FEATURES, 0.0).astype("float32")
    frames = keras.Input((WIDTH, DEPTH))
    masked, mask = SpanMasking(mask_value=-1.0, **RULE)(keras.layers.Masking(0.0)(frames))
    assert getattr(masked, "_keras_mask", None) is not None
    model = keras.Model(frames, mask)
    chosen = as_numpy(model(tensor(padded), training=True))
    assert not chosen[:, LENGTH:].any()
    share = chosen[:, :LENGTH].mean()  # about the rule's share at this length
    assert abs(share - frame_probabilities(LENGTH, allow_overlap=True, **RULE).mean()) < 0.05
