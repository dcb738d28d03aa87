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
among the `m - 1` gaps, a uniformly random subset: the first distinct gaps
of a few uniform draws pick it (one call for the noise, one for the
non-noise lengths; `selection.exact_tokens` where the draws fall short);
under XLA one `top_k` over uniform keys at a fixed width does.

The result is a `SpanLayout`: per row, the running totals of the non-noise
and noise span lengths (`[B, K + 1]`, `K` the most spans), small enough
that `keras_dynmask.kernels.sentinels` builds inputs and targets from it
with one gather per output slot, never a pass over every position.
"""

import collections

import numpy as np
from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask.kernels import random_bits
from keras_dynmask.kernels import row_lists
from keras_dynmask.kernels import seeds
from keras_dynmask.kernels import selection

SpanLengths = collections.namedtuple("SpanLengths", ["tokens_length", "targets_length"])
SpanLengths.__doc__ = """Raw and target lengths that fill a wanted inputs length.

Attributes:
    tokens_length: the most real tokens a row may hold so that its inputs
        fit the wanted length.
    targets_length: the targets' length for a row of `tokens_length` tokens
        (rows of fewer tokens never have longer targets), at least 1.
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


def count_bounds(width, settings, max_spans=None):
    """`(max_nonnoise, max_noise, max_spans)` over rows of at most `width` tokens.

    Python ints for a Python `width` (what XLA needs), int32 scalars for a
    tensor: the same values either way, so a batch's draws depend on its
    padded width, not on whether that width is known when tracing.

    Args:
        width: int or int32 scalar tensor, the longest row.
        settings: `(noise_density, mean_noise_span_length)` pairs the rows
            may use.
        max_spans: `None` or int cap.
    """
    if tf.is_tensor(width):
        lengths = tf.range(width + 1)
        bounds = [tf.constant(1)] * 3
        for noise_density, mean_noise_span_length in settings:
            num_noise, num_spans = span_counts(
                lengths, noise_density, mean_noise_span_length, max_spans
            )
            found = (lengths - num_noise, num_noise, num_spans)
            bounds = [tf.maximum(b, tf.reduce_max(f)) for b, f in zip(bounds, found)]
        return tuple(bounds)
    lengths = np.arange(int(width) + 1)
    bounds = [1, 1, 1]
    for noise_density, mean_noise_span_length in settings:
        num_noise, num_spans = python_span_counts(
            lengths, noise_density, mean_noise_span_length, max_spans
        )
        found = (lengths - num_noise, num_noise, num_spans)
        bounds = [max(b, int(f.max())) for b, f in zip(bounds, found)]
    return tuple(bounds)


def corrupted_lengths(
    tokens_length,
    noise_density,
    mean_noise_span_length,
    extra_inputs_tokens=1,
    extra_targets_tokens=None,
    max_spans=None,
):
    """`(inputs, targets)` lengths of a row of `tokens_length` real tokens.

    Inputs hold the non-noise tokens, one sentinel per span and
    `extra_inputs_tokens` more (the eos, a mode token); targets the noise
    tokens, one sentinel per span and `extra_targets_tokens` more (the eos;
    `None`: 1 when `extra_inputs_tokens` >= 1, else 0). Both grow with
    `tokens_length`, never shrink.
    """
    if extra_targets_tokens is None:
        extra_targets_tokens = 1 if extra_inputs_tokens >= 1 else 0
    num_noise, num_spans = python_span_counts(
        tokens_length, noise_density, mean_noise_span_length, max_spans
    )
    inputs = tokens_length - int(num_noise) + int(num_spans) + extra_inputs_tokens
    return inputs, int(num_noise) + int(num_spans) + extra_targets_tokens


