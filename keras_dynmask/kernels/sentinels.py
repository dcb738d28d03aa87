"""What span corruption makes of the noise: sentinels, inputs and targets.

From each row's span layout (`keras_dynmask.kernels.noise_spans`) the
inputs keep the non-noise tokens and put `sentinel_ids[j]` in place of the
`j`-th noise span; the targets hold, for each noise span, its sentinel and
then its tokens (what T5's `noise_span_to_unique_sentinel` and
`nonnoise_span_to_unique_sentinel` make). Both end with the eos, if any, and
are padded or cut to a width. Outside XLA whole spans are copied as
pieces (one `RaggedGather` per output); under XLA every output slot is one
gather from its source position. No loop over tokens, no pass over the
dropped ones.
"""

import sys

from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask.kernels import random_bits
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
    # At least 0: a row of width 0 has no maximum (reduce_max gives INT32_MIN).
    return tf.maximum(tf.reduce_max(tf.where(real, positions, 0), axis=1), 0)


def sentinel_values(indices, sentinel_ids, dtype):
    """The `indices`-th sentinels (clipped to the list): one subtraction
    when the ids run down by one (T5's extra ids), else a lookup."""
    sentinel_ids = list(sentinel_ids)
    indices = tf.clip_by_value(indices, 0, len(sentinel_ids) - 1)
    if sentinel_ids == list(range(sentinel_ids[0], sentinel_ids[0] - len(sentinel_ids), -1)):
        return tf.constant(sentinel_ids[0], dtype) - tf.cast(indices, dtype)
    return tf.gather(tf.constant(sentinel_ids, dtype), indices)


def _segments(starts, width):
    """`(counts, marks)`, int32 `[B, width + 1]`, for segments starting at `starts`.

    `marks[:, q]` is the number of segments starting at slot `q`, `counts`
    its cumulative sum (each slot's 0-based segment, when one starts at 0
    uncounted); starts past `width` fall in a spare column, dropped.
    """
    batch = tf.shape(starts)[0]
    columns = width + 2
    segments = tf.range(batch)[:, None] * columns + tf.clip_by_value(starts, 0, width + 1)
    marks = tf.math.unsorted_segment_sum(tf.ones_like(segments), segments, batch * columns)
    marks = tf.reshape(marks, [batch, columns])[:, : width + 1]
    return tf.cumsum(marks, axis=1), marks


def _finish(values, slots, total, pad, eos_id):
    """`values` up to `total`, then the eos (if any), then padding."""
    dtype = values.dtype
    after = tf.fill(tf.shape(values), pad)
    if eos_id is not None:
        after = tf.where(tf.equal(slots, total[:, None]), tf.constant(eos_id, dtype), after)
    return tf.where(slots < total[:, None], values, after)


def corrupt_spans(token_ids, layout, num_spans, sentinel_ids, pad_token_id, **options):
    """T5 inputs and targets of `[B, T]` ids from their `SpanLayout`.

    Outside XLA the outputs are lists of whole spans, sentinels and eos
    (`cut_spans`, one `RaggedGather` each); under XLA, which needs static
    shapes, every output slot is gathered from its source position
    (`gathered_spans`). Both give the same outputs.

    Args:
        token_ids: int32/int64 `[B, T]`.
        layout: the rows' `noise_spans.SpanLayout`.
        num_spans: int32 `[B]`, noise spans per row (0: no noise).
        sentinel_ids: Python ints, the `r`-th noise span's sentinel first.
        pad_token_id: int or `None` (0), fills past each row's end.
        **options: `eos_id`, `inputs_width`, `targets_width`,
            `with_sentinels`, `inputs_first_ids` (see `gathered_spans`).

    Returns:
        `(inputs, inputs_lengths, targets, targets_lengths)`: `[B, width]`
        of `token_ids`' dtype, and int32 `[B]`.
    """
    if random_bits.in_xla_context():
        return gathered_spans(token_ids, layout, num_spans, sentinel_ids, pad_token_id, **options)
    return cut_spans(token_ids, layout, num_spans, sentinel_ids, pad_token_id, **options)


def _interleaved(first, second):
    """int32 `[B, 2 K]`: `first[:, 0], second[:, 0], first[:, 1], ...` of
    two non-negative int32 `[B, K]`, by one bitcast of their int64 pairs (a
    stack on the last axis copies one value at a time)."""
    # The byte order is read when tracing: a graph keeps that of its host.
    low, high = (first, second) if sys.byteorder == "little" else (second, first)
    pairs = tf.bitwise.bitwise_or(
        tf.bitwise.left_shift(tf.cast(high, tf.int64), 32), tf.cast(low, tf.int64)
    )
    return tf.reshape(tf.bitcast(pairs, tf.int32), [tf.shape(first)[0], -1])


