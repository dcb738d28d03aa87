"""Which positions T5 span corruption turns into noise: pure TF over whole batches.

Per row of `n` real tokens (T5's `random_spans_noise_mask` arithmetic, in
float32 as there):

    num_noise = clip(round(n * noise_density), 1, n - 1)
    num_spans = clip(round(num_noise / mean_noise_span_length),
                     1, min(num_noise, n - num_noise, max_spans))

and a row of fewer than 2 tokens has no noise (both counts 0). The noise
lengths are a uniformly random composition of `num_noise` into `num_spans`
positive parts, the non-noise lengths one of `n - num_noise`, independently;
the spans alternate, non-noise first, so every arrangement with those counts
is equally likely.

A composition of `m` items into `k` parts is `k - 1` distinct cut points
among the `m - 1` gaps: each gap gets one uniform 31-bit key, gaps past the
row's `m - 1` get -1, and one `top_k` over the whole batch (every row's
noise and non-noise compositions at once) keeps each row's largest keys.

The result is one int32 per position, its *span number* in the
alternation: 0 the first non-noise span, 1 the first noise span, 2 the
second non-noise span, ...; odd means noise. `keras_dynmask.kernels.sentinels`
turns it into inputs and targets.
"""

import collections

import numpy as np
import tensorflow as tf

from keras_dynmask.kernels import random_bits

SpanLengths = collections.namedtuple("SpanLengths", ["tokens_length", "targets_length"])
SpanLengths.__doc__ = """Raw and target lengths that fill a wanted inputs length.

Attributes:
    tokens_length: the most real tokens a row may hold so that its inputs
        fit the wanted length.
    targets_length: the targets' length for a row of `tokens_length` tokens
        (rows of fewer tokens never have longer targets).
"""


def span_counts(lengths, noise_density, mean_noise_span_length, max_spans=None):
    """`(num_noise, num_spans)` per row, int32 `[B]` each.

    Args:
        lengths: int `[B]`, real tokens per row.
        noise_density: float, or float `[B]` (one per row).
        mean_noise_span_length: float >= 1, or float `[B]`.
        max_spans: `None` or an int cap on the spans (the sentinels there are).
    """
    lengths = tf.cast(lengths, tf.int32)
    density = tf.cast(noise_density, tf.float32)
    mean = tf.cast(mean_noise_span_length, tf.float32)
    num_noise = tf.cast(tf.round(tf.cast(lengths, tf.float32) * density), tf.int32)
    num_noise = tf.minimum(tf.maximum(num_noise, 1), lengths - 1)
    num_spans = tf.cast(tf.round(tf.cast(num_noise, tf.float32) / mean), tf.int32)
    num_spans = tf.maximum(num_spans, 1)
    num_spans = tf.minimum(num_spans, tf.minimum(num_noise, lengths - num_noise))
    if max_spans is not None:
        num_spans = tf.minimum(num_spans, max_spans)
    noisy = lengths >= 2
    return tf.where(noisy, num_noise, 0), tf.where(noisy, num_spans, 0)


def python_span_counts(lengths, noise_density, mean_noise_span_length, max_spans=None):
    """`span_counts` in NumPy (the same float32 arithmetic), for configuration.

    Args:
        lengths: int or int array.
        noise_density: Python float.
        mean_noise_span_length: Python float.
        max_spans: `None` or int.

    Returns:
        `(num_noise, num_spans)` as int64 arrays shaped like `lengths`.
    """
    lengths = np.asarray(lengths, np.int64)
    product = lengths.astype(np.float32) * np.float32(noise_density)
    num_noise = np.minimum(np.maximum(np.round(product).astype(np.int64), 1), lengths - 1)
    ratio = num_noise.astype(np.float32) / np.float32(mean_noise_span_length)
    num_spans = np.maximum(np.round(ratio).astype(np.int64), 1)
    num_spans = np.minimum(num_spans, np.minimum(num_noise, lengths - num_noise))
    if max_spans is not None:
        num_spans = np.minimum(num_spans, max_spans)
    noisy = lengths >= 2
    return np.where(noisy, num_noise, 0), np.where(noisy, num_spans, 0)


def span_count_bound(width, settings, max_spans=None):
    """The most spans any row of at most `width` tokens gets (a Python int).

    Args:
        width: int, the longest row.
        settings: `(noise_density, mean_noise_span_length)` pairs.
        max_spans: `None` or int cap.
    """
    lengths = np.arange(int(width) + 1)
    bound = 0
    for noise_density, mean_noise_span_length in settings:
        _, num_spans = python_span_counts(
            lengths, noise_density, mean_noise_span_length, max_spans
        )
        bound = max(bound, int(num_spans.max()))
    return bound


def lengths_for_inputs_length(
    inputs_length,
    noise_density,
    mean_noise_span_length,
    extra_inputs_tokens=1,
    max_spans=None,
):
    """The raw length whose corrupted inputs fill `inputs_length` (T5's helper).

    Inputs hold the non-noise tokens, one sentinel per span and
    `extra_inputs_tokens` more (the eos, a mode token); targets hold the
    noise tokens, one sentinel per span and the eos. The raw length is the
    largest whose inputs still fit; T5's `random_spans_helper` counts the
    same way (with one eos on each side), but without the clipping above,
    and at density 0.5 shortens the raw length by one more when the targets
    would come out longer than the inputs; here the lengths are exactly the
    ones the layer produces.

    Args:
        inputs_length: int >= 1, the wanted inputs length.
        noise_density: Python float.
        mean_noise_span_length: Python float.
        extra_inputs_tokens: tokens the inputs hold besides those counted
            above; the targets hold `1` (the eos) when this is >= 1, else 0.
        max_spans: `None` or int cap on the spans.

    Returns:
        A `SpanLengths(tokens_length, targets_length)`.

    Example:

    >>> lengths_for_inputs_length(512, 0.15, 3.0)
    SpanLengths(tokens_length=568, targets_length=114)
    """
    extra_targets_tokens = 1 if extra_inputs_tokens >= 1 else 0

    def corrupted_lengths(tokens_length):
        num_noise, num_spans = python_span_counts(
            tokens_length, noise_density, mean_noise_span_length, max_spans
        )
        inputs = tokens_length - int(num_noise) + int(num_spans) + extra_inputs_tokens
        targets = int(num_noise) + int(num_spans) + extra_targets_tokens
        return inputs, targets

    tokens_length = max(inputs_length - extra_inputs_tokens, 0)
    while corrupted_lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    return SpanLengths(tokens_length, corrupted_lengths(tokens_length)[1])