def lengths_for_inputs_length(
    inputs_length,
    noise_density,
    mean_noise_span_length,
    extra_inputs_tokens=1,
    max_spans=None,
    extra_targets_tokens=None,
):
    """The raw length whose corrupted inputs fill `inputs_length` (T5's helper).

    Inputs hold the non-noise tokens, one sentinel per span and
    `extra_inputs_tokens` more (the eos, a mode token); targets hold the
    noise tokens, one sentinel per span and `extra_targets_tokens` more (the
    eos). The raw length is the
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
            above.
        max_spans: `None` or int cap on the spans.
        extra_targets_tokens: tokens the targets hold besides those counted
            above; `None`: 1 (the eos) when `extra_inputs_tokens` >= 1, else 0.

    Returns:
        A `SpanLengths(tokens_length, targets_length)`.

    Example:

    >>> lengths_for_inputs_length(512, 0.15, 3.0)
    SpanLengths(tokens_length=568, targets_length=114)
    """

    def lengths(tokens_length):
        return corrupted_lengths(
            tokens_length, noise_density, mean_noise_span_length,
            extra_inputs_tokens, extra_targets_tokens, max_spans,
        )

    tokens_length = max(inputs_length - extra_inputs_tokens, 0)
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    # At least 1, the shortest `targets_length` a layer takes (a row too
    # short for noise and no eos has empty targets).
    return SpanLengths(tokens_length, max(lengths(tokens_length)[1], 1))


# Draws per cut point (plus `SPARE_DRAWS`) in `_cuts_from_first_distinct`:
# with at most half the gaps to mark, that many uniform draws hold enough
# distinct gaps except with small probability (then the exact fallback):
# no fallback in 200 batches of 256 x 512 at T5's and UL2's settings, nor
# at mean span length 2 (cuts at half the gaps, the hardest case).
DRAWS_PER_CUT = 2
SPARE_DRAWS = 8


def random_cuts(totals, parts, seed, num_gaps, max_cuts):
    """Sorted cut points of one uniformly random composition per row.

    Args:
        totals: int32 `[R]`, items per row (at most `num_gaps + 1`, or any
            number in a row of one part: it cuts nothing).
        parts: int32 `[R]`, parts per row, in `[1, totals]` (or 0).
        seed: shape-`[2]` seed.
        num_gaps: int (Python or scalar tensor) >= every `totals - 1`.
        max_cuts: int (Python or scalar tensor) >= every `parts - 1`, at
            most `num_gaps`.

    Returns:
        int32 `[R, max_cuts]`: per row, the `parts - 1` cut points (distinct,
        in `[1, totals)`) ascending, then `totals` repeated. Part `i` holds
        the items from cut `i - 1` (0 for the first) up to cut `i`.
    """
    rows = tf.shape(totals)[0]
    gaps = tf.range(1, num_gaps + 1)[None, :]
    if not random_bits.in_xla_context():
        first_seed, fallback_seed = seeds.split_seed(seed, 2)
        first_distinct, enough = _cuts_from_first_distinct(
            totals, parts, first_seed, num_gaps, max_cuts
        )

        def exact_subsets():
            chosen = selection.exact_tokens(
                gaps < totals[:, None], tf.maximum(parts - 1, 0), fallback_seed
            )
            cuts = _listed_gaps(chosen, max_cuts)
            return tf.where(cuts < 0, totals[:, None], cuts)

        return tf.cond(enough, lambda: first_distinct, exact_subsets)
    draws = random_bits.uniform_bits(tf.stack([rows, num_gaps]), seed, 32)
    keys = tf.bitcast(tf.bitwise.right_shift(draws, 1), tf.int32)
    keys = tf.where(gaps < totals[:, None], keys, -1)
    # In key order, so each row's first `parts - 1` are its largest keys.
    chosen = tf.math.top_k(keys, k=max_cuts, sorted=True).indices + 1
    rank = tf.range(max_cuts)[None, :]
    cuts = tf.where(rank < parts[:, None] - 1, chosen, totals[:, None])
    return tf.sort(cuts, axis=1)


def _running_count(flags):
    """int32 `[R, M]`: per row, the True flags up to each column.

    A product with a triangular matrix of ones where `M` is small (exact in
    float32; several times faster than `Cumsum` on the CPU), else `Cumsum`.
    """
    width = tf.shape(flags)[1]

    def by_product():
        upper = tf.cast(tf.range(width)[:, None] <= tf.range(width)[None, :], tf.float32)
        return tf.cast(tf.matmul(tf.cast(flags, tf.float32), upper), tf.int32)

    return tf.cond(
        width <= 256, by_product, lambda: tf.cumsum(tf.cast(flags, tf.int32), axis=1)
    )


