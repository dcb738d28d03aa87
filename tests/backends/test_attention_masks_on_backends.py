"""`PaddingMask` and `CausalMask` on the active Keras backend."""

import os

import keras
import numpy as np
import pytest

import keras_dynmask
from keras_dynmask import CausalMask
from keras_dynmask import PaddingMask

BACKEND = keras.backend.backend()
IDS = np.array([[5, 6, 7, 0], [8, 9, 0, 0]], dtype="int32")


def reference_causal(ids, window=None, prefix=0):
    """The contract's rules, position by position, in NumPy."""
    batch, length = ids.shape
    real = ids != 0
    out = np.zeros((batch, length, length), bool)
    for b in range(batch):
        for i in range(length):
            for j in range(length):
                ok = j <= i and (window is None or i - j < window)
                ok = ok or (i < prefix and j < prefix)
                if not real[b, i]:
                    ok = i == j
                elif not real[b, j]:
                    ok = False
                out[b, i, j] = ok
    return out


def test_eager_call_returns_backend_tensors(as_numpy):
    ids = keras.ops.convert_to_tensor(IDS)
    mask = PaddingMask()(ids)
    attention = PaddingMask(output_mode="attention")(ids)
    causal = CausalMask(window=2)(ids, padding_mask=PaddingMask()(ids), prefix_length=2)
    for out in (mask, attention, causal):
        assert keras.ops.is_tensor(out)
        assert type(out).__module__.split(".")[0] == type(ids).__module__.split(".")[0]
    np.testing.assert_array_equal(as_numpy(mask), IDS != 0)
    np.testing.assert_array_equal(
        as_numpy(attention), (IDS != 0)[:, :, None] & (IDS != 0)[:, None, :]
    )
    np.testing.assert_array_equal(as_numpy(causal), reference_causal(IDS, 2, 2))


@pytest.mark.parametrize("prefix", [np.int64(3), np.array([1, 2], "int32")])
def test_causal_mask_numpy_arguments(as_numpy, prefix):
    ids = keras.ops.convert_to_tensor(IDS)
    segments = np.array([[0, 0, 1, 1], [0, 1, 1, 1]], "int32")
    out = as_numpy(CausalMask()(ids, segment_ids=segments, prefix_length=prefix))
    prefixes = np.broadcast_to(np.asarray(prefix), (2,))
    for b in range(2):
        positions = np.arange(4)
        expected = positions[None, :] <= positions[:, None]
        inside = positions < prefixes[b]
        expected |= inside[:, None] & inside[None, :]
        expected &= segments[b][:, None] == segments[b][None, :]
        np.testing.assert_array_equal(out[b], expected)


def test_output_shapes_and_specs():
    symbolic = keras.Input((7,), dtype="int32", batch_size=3)
    assert PaddingMask()(symbolic).shape == (3, 7)
    assert PaddingMask(output_mode="attention").compute_output_shape((3, 7)) == (3, 7, 7)
    assert CausalMask()(keras.Input((5, 8))).shape == (None, 5, 5)
    assert CausalMask().compute_output_shape((2, 5, 8)) == (2, 5, 5)


def _attention_classifier(mask_layer):
    ids = keras.Input((None,), dtype="int32")
    if isinstance(mask_layer, PaddingMask):
        mask = mask_layer(ids)
    else:
        mask = mask_layer(ids, padding_mask=PaddingMask()(ids))
    hidden = keras.layers.Embedding(20, 8)(ids)
    hidden = keras.layers.MultiHeadAttention(2, 4)(hidden, hidden, attention_mask=mask)
    pooled = keras.layers.GlobalAveragePooling1D()(hidden)
    return keras.Model(ids, keras.layers.Dense(1)(pooled))


@pytest.mark.parametrize(
    "mask_layer",
    [PaddingMask(output_mode="attention"), CausalMask(window=3)],
    ids=["padding", "causal"],
)
@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_fit_predict_evaluate_save(tmp_path, mask_layer, jit_compile):
    if BACKEND == "torch" and jit_compile is True and isinstance(mask_layer, PaddingMask):
        pytest.skip("torch.compile takes a minute a model: one layer covers it")
    keras.utils.set_random_seed(1)
    model = _attention_classifier(mask_layer)
    model.compile("adam", "mse", jit_compile=jit_compile)
    ids = np.random.default_rng(0).integers(1, 20, (16, 6)).astype("int32")
    ids[:, 4:] = 0
    targets = ids[:, :1].astype("float32")
    history = model.fit(ids, targets, epochs=3, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    predicted = model.predict(ids, verbose=0)
    assert np.isfinite(model.evaluate(ids, targets, verbose=0))
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(ids, verbose=0), predicted, rtol=1e-5, atol=1e-6)


def test_sequential_model():
    model = keras.Sequential([keras.Input((4,), dtype="int32"), PaddingMask()])
    np.testing.assert_array_equal(model.predict(IDS, verbose=0), IDS != 0)


