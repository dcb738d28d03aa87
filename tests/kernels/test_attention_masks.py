"""Tests for `keras_dynmask.kernels.attention_masks`.

The layer tests compare the layers with a pair-by-pair reference; here each
kernel rule is checked against a second, independent NumPy formulation
(triangles and bands, block diagonals, the explicit padding rule).
"""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_dynmask.kernels import attention_masks


def band(length, direction, window):
    """Direction and window as a triangle cut to a band."""
    ones = np.ones((length, length), dtype=bool)
    reach = length if window is None else window - 1
    if direction == "forward":
        return np.tril(ones) & np.triu(ones, -reach)
    return np.triu(ones) & np.tril(ones, reach)


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(0, 12),
    direction=st.sampled_from(attention_masks.DIRECTIONS),
    window=st.none() | st.integers(1, 14),
)
def test_direction_and_window_are_a_band(length, direction, window):
    mask = attention_masks.causal_attention_mask(2, length, direction, window)
    expected = np.broadcast_to(band(length, direction, window), (2, length, length))
    np.testing.assert_array_equal(mask.numpy(), expected)


def block_diagonal(blocks):
    size = sum(len(block) for block in blocks)
    result = np.zeros((size, size), dtype=bool)
    start = 0
    for block in blocks:
        result[start : start + len(block), start : start + len(block)] = block
        start += len(block)
    return result


@settings(max_examples=40, deadline=None)
@given(segment_lengths=st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_packed_segments_are_block_diagonal(segment_lengths):
    segment_ids = np.repeat(np.arange(len(segment_lengths)), segment_lengths)[None]
    length = segment_ids.shape[1]
    mask = attention_masks.causal_attention_mask(
        1, length, segment_ids=tf.constant(segment_ids)
    )
    expected = block_diagonal([np.tril(np.ones((n, n), bool)) for n in segment_lengths])
    np.testing.assert_array_equal(mask.numpy()[0], expected)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda b: st.integers(0, 8).flatmap(
            lambda t: st.tuples(
                hnp.arrays(np.bool_, (b, t)),  # padding mask
                hnp.arrays(np.int32, (b, t), elements=st.integers(0, 2)),
                st.sampled_from(attention_masks.DIRECTIONS),
                st.none() | st.integers(1, 4),
            )
        )
    )
)
def test_padding_groups_equal_the_explicit_padding_rule(problem):
    padding_mask, segment_ids, direction, window = problem
    b, t = padding_mask.shape
    mask = attention_masks.causal_attention_mask(
        b,
        t,
        direction,
        window,
        segment_ids=tf.constant(segment_ids),
        padding_mask=tf.constant(padding_mask),
    )
    # The unpadded rule, stated in NumPy: the band, inside each segment.
    same_segment = segment_ids[:, :, None] == segment_ids[:, None, :]
    unpadded = band(t, direction, window)[None] & same_segment
    # Real query: the unpadded rule restricted to real keys. Padded query:
    # only itself.
    expected = np.where(
        padding_mask[:, :, None],
        unpadded & padding_mask[:, None, :],
        np.eye(t, dtype=bool)[None],
    )
    np.testing.assert_array_equal(mask.numpy(), expected)


def test_prefix_opens_the_prefix_block_whatever_the_window():
    mask = attention_masks.causal_attention_mask(
        2, 6, window=1, prefix_length=tf.constant([0, 4])
    ).numpy()
    np.testing.assert_array_equal(mask[0], np.eye(6, dtype=bool))
    expected = np.eye(6, dtype=bool)
    expected[:4, :4] = True
    np.testing.assert_array_equal(mask[1], expected)
    # A scalar prefix applies to every row; a prefix past the end opens all.
    everything = attention_masks.causal_attention_mask(
        3, 5, prefix_length=tf.constant(9)
    )
    assert everything.numpy().all()


def test_static_and_dynamic_shapes():
    assert attention_masks.causal_attention_mask(4, 3).shape == (4, 3, 3)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 2])])
    def from_dynamic_shape(hidden):
        shape = tf.shape(hidden)
        mask = attention_masks.causal_attention_mask(shape[0], shape[1])
        assert mask.shape.rank == 3
        return mask

    assert from_dynamic_shape(tf.zeros([2, 7, 2])).shape == (2, 7, 7)


def test_unknown_direction_raises():
    with pytest.raises(ValueError, match="direction='up'"):
        attention_masks.causal_attention_mask(1, 3, direction="up")


def test_token_padding_mask_dense_ragged_and_unrepresentable_ids():
    dense = tf.constant([[1, 0, 2], [0, 0, 3]])
    np.testing.assert_array_equal(
        attention_masks.token_padding_mask(dense).numpy(), [[1, 0, 1], [0, 0, 1]]
    )
    ragged = tf.ragged.constant([[1, 0], [], [2, 2, 2]], dtype=tf.int64)
    np.testing.assert_array_equal(
        attention_masks.token_padding_mask(ragged, 2).numpy(),
        [[1, 1, 0], [0, 0, 0], [0, 0, 0]],
    )
    np.testing.assert_array_equal(
        attention_masks.token_padding_mask(ragged, None).numpy(),
        [[1, 1, 0], [0, 0, 0], [1, 1, 1]],
    )
    np.testing.assert_array_equal(
        attention_masks.token_padding_mask(dense, -(2**40)).numpy(), np.ones((2, 3))
    )


def test_attention_mask_from_padding_on_any_leading_shape():
    single = attention_masks.attention_mask_from_padding(tf.constant([True, False, True]))
    np.testing.assert_array_equal(single.numpy(), [[1, 0, 1], [0, 0, 0], [1, 0, 1]])
    batched = attention_masks.attention_mask_from_padding(tf.ones([2, 3, 4], tf.bool))
    assert batched.shape == (2, 3, 4, 4)