def _listed_gaps(chosen, max_cuts):
    """int32 `[R, max_cuts]`: per row, the gaps (from 1) of the nonzero
    columns of `chosen` ascending, then -1."""
    coordinates = tf.where(chosen)
    return row_lists.pad_rows(
        tf.cast(coordinates[:, 1], tf.int32) + 1,
        coordinates[:, 0],
        tf.shape(chosen)[0],
        max_cuts,
        -1,
    )


def _cuts_from_first_distinct(totals, parts, seed, num_gaps, max_cuts):
    """`random_cuts` from a few uniform draws a row, not one per gap.

    A row picks `c = parts - 1` of its `g = totals - 1` gaps, or, when
    `c > g / 2`, the `g - c` gaps it leaves out. It draws gaps uniformly
    with replacement and keeps the first `c` (or `g - c`) distinct ones in
    draw order: whatever the labels, every subset of that size is equally
    likely to come first. `DRAWS_PER_CUT * most + SPARE_DRAWS` draws a row
    (`most` the batch's largest count to pick) hold that many distinct
    gaps except with small probability; `enough` says whether every
    row's did. A gap is drawn as `floor(u * g / 2**32)` of a 32-bit `u`,
    uniform to within `g / 2**32`.

    The kept gaps are listed from a table of the rows' gaps; where the
    left-out gaps were drawn, a row's `i`-th cut is `i` plus the number of
    left-out gaps before it: with the left-out `l_1 < l_2 < ...`, those
    `l_j` with `l_j - j < i`, which a binary search counts.

    Returns:
        `(cuts, enough)`: int32 `[R, max_cuts]` as `random_cuts` gives
        them (meaningful only where `enough`), and a bool scalar.
    """
    rows = tf.shape(totals)[0]
    gap_count = tf.maximum(totals - 1, 0)
    wanted = tf.maximum(parts - 1, 0)
    left_out = 2 * wanted > gap_count
    to_mark = tf.where(left_out, gap_count - wanted, wanted)
    num_draws = DRAWS_PER_CUT * tf.reduce_max(tf.concat([to_mark, [0]], 0)) + SPARE_DRAWS
    bits = tf.cast(random_bits.uniform_bits(tf.stack([rows, num_draws]), seed, 32), tf.int64)
    drawn = tf.cast(tf.bitwise.right_shift(bits * tf.cast(gap_count, tf.int64)[:, None], 32), tf.int32)
    # Column `drawn` of a row of `num_gaps + 1` (rows of one part may have
    # more gaps than that: they mark none, so clipping moves nothing kept).
    columns = num_gaps + 1
    segments = tf.range(rows)[:, None] * columns + tf.minimum(drawn, num_gaps)
    order = tf.broadcast_to(tf.range(num_draws)[None, :], tf.shape(segments))
    first_draw = tf.math.unsorted_segment_min(order, segments, rows * columns)
    is_first = tf.equal(tf.gather(first_draw, segments), order)
    distinct_so_far = _running_count(is_first)
    kept = tf.logical_and(is_first, distinct_so_far <= to_mark[:, None])
    enough = tf.reduce_all(distinct_so_far[:, -1] >= to_mark)
    # Each kept gap once in a table of the rows' gaps (kept gaps lie in their
    # row, never in the clipped last column).
    marked = tf.math.unsorted_segment_sum(tf.cast(kept, tf.int32), segments, rows * columns)
    marked = _listed_gaps(tf.reshape(marked, tf.stack([rows, columns])), max_cuts)
    rank = tf.range(1, max_cuts + 1)[None, :]

    def complements():
        # Past a row's left-out gaps, a value no searched rank reaches.
        shifted = tf.where(rank <= to_mark[:, None], marked - rank, tf.int32.max)
        before = tf.searchsorted(shifted, tf.broadcast_to(rank, tf.shape(shifted)), side="left")
        return tf.where(left_out[:, None], rank + before, marked)

    cuts = tf.cond(tf.reduce_any(left_out), complements, lambda: marked)
    return tf.where(rank <= wanted[:, None], cuts, totals[:, None]), enough


