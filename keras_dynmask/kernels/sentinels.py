"""What span corruption makes of the noise: sentinels, inputs and targets.

From each position's span number (`keras_dynmask.kernels.noise_spans`: odd
means noise, span `2j + 1` is the `j`-th noise span) the inputs keep the
non-noise tokens and put `sentinel_ids[j]` in place of the `j`-th noise
span; the targets hold, for each noise span, its sentinel and then its
tokens (T5's `noise_span_to_unique_sentinel` and
`nonnoise_span_to_unique_sentinel`: the sentinel stands where the non-noise
span before the noise span was). Both are packed left, an eos appended, and
padded or cut to a width, with one segment sum each: no loop over tokens.
"""

import tensorflow as tf

from keras_dynmask.kernels import selection


def sentinel_tokens(token_ids, sentinel_ids):
    """bool, True where a token is one of `sentinel_ids` (any shape).

    Args:
        token_ids: int32/int64 ids.
        sentinel_ids: Python ints.
    """
    not_sentinel = selection.eligible_tokens(token_ids, sorted(set(sentinel_ids)))
    return tf.logical_not(not_sentinel)


def trailing_lengths(token_ids, pad_token_id):
    """Real tokens per row of `[B, T]` ids: up to the last non-padding token.

    Padding inside a row (before its last real token) counts as a token, so
    nothing is lost; with `pad_token_id=None` every position is real.
    """
    width = tf.shape(token_ids)[1]
    if pad_token_id is None:
        return tf.fill(tf.shape(token_ids)[:1], width)
    positions = tf.range(1, width + 1)[None, :]
    real = tf.not_equal(token_ids, tf.constant(pad_token_id, token_ids.dtype))
    return tf.reduce_max(tf.where(real, positions, 0), axis=1)


def pack_left(values, keep, width, pad_token_id, eos_id=None, first_ids=None):
    """Packs each row's kept values to the left: `[first] kept... [eos] pad...`.

    Args:
        values: int `[B, T]`.
        keep: bool `[B, T]`.
        width: int (Python or scalar tensor) or `None` for the batch's longest.
        pad_token_id: int, fills the rest (0 when `None`).
        eos_id: `None` or int appended after the kept values.
        first_ids: `None` or int `[B]` put before them (e.g. a mode token).

    Returns:
        `(packed, lengths)`: `[B, width]` values of `values`' dtype, cut at
        `width`, and int32 `[B]` lengths (at most `width`).
    """
    dtype = values.dtype
    pad = tf.constant(pad_token_id or 0, dtype)
    keep = tf.cast(keep, tf.int32)
    offset = 0 if first_ids is None else 1
    slots = tf.cumsum(keep, axis=1) - 1 + offset
    count = tf.reduce_sum(keep, axis=1) + offset
    columns = [values]
    slot_columns = [tf.where(keep > 0, slots, -1)]
    if first_ids is not None:
        columns.insert(0, tf.cast(first_ids, dtype)[:, None])
        slot_columns.insert(0, tf.zeros_like(count)[:, None])
    if eos_id is not None:
        columns.append(tf.fill(tf.shape(count)[:1], tf.constant(eos_id, dtype))[:, None])
        slot_columns.append(count[:, None])
        count += 1
    if len(columns) > 1:
        values = tf.concat(columns, axis=1)
        slots = tf.concat(slot_columns, axis=1)
    else:
        slots = slot_columns[0]
    if width is None:
        width = tf.reduce_max(tf.concat([count, [0]], 0))
    batch = tf.shape(values)[0]
    stride = width + 1
    # Dropped and cut-off values all land in one spare column per row.
    slots = tf.where((slots >= 0) & (slots < width), slots, width)
    segments = tf.range(batch)[:, None] * stride + slots
    packed = tf.math.unsorted_segment_sum(values - pad, segments, batch * stride)
    packed = tf.reshape(packed, [batch, stride])[:, :width] + pad
    return packed, tf.minimum(count, width)


def corrupt_spans(
    token_ids,
    lengths,
    span_numbers,
    num_spans,
    sentinel_ids,
    pad_token_id,
    eos_id=None,
    inputs_width=None,
    targets_width=None,
    with_sentinels=None,
    inputs_first_ids=None,
):
    """T5 inputs and targets from the span numbers of `[B, T]` ids.

    Args:
        token_ids: int32/int64 `[B, T]`.
        lengths: int32 `[B]`, real tokens per row.
        span_numbers: int32 `[B, T]` (`noise_spans.span_numbers`).
        num_spans: int32 `[B]`, noise spans per row (0: no noise).
        sentinel_ids: Python ints, the `j`-th noise span's sentinel first;
            spans past the list reuse its last id (callers cap the spans).
        pad_token_id: int or `None` (0), fills past each row's end.
        eos_id: `None` or int appended to inputs and targets.
        inputs_width, targets_width: `None` (the batch's longest) or ints.
        with_sentinels: `None` (all rows) or bool `[B]`: rows without take
            no sentinels (a prefix-LM split: inputs the non-noise prefix,
            targets the noise rest).
        inputs_first_ids: `None` or int `[B]` put first in the inputs.

    Returns:
        `(inputs, inputs_lengths, targets, targets_lengths)`.
    """
    dtype = token_ids.dtype
    positions = tf.range(tf.shape(token_ids)[1])[None, :]
    valid = positions < lengths[:, None]
    noise = tf.logical_and(valid, tf.equal(tf.bitwise.bitwise_and(span_numbers, 1), 1))
    previous = tf.pad(span_numbers[:, :-1], [[0, 0], [1, 0]], constant_values=-1)
    starts = tf.logical_and(valid, tf.not_equal(span_numbers, previous))
    if with_sentinels is not None:
        starts = tf.logical_and(starts, with_sentinels[:, None])
    table = tf.constant(list(sentinel_ids), dtype)
    index = tf.clip_by_value(span_numbers // 2, 0, len(sentinel_ids) - 1)
    sentinels = tf.gather(table, index)
    # A noise span's first token becomes its sentinel in the inputs; in the
    # targets the sentinel takes the place of the non-noise span before it.
    keep_inputs = tf.logical_or(
        tf.logical_and(valid, tf.logical_not(noise)), tf.logical_and(noise, starts)
    )
    has_noise = (num_spans > 0)[:, None]
    keep_targets = tf.logical_or(
        noise, tf.logical_and(tf.logical_and(starts, tf.logical_not(noise)), has_noise)
    )
    inputs, inputs_lengths = pack_left(
        tf.where(noise, sentinels, token_ids),
        keep_inputs,
        inputs_width,
        pad_token_id,
        eos_id,
        inputs_first_ids,
    )
    targets, targets_lengths = pack_left(
        tf.where(noise, token_ids, sentinels), keep_targets, targets_width, pad_token_id, eos_id
    )
    return (
        tf.cast(inputs, dtype),
        inputs_lengths,
        tf.cast(targets, dtype),
        targets_lengths,
    )