@pytest.mark.parametrize("layer", [PaddingMask(pad_token_id=3, output_mode="attention"), CausalMask("backward", 2)])
def test_config_round_trip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    ids = keras.ops.convert_to_tensor(IDS)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(clone(ids)), keras.ops.convert_to_numpy(layer(ids))
    )


def test_first_import_is_safe_and_light():
    """`import keras_dynmask` as a program's first import, on this backend;
    on JAX and PyTorch, masks and token masking without loading TensorFlow."""
    import subprocess
    import sys

    code = (
        "import sys, keras_dynmask, keras, numpy as np\n"
        "ids = keras.ops.convert_to_tensor(np.array([[5, 6, 0]], 'int32'))\n"
        "mask = keras_dynmask.PaddingMask()(ids)\n"
        "keras_dynmask.CausalMask()(ids, padding_mask=mask)\n"
        "for mode in ('ids', 'fit', 'dict'):\n"
        "    keras_dynmask.DynamicMLMMasking(10, 3, output_mode=mode, max_predictions=2)(ids)\n"
        "print(keras.backend.backend(), keras.ops.convert_to_numpy(mask).tolist(), "
        "'tensorflow' in sys.modules)"
    )
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    loads_tensorflow = "True" if BACKEND == "tensorflow" else "False"
    assert result.stdout.split() == [BACKEND, "[[True,", "True,", "False]]", loads_tensorflow]
    assert keras_dynmask.PaddingMask is PaddingMask


def test_in_a_grain_pipeline(as_numpy):
    grain = pytest.importorskip("grain")
    dataset = grain.MapDataset.source([IDS, IDS[::-1]]).map(PaddingMask(output_mode="attention"))
    np.testing.assert_array_equal(
        as_numpy(dataset[1]), (IDS[::-1] != 0)[:, :, None] & (IDS[::-1] != 0)[:, None, :]
    )
    causal = grain.MapDataset.source([IDS]).map(lambda ids: CausalMask(window=2)(ids, padding_mask=ids != 0))
    np.testing.assert_array_equal(as_numpy(causal[0]), reference_causal(IDS, 2))


# Frames by lengths, Keras masks, cross-attention.

LENGTHS = np.array([3, 1], "int32")
FRAMES = np.random.default_rng(0).normal(size=(2, 4, 6)).astype("float32")
REAL_FRAMES = np.arange(4)[None, :] < LENGTHS[:, None]


def test_lengths_keras_masks_and_cross_on_backend_tensors(as_numpy):
    frames = keras.ops.convert_to_tensor(FRAMES)
    mask = PaddingMask()(frames, lengths=keras.ops.convert_to_tensor(LENGTHS))
    assert type(mask).__module__.split(".")[0] == type(frames).__module__.split(".")[0]
    np.testing.assert_array_equal(as_numpy(mask), REAL_FRAMES)
    masked = keras.layers.Masking(0.0)(keras.ops.convert_to_tensor(FRAMES * REAL_FRAMES[:, :, None]))
    np.testing.assert_array_equal(as_numpy(PaddingMask()(masked)), REAL_FRAMES)
    cross = PaddingMask(output_mode="cross")((keras.ops.convert_to_tensor(IDS), mask))
    np.testing.assert_array_equal(as_numpy(cross), (IDS != 0)[:, :, None] & REAL_FRAMES[:, None, :])
    with pytest.raises(ValueError, match="T=4"):
        PaddingMask()(frames, lengths=np.array([5, 1], "int32"))


def test_functional_model_taking_lengths_fits_and_round_trips(tmp_path):
    """A decoder's queries attend the real frames of an encoder's input."""
    keras.utils.set_random_seed(4)
    frames, lengths = keras.Input((None, 6)), keras.Input((), dtype="int32")
    target = keras.Input((None,), dtype="int32")
    cross = PaddingMask(output_mode="cross", name="cross")(
        (target, PaddingMask()(frames, lengths=lengths))
    )
    queries = keras.layers.Embedding(20, 6)(target)
    decoded = keras.layers.MultiHeadAttention(2, 4)(queries, frames, attention_mask=cross)
    model = keras.Model([frames, lengths, target], keras.layers.Dense(1)(decoded))
    model.compile("adam", "mse")
    rng = np.random.default_rng(1)
    data = [
        rng.normal(size=(8, 5, 6)).astype("float32"),
        rng.integers(1, 6, 8).astype("int32"),
        rng.integers(1, 20, (8, 3)).astype("int32"),
    ]
    history = model.fit(data, np.ones((8, 3, 1), "float32"), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    # Frames past a row's length change nothing: they are never attended.
    changed = [data[0] + (np.arange(5)[None, :, None] >= data[1][:, None, None]) * 9.0] + data[1:]
    predicted = model.predict(data, verbose=0)
    np.testing.assert_allclose(model.predict(changed, verbose=0), predicted, rtol=1e-5, atol=1e-5)
    path = os.path.join(tmp_path, "cross.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_layer("cross").output_mode == "cross"
    np.testing.assert_allclose(restored.predict(data, verbose=0), predicted, rtol=1e-5, atol=1e-6)