SpanLayout = collections.namedtuple("SpanLayout", ["nonnoise_before", "noise_before"])
SpanLayout.__doc__ = """Where each row's spans lie, int32 `[B, K + 1]` each.

Attributes:
    nonnoise_before: column `r`, the non-noise tokens in the row's first
        `r` non-noise spans (0 first; the row's total from its last span on).
    noise_before: column `r`, the noise tokens in its first `r` noise spans.

Non-noise span `r` (from 1) starts at position
`nonnoise_before[r - 1] + noise_before[r - 1]`, noise span `r` at
`nonnoise_before[r] + noise_before[r - 1]`.
"""


def span_layout(lengths, num_noise, num_spans, seed, bounds=None):
    """Draws each row's noise and non-noise span lengths: a `SpanLayout`.

    Args:
        lengths: int32 `[B]`, real tokens per row.
        num_noise: int32 `[B]`, noise tokens per row (`span_counts`).
        num_spans: int32 `[B]`, noise spans per row (0 only with no noise).
        seed: shape-`[2]` seed.
        bounds: `None` (the batch's largest, found at run time) or Python
            ints `(max_nonnoise, max_noise, max_spans)` no row exceeds
            (needed under XLA).

    Returns:
        A `SpanLayout` with `K = max_spans` (at least 1).
    """
    lengths = tf.cast(lengths, tf.int32)
    num_nonnoise = lengths - num_noise
    if bounds is None:
        def largest(values):
            return tf.reduce_max(tf.concat([values, [1]], 0))

        bounds = (largest(num_nonnoise), largest(num_noise), largest(num_spans))
    max_nonnoise, max_noise, max_spans = bounds
    max_cuts = tf.maximum(max_spans - 1, 0) if tf.is_tensor(max_spans) else max(max_spans - 1, 0)

    def gaps(max_items):
        if tf.is_tensor(max_items):
            return tf.maximum(max_items - 1, max_cuts)
        return max(max_items - 1, max_cuts)

    nonnoise_seed, noise_seed = seeds.split_seed(seed, 2)
    nonnoise_cuts = random_cuts(
        num_nonnoise, num_spans, nonnoise_seed, gaps(max_nonnoise), max_cuts
    )
    noise_cuts = random_cuts(num_noise, num_spans, noise_seed, gaps(max_noise), max_cuts)
    zeros = tf.zeros_like(lengths)[:, None]
    return SpanLayout(
        tf.concat([zeros, nonnoise_cuts, num_nonnoise[:, None]], 1),
        tf.concat([zeros, noise_cuts, num_noise[:, None]], 1),
    )


def count_marks(starts, width):
    """Per position, how many of each row's `starts` lie at or before it.

    Args:
        starts: int32 `[B, S]`, any order; those at or past `width` count
            nowhere.
        width: int32 scalar.

    Returns:
        `(counts, marks)`, int32 `[B, width + 1]`: `marks` the number of
        starts at each position (past `width` in the last column), `counts`
        its cumulative sum.
    """
    batch = tf.shape(starts)[0]
    columns = width + 1
    segments = tf.range(batch)[:, None] * columns + tf.clip_by_value(starts, 0, width)
    marks = tf.math.unsorted_segment_sum(tf.ones_like(segments), segments, batch * columns)
    marks = tf.reshape(marks, [batch, columns])
    return tf.cumsum(marks, axis=1), marks


def noise_mask(layout, lengths, width):
    """bool `[B, width]`: True at each row's noise positions.

    Args:
        layout: a `SpanLayout`.
        lengths: int32 `[B]`, real tokens per row.
        width: int32 scalar, the rows' padded length.
    """
    nonnoise_before, noise_before = layout
    nonnoise_starts = nonnoise_before[:, :-1] + noise_before[:, :-1]
    noise_starts = nonnoise_before[:, 1:] + noise_before[:, :-1]
    # Noise span r starts after non-noise span r: count both kinds of start.
    starts = tf.concat([nonnoise_starts, noise_starts], axis=1)
    counts, _ = count_marks(starts, width)
    positions = tf.range(width)[None, :]
    even = tf.equal(tf.bitwise.bitwise_and(counts[:, :width], 1), 0)
    return tf.logical_and(even, positions < lengths[:, None])


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