def random_cuts(totals, parts, seed, width, max_cuts):
    """Sorted cut points of one uniformly random composition per row.

    Args:
        totals: int32 `[R]`, items per row (at most `width`).
        parts: int32 `[R]`, parts per row, in `[1, totals]` (or 0).
        seed: shape-`[2]` seed.
        width: int32 scalar, the most items a row may hold.
        max_cuts: int (Python or scalar tensor) >= every `parts - 1`, and
            at most `width - 1`.

    Returns:
        int32 `[R, max_cuts]`: per row, the `parts - 1` cut points (distinct,
        in `[1, totals)`) ascending, then `totals` repeated. Part `i` holds
        the items from cut `i - 1` (0 for the first) up to cut `i`.
    """
    rows = tf.shape(totals)[0]
    num_gaps = tf.maximum(width - 1, 0)
    draws = random_bits.uniform_bits(tf.stack([rows, num_gaps]), seed, 32)
    keys = tf.bitcast(tf.bitwise.right_shift(draws, 1), tf.int32)
    gaps = tf.range(1, num_gaps + 1)[None, :]
    keys = tf.where(gaps < totals[:, None], keys, -1)
    chosen = tf.math.top_k(keys, k=max_cuts, sorted=True).indices + 1
    rank = tf.range(max_cuts)[None, :]
    cuts = tf.where(rank < parts[:, None] - 1, chosen, totals[:, None])
    return tf.sort(cuts, axis=1)


def span_numbers(lengths, num_noise, num_spans, seed, width, max_spans=None):
    """Each position's span number (odd: noise), int32 `[B, width]`.

    Args:
        lengths: int32 `[B]`, real tokens per row (at most `width`).
        num_noise: int32 `[B]`, noise tokens per row (`span_counts`).
        num_spans: int32 `[B]`, noise spans per row (0 only with no noise).
        seed: shape-`[2]` seed.
        width: int32 scalar, the rows' padded length.
        max_spans: Python int >= every `num_spans` (needed under XLA), or
            `None` for the batch's largest.

    Returns:
        int32 `[B, width]`: 0 in the first non-noise span, 1 in the first
        noise span, 2 in the second non-noise span, and so on; past a row's
        length, a number >= its last.
    """
    lengths = tf.cast(lengths, tf.int32)
    num_nonnoise = lengths - num_noise
    if max_spans is None:
        max_spans = tf.reduce_max(tf.concat([num_spans, [1]], 0))
    max_cuts = tf.maximum(max_spans - 1, 0) if tf.is_tensor(max_spans) else max(max_spans - 1, 0)
    batch = tf.shape(lengths)[0]
    cuts = random_cuts(
        tf.concat([num_nonnoise, num_noise], 0),
        tf.concat([num_spans, num_spans], 0),
        seed,
        width,
        max_cuts,
    )
    nonnoise_cuts, noise_cuts = cuts[:batch], cuts[batch:]
    zeros = tf.zeros([batch, 1], tf.int32)
    # nonnoise_before[:, r]: non-noise tokens in the first r non-noise spans;
    # noise_before[:, r]: noise tokens in the first r noise spans.
    nonnoise_before = tf.concat([zeros, nonnoise_cuts, num_nonnoise[:, None]], 1)
    noise_before = tf.concat([zeros, noise_cuts], 1)
    nonnoise_starts = nonnoise_before[:, :-1] + noise_before
    noise_starts = nonnoise_before[:, 1:] + noise_before
    starts = tf.reshape(tf.stack([nonnoise_starts, noise_starts], axis=2), [batch, -1])
    # Count the span starts at or before each position: one segment sum
    # marks them (those at or past `width` fall in a spare column), one
    # cumulative sum counts them.
    columns = width + 1
    segments = tf.range(batch)[:, None] * columns + tf.minimum(starts, width)
    marks = tf.math.unsorted_segment_sum(
        tf.ones_like(segments), segments, batch * columns
    )
    marks = tf.reshape(marks, [batch, columns])[:, :width]
    return tf.cumsum(marks, axis=1) - 1


def prefix_split_noise(lengths, seed):
    """Noise tokens of a prefix-LM split per row: `n - s`, `s` uniform in `[1, n)`.

    Rows of fewer than 2 tokens get 0. With one span, the prefix is the
    non-noise span and the rest the noise span.

    Args:
        lengths: int32 `[B]`.
        seed: shape-`[2]` seed.
    """
    lengths = tf.cast(lengths, tf.int32)
    draws = tf.cast(random_bits.uniform_bits(tf.shape(lengths), seed, 32), tf.float64)
    choices = tf.cast(tf.maximum(lengths - 1, 0), tf.float64)
    split = 1 + tf.cast(tf.floor(draws / 2.0**32 * choices), tf.int32)
    return tf.where(lengths >= 2, lengths - split, 0)