def cut_spans(
    token_ids,
    layout,
    num_spans,
    sentinel_ids,
    pad_token_id,
    eos_id=None,
    inputs_width=None,
    targets_width=None,
    with_sentinels=None,
    inputs_first_ids=None,
):
    """`corrupt_spans` as lists of pieces, copied whole by one `RaggedGather`.

    The pieces are the rows of one ragged tensor: each row of ids cut at
    its span boundaries (non-noise span 1, noise span 1, ..., then the
    padding past its tokens), an empty piece, and one piece per sentinel,
    the eos and each row's first id. The inputs of a row list its pieces
    "first id, non-noise span r, sentinel r (or the empty piece), ...,
    eos"; the targets "sentinel r (or empty), noise span r, ..., eos". The
    lists are arithmetic on the span index alone, and `RaggedGather`
    copies each piece whole, not one gathered index per value.
    """
    dtype = token_ids.dtype
    batch = tf.shape(token_ids)[0]
    width = tf.shape(token_ids)[1]
    pad = tf.constant(pad_token_id or 0, dtype)
    nonnoise_before, noise_before = layout
    max_spans = tf.shape(nonnoise_before)[1] - 1
    lengths = nonnoise_before[:, -1] + noise_before[:, -1]
    # Pieces of the ids: per row 2 K spans and the padding, from these starts.
    nonnoise_start = nonnoise_before[:, :-1] + noise_before[:, :-1]
    noise_start = nonnoise_before[:, 1:] + noise_before[:, :-1]
    row_starts = tf.concat([_interleaved(nonnoise_start, noise_start), lengths[:, None]], 1)
    row_starts += tf.range(batch)[:, None] * width
    sentinel_ids = list(sentinel_ids)
    extras = [tf.constant(sentinel_ids, dtype)]
    if eos_id is not None:
        extras.append(tf.constant([eos_id], dtype))
    if inputs_first_ids is not None:
        extras.append(tf.cast(inputs_first_ids, dtype))
    extras = tf.concat(extras, 0)
    values = tf.concat([tf.reshape(token_ids, [-1]), extras], 0)
    ids_end = batch * width
    splits = tf.concat(
        [
            tf.reshape(row_starts, [-1]),
            # The last row's padding ends, and the empty piece too.
            [ids_end, ids_end],
            ids_end + tf.range(1, tf.size(extras) + 1),
        ],
        0,
    )
    pieces_per_row = 2 * max_spans + 1
    empty = batch * pieces_per_row
    sentinel_piece = empty + 1
    eos_piece = sentinel_piece + len(sentinel_ids)
    first_piece = eos_piece + (0 if eos_id is None else 1)

    # Column c of a row's 2 K alternating pieces is its span c // 2 + 1.
    column = tf.range(2 * max_spans)[None, :]
    span = column // 2 + 1
    has_sentinel = span <= num_spans[:, None]
    if with_sentinels is not None:
        has_sentinel = tf.logical_and(has_sentinel, with_sentinels[:, None])
    sentinel = tf.where(
        has_sentinel, sentinel_piece + tf.minimum(span - 1, len(sentinel_ids) - 1), empty
    )
    own_piece = tf.range(batch)[:, None] * pieces_per_row + column
    is_nonnoise = tf.equal(column % 2, 0)
    sentinel_count = tf.reduce_sum(tf.cast(has_sentinel[:, ::2], tf.int32), axis=1)
    tail = [] if eos_id is None else [tf.fill([batch, 1], eos_piece)]
    head = []
    extra = len(tail)
    if inputs_first_ids is not None:
        # A negative first id: nothing first in that row (the empty piece).
        has_first = tf.greater_equal(inputs_first_ids, 0)
        head = [tf.where(has_first, first_piece + tf.range(batch), empty)[:, None]]
        extra += tf.cast(has_first, tf.int32)

    def copied(pieces, total, out_width):
        _, copies = tf.raw_ops.RaggedGather(
            params_nested_splits=[splits],
            params_dense_values=values,
            indices=tf.reshape(tf.concat(pieces, 1), [-1]),
            OUTPUT_RAGGED_RANK=1,
        )
        ragged = tf.RaggedTensor.from_row_lengths(copies, total, validate=False)
        dense = ragged.to_tensor(pad, shape=None if out_width is None else [None, out_width])
        return dense, total if out_width is None else tf.minimum(total, out_width)

    # Inputs: non-noise span r, then its sentinel (in the sentinel's column).
    inputs, inputs_lengths = copied(
        [*head, tf.where(is_nonnoise, own_piece, sentinel), *tail],
        nonnoise_before[:, -1] + sentinel_count + extra,
        inputs_width,
    )
    # Targets: sentinel r (in the non-noise column), then noise span r.
    targets, targets_lengths = copied(
        [tf.where(is_nonnoise, sentinel, own_piece), *tail],
        noise_before[:, -1] + sentinel_count + len(tail),
        targets_width,
    )
    return inputs, inputs_lengths, targets, targets_lengths


