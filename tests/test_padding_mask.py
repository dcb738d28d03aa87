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
