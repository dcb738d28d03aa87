"""Output formatting: labels, sample weights and keras-hub's targets."""

from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask.kernels import op_set

from keras_dynmask.kernels import random_bits
from keras_dynmask.kernels import row_lists


def labels(original_ids, selected, ignore_index):
    """The original id at selected positions, `ignore_index` elsewhere.

    Written against the op set: TensorFlow or `keras.ops` tensors.
    """
    ops = op_set.for_values(original_ids)
    dtype = ops.dtype_name(original_ids)
    ignored = ops.broadcast_to(ops.convert(ignore_index, dtype=dtype), ops.shape(original_ids))
    return ops.where(selected, original_ids, ignored)


def sample_weights(selected):
    """float32 1.0 at selected positions, 0.0 elsewhere (any backend)."""
    return op_set.for_values(selected).cast(selected, "float32")


def prediction_targets(token_ids, selected, max_predictions):
    """keras-hub style `mask_positions`, `mask_ids`, `mask_weights`.

    Positions of the selected tokens in ascending order, then padding with
    position 0, id 0, weight 0, to width `max_predictions`. The selected
    positions are listed row by row in ascending order
    (`row_lists.listed_rows`), so no sort is needed.

    Args:
        token_ids: original ids `[B, T]`.
        selected: bool `[B, T]` with at most `max_predictions` per row.
        max_predictions: the output width.

    Returns:
        `(positions int32 [B, P], ids [B, P], weights float32 [B, P])`.
    """
    if random_bits.in_xla_context():
        return fixed_width_targets(token_ids, selected, max_predictions)
    flat_positions, row_splits = row_lists.listed_rows(selected)
    # Padded with -1 here, so the filled slots tell the weights.
    flat = row_lists.pad_split_rows(flat_positions, row_splits, max_predictions, -1)
    filled = flat >= 0
    shape = tf.shape(token_ids, tf.int64)
    row_starts = tf.range(shape[0]) * shape[1]
    positions = tf.cast(tf.where(filled, flat - row_starts[:, None], 0), tf.int32)
    ids = row_lists.pad_split_rows(
        tf.gather(tf.reshape(token_ids, [-1]), flat_positions), row_splits, max_predictions)
    return positions, ids, tf.cast(filled, tf.float32)


def fixed_width_targets(token_ids, selected, max_predictions):
    """`prediction_targets` from fixed-shape ops only (the XLA form).

    Each selected token's slot is the number of selections before it in
    its row (a cumulative sum); every position is scattered into a
    `[B, max_predictions + 1]` buffer whose last column takes the
    unselected ones and is dropped.
    """
    batch_size, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    slots = tf.cumsum(tf.cast(selected, tf.int32), axis=1, exclusive=True)
    slots = tf.where(
        tf.logical_and(selected, slots < max_predictions), slots, max_predictions
    )
    rows = tf.broadcast_to(tf.range(batch_size)[:, None], [batch_size, length])
    indices = tf.stack([rows, slots], axis=-1)
    shape = tf.stack([batch_size, max_predictions + 1])
    positions = tf.broadcast_to(tf.range(length)[None, :], [batch_size, length])
    positions = tf.scatter_nd(indices, tf.where(selected, positions, 0), shape)
    ids = tf.scatter_nd(indices, tf.where(selected, token_ids, 0), shape)
    counts = tf.reduce_sum(tf.cast(selected, tf.int32), axis=1)
    weights = tf.sequence_mask(counts, max_predictions, tf.float32)
    return positions[:, :max_predictions], ids[:, :max_predictions], weights


def empty_prediction_targets(leading_shape, max_predictions, ids_dtype):
    """keras-hub's three targets when nothing is selected.

    `leading_shape` is the int32 shape before the last axis (`[B]`, or `[]`
    for a single sequence).
    """
    shape = tf.concat([tf.cast(leading_shape, tf.int32), [max_predictions]], 0)
    return (
        tf.zeros(shape, tf.int32),
        tf.zeros(shape, ids_dtype),
        tf.zeros(shape, tf.float32),
    )
