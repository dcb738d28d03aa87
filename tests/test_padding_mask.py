"""Tests for `keras_dynmask.PaddingMask`."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_dynmask import PaddingMask


def reference_padding_mask(rows, length, pad_token_id):
    """`[B, T]`: True at position t of row b when a token is there and is real."""
    mask = np.zeros((len(rows), length), dtype=bool)
    for b, row in enumerate(rows):
        for t in range(length):
            mask[b, t] = t < len(row) and (pad_token_id is None or row[t] != pad_token_id)
    return mask


def reference_attention_mask(padding_mask):
    """`[B, T, T]`: True where query i and key j are both real."""
    batch_size, length = padding_mask.shape
    mask = np.zeros((batch_size, length, length), dtype=bool)
    for b in range(batch_size):
        for i in range(length):
            for j in range(length):
                mask[b, i, j] = padding_mask[b, i] and padding_mask[b, j]
    return mask


@st.composite
def padding_problems(draw):
    kind = draw(st.sampled_from(["dense", "numpy", "int64", "ragged", "single"]))
    pad_token_id = draw(st.sampled_from([0, 3, -1, None]))
    batch_size = 1 if kind == "single" else draw(st.integers(1, 4))
    id_values = st.integers(-1, 5)
    if kind == "ragged":
        rows = draw(
            st.lists(
                st.lists(id_values, max_size=8), min_size=batch_size, max_size=batch_size
            )
        )
        length = max(len(row) for row in rows)
    else:
        length = draw(st.integers(0, 8))
        rows = draw(
            st.lists(
                st.lists(id_values, min_size=length, max_size=length),
                min_size=batch_size,
                max_size=batch_size,
            )
        )
    output_mode = draw(st.sampled_from(["mask", "attention"]))
    return kind, rows, length, pad_token_id, output_mode


def make_token_ids(kind, rows, length):
    if kind == "ragged":
        return tf.ragged.constant(rows, dtype=tf.int32, ragged_rank=1)
    ids = np.array(rows, dtype=np.int32).reshape(len(rows), length)
    if kind == "numpy":
        return ids
    if kind == "int64":
        return tf.constant(ids, tf.int64)
    if kind == "single":
        return tf.constant(ids[0])
    return tf.constant(ids)


@settings(max_examples=150, deadline=None)
@given(padding_problems())
def test_matches_reference(problem):
    kind, rows, length, pad_token_id, output_mode = problem
    layer = PaddingMask(pad_token_id=pad_token_id, output_mode=output_mode)
    got = layer(make_token_ids(kind, rows, length))
    expected = reference_padding_mask(rows, length, pad_token_id)
    if output_mode == "attention":
        expected = reference_attention_mask(expected)
    if kind == "single":
        expected = expected[0]
    assert got.dtype == tf.bool
    np.testing.assert_array_equal(got.numpy(), expected)


def test_docstring_example():
    ids = np.array([[5, 6, 0], [7, 0, 0]], dtype="int32")
    np.testing.assert_array_equal(
        PaddingMask()(ids).numpy(), [[True, True, False], [True, False, False]]
    )
    attention = PaddingMask(output_mode="attention")(ids).numpy()
    np.testing.assert_array_equal(attention[1].astype(int), [[1, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_ragged_gives_dense_mask_of_padded_batch():
    ids = tf.ragged.constant([[4, 0, 5], [], [6]])
    np.testing.assert_array_equal(
        PaddingMask()(ids).numpy(),
        [[True, False, True], [False, False, False], [True, False, False]],
    )
    # With no padding id, only the positions past each row's end are padding.
    np.testing.assert_array_equal(
        PaddingMask(pad_token_id=None)(ids).numpy(),
        [[True, True, True], [False, False, False], [True, False, False]],
    )


def test_padding_id_outside_the_dtype_range_pads_nothing():
    ids = tf.constant([[0, 1, 2]], tf.int32)
    np.testing.assert_array_equal(PaddingMask(pad_token_id=2**40)(ids).numpy(), [[True] * 3])
    np.testing.assert_array_equal(
        PaddingMask(pad_token_id=2**40)(tf.constant([[2**40, 1]], tf.int64)).numpy(),
        [[False, True]],
    )


# Equivalence with Keras's own padding handling.


def test_attention_mask_equals_keras_padding_handling():
    ids = np.array([[4, 5, 6, 0, 0], [7, 0, 0, 0, 0], [0, 0, 0, 0, 0]], np.int32)
    embedding = keras.layers.Embedding(10, 8, mask_zero=True)
    attention = keras.layers.MultiHeadAttention(2, 4, seed=0)
    x = embedding(ids)
    assert getattr(x, "_keras_mask", None) is not None
    expected = attention(x, x)  # masks from Embedding(mask_zero=True)
    plain = tf.identity(x)
    got = attention(plain, plain, attention_mask=PaddingMask(output_mode="attention")(ids))
    # Equal everywhere, padded queries included: it is the same mask.
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    # Keras's attention keeps the empty rows of padded queries finite.
    assert np.isfinite(got.numpy()).all()


def test_mask_mode_is_what_keras_embedding_computes():
    ids = np.array([[3, 0, 2, 0], [0, 0, 0, 1]], np.int32)
    keras_mask = keras.layers.Embedding(5, 2, mask_zero=True).compute_mask(ids)
    np.testing.assert_array_equal(PaddingMask()(ids).numpy(), np.asarray(keras_mask))


# tf.data, graphs with unknown shapes, XLA, models.


def test_in_tf_data_pipeline():
    ids = tf.ragged.constant([[5, 6, 7], [8], [9, 0], [4, 4, 4, 4]])
    dataset = tf.data.Dataset.from_tensor_slices(ids).ragged_batch(2).map(PaddingMask())
    masks = [mask.numpy() for mask in dataset]
    np.testing.assert_array_equal(masks[0], [[True, True, True], [True, False, False]])
    np.testing.assert_array_equal(
        masks[1], [[True, False, False, False], [True, True, True, True]]
    )
    dense = tf.data.Dataset.from_tensor_slices(np.array([[1, 0], [2, 3]], np.int32))
    unbatched = [m.numpy() for m in dense.map(PaddingMask(output_mode="attention"))]
    np.testing.assert_array_equal(unbatched[0], [[True, False], [False, False]])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_graph_with_unknown_shapes(jit_compile):
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)], jit_compile=jit_compile)
    def masks(ids):
        return PaddingMask()(ids), PaddingMask(output_mode="attention")(ids)

    for shape in [(1, 1), (3, 7), (2, 0)]:
        ids = np.random.default_rng(sum(shape)).integers(0, 3, size=shape).astype(np.int32)
        mask, attention = masks(ids)
        expected = reference_padding_mask(ids.tolist(), shape[1], 0)
        np.testing.assert_array_equal(mask.numpy(), expected)
        np.testing.assert_array_equal(attention.numpy(), reference_attention_mask(expected))


def test_ragged_graph_with_unknown_shapes():
    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.int64, ragged_rank=1)])
    def mask(ids):
        return PaddingMask(output_mode="attention")(ids)

    ids = tf.ragged.constant([[1, 2], [3, 0, 4]], dtype=tf.int64)
    expected = reference_attention_mask(reference_padding_mask(ids.to_list(), 3, 0))
    np.testing.assert_array_equal(mask(ids).numpy(), expected)


def test_symbolic_output_spec_and_model():
    ids = keras.Input(shape=(None,), dtype="int32")
    mask = PaddingMask()(ids)
    attention = PaddingMask(output_mode="attention")(ids)
    assert mask.shape == (None, None) and mask.dtype == "bool"
    assert attention.shape == (None, None, None) and attention.dtype == "bool"
    model = keras.Model(ids, [mask, attention])
    got_mask, got_attention = model.predict(np.array([[1, 0, 2]], np.int32), verbose=0)
    np.testing.assert_array_equal(got_mask, [[True, False, True]])
    np.testing.assert_array_equal(got_attention, reference_attention_mask(got_mask))


def test_config_round_trip():
    layer = PaddingMask(pad_token_id=7, output_mode="attention", name="real_pairs")
    config = layer.get_config()
    assert config["pad_token_id"] == 7 and config["output_mode"] == "attention"
    clone = PaddingMask.from_config(config)
    assert (clone.pad_token_id, clone.output_mode, clone.name) == (7, "attention", "real_pairs")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, PaddingMask) and restored.pad_token_id == 7


# Errors.


@pytest.mark.parametrize(
    "kwargs, quoted",
    [
        (dict(pad_token_id="0"), "pad_token_id='0'"),
        (dict(pad_token_id=1.5), "pad_token_id=1.5"),
        (dict(pad_token_id=True), "pad_token_id=True"),
        (dict(output_mode="dict"), "output_mode='dict'"),
        (dict(output_mode=None), "output_mode=None"),
    ],
)
def test_bad_configuration_raises(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        PaddingMask(**kwargs)


@pytest.mark.parametrize(
    "token_ids, quoted",
    [
        (np.zeros((2, 3), np.float32), "dtype=float32"),
        (tf.constant([["a", "b"]]), "dtype=string"),
        (np.zeros((2, 3, 4), np.int32), "rank 3"),
        (np.int32(3), "rank 0"),
        (tf.ragged.constant([[[1], [2]], [[3]]]), "ragged token_ids of shape"),
        ({"token_ids": np.ones((1, 2), np.int32)}, "tensor of token ids"),
    ],
)
def test_bad_inputs_raise(token_ids, quoted):
    with pytest.raises(ValueError, match=quoted):
        PaddingMask()(token_ids)


# Frames: lengths and Keras masks.


def lengths_reference(lengths, length):
    return np.arange(length)[None, :] < np.asarray(lengths)[:, None]


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_lengths_give_the_masks_of_ids_of_those_lengths(dtype):
    rng = np.random.default_rng(5)
    lengths = rng.integers(0, 9, 6).astype(dtype)
    features = rng.normal(size=(6, 8, 3)).astype("float32")
    ids = np.where(lengths_reference(lengths, 8), 7, 0).astype("int32")
    for mode in ("mask", "attention"):
        layer = PaddingMask(output_mode=mode)
        got = layer(features, lengths=lengths)
        assert got.dtype == tf.bool
        np.testing.assert_array_equal(got.numpy(), layer(ids).numpy())
    # Ids [B, T] with lengths: the lengths decide, not the padding id.
    np.testing.assert_array_equal(
        PaddingMask()(np.zeros((2, 3), "int32"), lengths=[3, 1]).numpy(),
        [[True, True, True], [True, False, False]],
    )


def test_keras_mask_of_float_features_is_the_padding():
    features = np.random.default_rng(0).normal(size=(3, 5, 4)).astype("float32")
    features[0, 3:], features[1, 1:], features[2, :] = 0.0, 0.0, 0.0
    real = features.any(axis=2)
    masked = keras.layers.Masking(0.0)(features)
    np.testing.assert_array_equal(PaddingMask()(masked).numpy(), real)
    np.testing.assert_array_equal(
        PaddingMask(output_mode="attention")(masked).numpy(), reference_attention_mask(real)
    )
    # In a model: Keras hands the layer the mask of its input.
    inputs = keras.Input((None, 4))
    attention = PaddingMask(output_mode="attention")(keras.layers.Masking(0.0)(inputs))
    assert attention.shape == (None, None, None)
    model = keras.Model(inputs, attention)
    np.testing.assert_array_equal(model.predict(features, verbose=0), reference_attention_mask(real))


def test_lengths_in_tf_data_and_graphs_with_unknown_shapes():
    frames = tf.data.Dataset.range(1, 4).map(
        lambda n: (tf.ones(tf.stack([n, 2])), tf.cast(n, tf.int32) - 1)
    )
    dataset = frames.padded_batch(3).map(lambda f, l: PaddingMask()(f, lengths=l))
    (mask,) = [m.numpy() for m in dataset]
    np.testing.assert_array_equal(mask, lengths_reference([0, 1, 2], 3))

    for jit_compile in (False, True):
        @tf.function(
            input_signature=[tf.TensorSpec([None, None, 3]), tf.TensorSpec([None], tf.int64)],
            jit_compile=jit_compile,
        )
        def attention(features, lengths):
            return PaddingMask(output_mode="attention")(features, lengths=lengths)

        for shape, lengths in (((2, 4, 3), [4, 1]), ((1, 6, 3), [0])):
            expected = reference_attention_mask(lengths_reference(lengths, shape[1]))
            np.testing.assert_array_equal(attention(tf.zeros(shape), lengths).numpy(), expected)


# Cross-attention.


def test_cross_mask_from_ids_masks_and_lengths():
    target = np.array([[4, 5, 0], [6, 0, 0]], "int32")
    source = np.array([[7, 8, 9, 0, 0], [7, 0, 0, 0, 0]], "int64")
    expected = (target != 0)[:, :, None] & (source != 0)[:, None, :]
    cross = PaddingMask(output_mode="cross")
    np.testing.assert_array_equal(cross((target, source)).numpy(), expected)
    np.testing.assert_array_equal(cross((target != 0, tf.constant(source != 0))).numpy(), expected)
    frames = np.ones((2, 5, 8), "float32")
    got = cross((target, frames), lengths=(None, np.array([3, 1], "int32")))
    np.testing.assert_array_equal(got.numpy(), expected)
    ragged = tf.ragged.constant([[4, 5], [6]])
    np.testing.assert_array_equal(cross((ragged, source)).numpy(), expected[:, :2])  # T = 2


def test_cross_mask_equals_keras_padding_handling():
    rng = np.random.default_rng(3)
    target = rng.integers(1, 10, (3, 4)).astype("int32")
    source = rng.integers(1, 10, (3, 6)).astype("int32")
    target[0, 2:], target[2, 1:], source[1, 3:], source[2, 5:] = 0, 0, 0, 0
    embedding = keras.layers.Embedding(10, 8, mask_zero=True)
    attention = keras.layers.MultiHeadAttention(2, 4, seed=0)
    query, value = embedding(target), embedding(source)
    mask = PaddingMask(output_mode="cross")((target, source))
    # Float features carrying Keras masks give the same mask (read before
    # the attention call, which drops its inputs' masks).
    from_features = PaddingMask(output_mode="cross")((query, value))
    np.testing.assert_array_equal(from_features.numpy(), mask.numpy())
    expected = attention(query, value)  # masks from Embedding(mask_zero=True)
    got = attention(tf.identity(query), tf.identity(value), attention_mask=mask)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_cross_model_keras_file_round_trip(tmp_path):
    target = keras.Input((None,), dtype="int32")
    frames = keras.Input((None, 4))
    lengths = keras.Input((), dtype="int32")
    source = PaddingMask(name="frames")(frames, lengths=lengths)
    assert source.shape == (None, None)
    cross = PaddingMask(output_mode="cross", name="cross")((target, source))
    assert cross.shape == (None, None, None) and cross.dtype == "bool"
    model = keras.Model([target, frames, lengths], cross)
    path = str(tmp_path / "cross.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_layer("cross").get_config()["output_mode"] == "cross"
    inputs = [np.array([[3, 0], [4, 5]], "int32"), np.zeros((2, 3, 4), "float32"), np.array([1, 3], "int32")]
    expected = (inputs[0] != 0)[:, :, None] & lengths_reference(inputs[2], 3)[:, None, :]
    np.testing.assert_array_equal(restored.predict(inputs, verbose=0), expected)
    spec = PaddingMask(output_mode="cross").compute_output_spec(
        (keras.KerasTensor((2, 5), "int32"), keras.KerasTensor((2, 7), "bool"))
    )
    assert spec.shape == (2, 5, 7)
    assert PaddingMask(output_mode="attention").compute_output_shape((2, 6, 80)) == (2, 6, 6)


def test_saved_model_checks_lengths_at_run_time(tmp_path):
    module = tf.Module()
    module.mask = tf.function(
        lambda features, lengths: PaddingMask()(features, lengths=lengths),
        input_signature=[tf.TensorSpec([None, None, 2]), tf.TensorSpec([None], tf.int32)],
    )
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    np.testing.assert_array_equal(loaded.mask(tf.zeros([2, 3, 2]), [3, 1]).numpy(), lengths_reference([3, 1], 3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="lengths"):
        loaded.mask(tf.zeros([2, 3, 2]), [4, 1])


# Errors of the frame and cross forms.


@pytest.mark.parametrize(
    "call, quoted",
    [
        (lambda: PaddingMask()(np.zeros((2, 3, 4), "float32")), "lengths=.*or a Keras mask"),
        (lambda: PaddingMask()(np.zeros((2, 3, 4)), lengths=[3, 4]), "lengths=\\[3, 4\\], T=3"),
        (lambda: PaddingMask()(np.zeros((2, 3, 4)), lengths=[-1, 2]), "must lie in \\[0, T\\]"),
        (lambda: PaddingMask()(np.zeros((2, 3, 4)), lengths=[1, 2, 3]), "shape \\[B\\] with B = 2"),
        (lambda: PaddingMask()(np.zeros((2, 3, 4)), lengths=[[1, 2]]), "shape \\[B\\] with B = 2"),
        (lambda: PaddingMask()(np.zeros((2, 3, 4)), lengths=[1.0, 2.0]), "must be integers \\[B\\]"),
        (lambda: PaddingMask()(np.zeros((3,)), lengths=[1]), "of shape \\[B, T\\] or"),
        (lambda: PaddingMask()(np.zeros((2, 3), "float32"), mask=np.ones((2, 4), bool)), "Keras mask"),
        (lambda: PaddingMask()((np.ones((1, 2), "int32"), np.ones((1, 2), "int32"))), "output_mode='cross'"),
        (lambda: PaddingMask(output_mode="cross")(np.ones((1, 2), "int32")), "takes a pair"),
        (lambda: PaddingMask(output_mode="cross")((np.ones((2, 2), "int32"), np.ones((3, 2), "int32"))), "same size"),
        (lambda: PaddingMask(output_mode="cross")((np.ones(2, "int32"), np.ones((1, 2), "int32"))), "token ids \\[B, T\\]"),
        (lambda: PaddingMask(output_mode="cross")((np.ones((1, 2), "int32"),) * 2, lengths=[1]), "a pair"),
        (lambda: PaddingMask(output_mode="cross")((keras.Input((2,), batch_size=2, dtype="int32"),
                                                   keras.Input((3,), batch_size=3, dtype="int32"))), "same size"),
    ],
)
def test_bad_frame_and_cross_inputs_raise(call, quoted):
    with pytest.raises(ValueError, match=quoted):
        call()


def test_lengths_past_the_end_fail_in_graphs_and_are_clipped_under_xla():
    signature = [tf.TensorSpec([None, None, 2]), tf.TensorSpec([None], tf.int32)]
    graph = tf.function(lambda f, l: PaddingMask()(f, lengths=l), input_signature=signature)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must lie in"):
        graph(tf.zeros([2, 3, 2]), [5, -1])
    xla = tf.function(lambda f, l: PaddingMask()(f, lengths=l), input_signature=signature, jit_compile=True)
    np.testing.assert_array_equal(xla(tf.zeros([2, 3, 2]), [5, -1]).numpy(), [[True] * 3, [False] * 3])