def gathered_spans(
    token_ids,
    layout,
    num_spans,
    sentinel_ids,
    pad_token_id,
    eos_id=None,
    inputs_width=None,
    targets_width=None,
    with_sentinels=None,
    inputs_first_ids=None,
):
    """`corrupt_spans` with static shapes, as XLA needs them.

    Each output slot is gathered from its source position: the inputs are
    segments `[non-noise span r, sentinel r]`, the targets segments
    `[sentinel r, noise span r]`; a small segment sum marks where each
    segment starts and a cumulative sum tells every slot its segment.

    Args:
        token_ids: int32/int64 `[B, T]`.
        layout: the rows' `noise_spans.SpanLayout`.
        num_spans: int32 `[B]`, noise spans per row (0: no noise).
        sentinel_ids: Python ints, the `r`-th noise span's sentinel first.
        pad_token_id: int or `None` (0), fills past each row's end.
        eos_id: `None` or int appended to inputs and targets.
        inputs_width, targets_width: `None` (the batch's longest) or ints.
        with_sentinels: `None` (all rows) or bool `[B]`: rows without take
            no sentinels (one span: inputs the non-noise prefix, targets
            the noise rest, as a prefix-LM split).
        inputs_first_ids: `None` or int `[B]` put first in the inputs (a
            negative id: nothing in that row).

    Returns:
        `(inputs, inputs_lengths, targets, targets_lengths)`: `[B, width]`
        of `token_ids`' dtype, and int32 `[B]`.
    """
    dtype = token_ids.dtype
    pad = tf.constant(pad_token_id or 0, dtype)
    nonnoise_before, noise_before = layout
    num_nonnoise = nonnoise_before[:, -1]
    num_noise = noise_before[:, -1]
    span_index = tf.range(tf.shape(nonnoise_before)[1])[None, :]
    sentinel_count = num_spans
    if with_sentinels is not None:
        sentinel_count = tf.where(with_sentinels, num_spans, 0)
    eos = 0 if eos_id is None else 1
    first = 0  # per row: 1 where a first id goes before the rest
    if inputs_first_ids is not None:
        has_first = tf.greater_equal(inputs_first_ids, 0)
        first = tf.cast(has_first, tf.int32)
    inputs_total = num_nonnoise + sentinel_count
    targets_total = num_noise + sentinel_count
    if inputs_width is None:
        inputs_width = tf.reduce_max(tf.concat([inputs_total + first + eos, [0]], 0))
    if targets_width is None:
        targets_width = tf.reduce_max(tf.concat([targets_total + eos, [0]], 0))
    if token_ids.shape[1] is None or token_ids.shape[1] == 0:
        # One padding column, so that a batch of width 0 has a position to
        # read (each slot then falls past its row's end).
        token_ids = tf.pad(
            token_ids, [[0, 0], [0, tf.maximum(1 - tf.shape(token_ids)[1], 0)]],
            constant_values=pad,
        )
    source_width = tf.shape(token_ids)[1]

    def gathered(sources):
        return tf.gather(token_ids, tf.clip_by_value(sources, 0, source_width - 1), batch_dims=1)

    # Inputs: segment r (from 0) starts at slot nonnoise_before[r] + r and
    # reads position slot + noise_before[r] - r; its last slot (a sentinel
    # row) is the sentinel.
    width = inputs_width
    counts, _ = _segments(nonnoise_before[:, 1:] + span_index[:, 1:], width)
    segment = counts[:, :width]
    slots = tf.range(width)[None, :]
    shift = tf.gather(noise_before - span_index, segment, batch_dims=1)
    values = gathered(slots + shift)
    is_sentinel = tf.not_equal(counts[:, 1:], segment)
    if with_sentinels is not None:
        is_sentinel = tf.logical_and(is_sentinel, with_sentinels[:, None])
    values = tf.where(is_sentinel, sentinel_values(segment, sentinel_ids, dtype), values)
    inputs = _finish(values, slots, inputs_total, pad, eos_id)
    if inputs_first_ids is not None:
        shifted = tf.concat([tf.cast(inputs_first_ids, dtype)[:, None], inputs], 1)
        inputs = tf.where(has_first[:, None], shifted[:, :width], inputs)
    # Targets: segment r starts at slot noise_before[r] + r with its
    # sentinel, then reads position slot + nonnoise_before[r + 1] - r - 1.
    width = targets_width
    counts, marks = _segments(noise_before[:, 1:] + span_index[:, 1:], width)
    segment = counts[:, :width]
    slots = tf.range(width)[None, :]
    offsets = tf.concat([nonnoise_before[:, 1:], num_nonnoise[:, None]], 1) - span_index - 1
    if with_sentinels is not None:
        offsets += tf.cast(tf.logical_not(with_sentinels), tf.int32)[:, None]
    values = gathered(slots + tf.gather(offsets, segment, batch_dims=1))
    starts = tf.logical_or(marks[:, :width] > 0, tf.equal(slots, 0))
    if with_sentinels is not None:
        starts = tf.logical_and(starts, with_sentinels[:, None])
    values = tf.where(starts, sentinel_values(segment, sentinel_ids, dtype), values)
    targets = _finish(values, slots, targets_total, pad, eos_id)
    lengths = (
        tf.minimum(inputs_total + first + eos, inputs_width),
        tf.minimum(targets_total + eos, targets_width),
    )
    return inputs, lengths[0], targets, lengths[1]
