"""Which positions a masking strategy selects: pure TF over whole batches.

Each strategy is one function from an `eligible` bool `[B, T]` (or any
shape, for plain Bernoulli) and a seed to a `selected` bool of the same
shape; the layer then hands `selected` to a corruption
(`keras_dynmask.kernels.corruption`) and a formatting
(`keras_dynmask.kernels.formatting`). A new strategy is one new function
here. No Python loop runs over tokens.
"""

from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask.kernels import random_bits
from keras_dynmask.kernels import row_lists


def contiguous_runs(sorted_ids):
    """Groups sorted ids into `(first, last)` runs of consecutive values."""
    runs = []
    for token_id in sorted_ids:
        if runs and token_id == runs[-1][1] + 1:
            runs[-1][1] = token_id
        else:
            runs.append([token_id, token_id])
    return [tuple(run) for run in runs]


def eligible_tokens(token_ids, excluded_ids, valid=None, vocabulary_size=None):
    """True where a token may be selected: not in `excluded_ids`, and valid.

    Consecutive excluded ids (e.g. 101..103) cost one unsigned comparison
    per run, which is much cheaper than a table lookup per token.

    Args:
        token_ids: int32/int64 ids of any shape.
        excluded_ids: sorted Python ints never selected.
        valid: optional bool mask of the same shape (e.g. inside ragged rows).
        vocabulary_size: optional int; ids outside `[0, vocabulary_size)`
            are then not eligible (where no assertion guards the range).
    """
    unsigned = tf.uint32 if token_ids.dtype == tf.int32 else tf.uint64
    eligible = valid
    if vocabulary_size is not None:
        in_vocabulary = tf.bitcast(token_ids, unsigned) < tf.constant(vocabulary_size, unsigned)
        eligible = random_bits.logical_and(eligible, in_vocabulary)
    for first, last in contiguous_runs(excluded_ids):
        if first == last:
            allowed = tf.not_equal(token_ids, tf.constant(first, token_ids.dtype))
        else:
            offset = tf.bitcast(token_ids - tf.constant(first, token_ids.dtype), unsigned)
            allowed = tf.greater(offset, tf.constant(last - first, unsigned))
        eligible = random_bits.logical_and(eligible, allowed)
    if eligible is None:
        eligible = tf.ones_like(token_ids, tf.bool)
    return eligible


def bernoulli_tokens(eligible, mask_rate, seed, shares=(1.0,)):
    """Selects each eligible token independently with probability `mask_rate`.

    The same draw also splits the selected tokens into `shares` (e.g. the
    corruption's mask / random / keep shares), so a corruption can reuse it
    and no second draw per token is needed.

    Args:
        eligible: bool tensor of any shape.
        mask_rate: Python float in `(0, 1]`.
        seed: shape-`[2]` integer seed.
        shares: fractions of the selected tokens, summing to 1.

    Returns:
        `(selected, outcomes)`: bool like `eligible`, and the
        `random_bits.Outcomes` whose outcome `i` is share `i` of the selected.
    """
    probabilities = [mask_rate * share for share in shares]
    outcomes = random_bits.draw_outcomes(tf.shape(eligible), seed, probabilities)
    chosen = random_bits.below(outcomes.values, outcomes.thresholds[-1], outcomes.bits)
    return random_bits.logical_and(eligible, chosen), outcomes


def exact_counts(eligible_count, mask_rate, max_predictions=None):
    """`round(mask_rate * eligible)` per row, at least 1 when any is eligible.

    The product is taken in float64, so the count is `tf.round` of the real
    product (190 eligible at 0.15 is 28.5, which rounds to 28).

    Args:
        eligible_count: int32 `[B]`.
        mask_rate: Python float or float scalar tensor.
        max_predictions: `None` or an int cap.
    """
    # A Python float goes straight to float64 (`tf.cast` would pass it
    # through float32 first: 0.15 would become 0.15000000596).
    if tf.is_tensor(mask_rate):
        rate = tf.cast(mask_rate, tf.float64)
    else:
        rate = tf.constant(mask_rate, tf.float64)
    counts = tf.cast(tf.round(rate * tf.cast(eligible_count, tf.float64)), tf.int32)
    counts = tf.maximum(counts, tf.minimum(eligible_count, 1))
    counts = tf.minimum(counts, eligible_count)
    if max_predictions is not None:
        counts = tf.minimum(counts, max_predictions)
    return counts


def _draw_keys(draws, positions):
    """Unique non-negative int64 keys: the 32-bit draw, then the position
    (< 2**31); negated, so that `top_k`'s largest are the smallest draws."""
    shifted = tf.bitwise.left_shift(tf.cast(draws, tf.int64), 31)
    return -tf.bitwise.bitwise_or(shifted, tf.cast(positions, tf.int64))


def _last_kept_keys(candidates, draws, counts, most):
    """Per row, the key of the `counts[b]`-th smallest candidate draw.

    Outside XLA only the candidates are ranked: gathered into a ragged batch
    padded to the longest row. Under XLA (`most` given) every position is
    ranked at a fixed width: non-candidates get the lowest key and `top_k`
    keeps `most` (a bound on `counts` that follows from the shapes).
    """
    if most is not None and random_bits.in_xla_context():
        positions = tf.range(tf.shape(candidates, tf.int64)[1])[None, :]
        keys = tf.where(candidates, _draw_keys(draws, positions), tf.int64.min)
        keys = tf.pad(keys, [[0, 0], [0, 1]], constant_values=tf.int64.min)
        width = tf.shape(keys)[1]
        return tf.math.top_k(keys, k=tf.minimum(tf.maximum(most, 1), width)).values
    coordinates = tf.where(candidates)
    keys = _draw_keys(tf.gather_nd(draws, coordinates), coordinates[:, 1])
    padded = row_lists.pad_rows(
        keys, coordinates[:, 0], tf.shape(candidates)[0], default=tf.int64.min)
    padded = tf.pad(padded, [[0, 0], [0, 1]], constant_values=tf.int64.min)
    return tf.math.top_k(padded, k=tf.maximum(tf.reduce_max(counts), 1)).values


def smallest_draws(candidates, draws, counts, most=None):
    """Marks, per row, the `counts[b]` candidates with the smallest draws.

    A `top_k` over (draw, position) keys finds each row's last kept key; one
    elementwise comparison against it then marks the kept tokens. Equal
    draws are ordered by position. The XLA form ranks at a fixed width and
    keeps the same tokens.

    Args:
        candidates: bool `[B, T]`.
        draws: uint32 `[B, T]` random values.
        counts: int32 `[B]`, each at most the row's number of candidates.
        most: `None`, or an int32 bound on every count that follows from
            the shapes alone (a Python int or a shape-derived scalar): XLA
            needs it.
    """
    top = _last_kept_keys(candidates, draws, counts, most)
    last_kept = -tf.gather(top, tf.maximum(counts - 1, 0), batch_dims=1)
    # Rows that keep nothing compare against draw 0 at position -1.
    keeps_any = counts > 0
    last_draw = tf.where(
        keeps_any, tf.cast(tf.bitwise.right_shift(last_kept, 31), tf.uint32), 0
    )[:, None]
    last_position = tf.where(
        keeps_any, tf.cast(tf.bitwise.bitwise_and(last_kept, 2**31 - 1), tf.int32), -1
    )[:, None]
    positions = tf.range(tf.shape(candidates)[1])[None, :]
    kept = tf.logical_or(
        draws < last_draw,
        tf.logical_and(tf.equal(draws, last_draw), positions <= last_position),
    )
    return tf.logical_and(candidates, kept)


def exact_count_bound(length, mask_rate, max_predictions=None):
    """int32 bound on `exact_counts` for rows of `length` tokens.

    `floor(mask_rate * length) + 1` is at least `round(mask_rate * n)` and
    at least 1 for every `n <= length`; `length` may be a shape-derived
    scalar, which keeps the bound a compile-time constant under XLA.
    """
    if tf.is_tensor(mask_rate):
        return tf.cast(length, tf.int32)
    scaled = tf.floor(tf.constant(mask_rate, tf.float64) * tf.cast(length, tf.float64))
    bound = tf.minimum(tf.cast(scaled, tf.int32) + 1, tf.cast(length, tf.int32))
    if max_predictions is not None:
        bound = tf.minimum(bound, max_predictions)
    return bound


def cap_selections(selected, max_predictions, seed):
    """Keeps a uniformly random `max_predictions` of each row's selections.

    The kept ones are those with the smallest of one fresh 32-bit draw each
    (`smallest_draws`, as exact selection ranks). Ranking runs only when
    some row holds more than `max_predictions` selections, and outside XLA
    only over those rows' selections, each drawing alone.
    """
    counts = tf.reduce_sum(tf.cast(selected, tf.int32), axis=1)
    over = counts > max_predictions
    if not random_bits.in_xla_context():
        return tf.cond(
            tf.reduce_any(over),
            lambda: _cap_rows(selected, over, max_predictions, seed),
            lambda: selected,
        )
    return tf.cond(
        tf.reduce_any(over),
        lambda: smallest_draws(
            selected,
            random_bits.uniform_bits(tf.shape(selected), seed, 32),
            tf.minimum(counts, max_predictions),
            most=max_predictions,
        ),
        lambda: selected,
    )


def _cap_rows(selected, over, max_predictions, seed):
    """`cap_selections` ranking only the selections of the rows `over`.

    Those rows (a few in a batch, at usual rates) are ranked alone: each
    selection's row becomes its rank among the rows over the cap.
    """
    candidates = tf.logical_and(selected, over[:, None])
    coordinates = tf.where(candidates)
    draws = random_bits.uniform_bits(tf.shape(coordinates)[:1], seed, 32)
    keys = _draw_keys(draws, coordinates[:, 1])
    over_rows = tf.where(over)[:, 0]
    rank_of_row = tf.cumsum(tf.cast(over, tf.int64), exclusive=True)
    ranked = tf.stack([tf.gather(rank_of_row, coordinates[:, 0]), coordinates[:, 1]], axis=1)
    untouched = tf.logical_and(selected, tf.logical_not(over)[:, None])
    counts = tf.fill(tf.shape(over_rows), max_predictions)
    kept = _smallest_listed(ranked, keys, counts, tf.size(over_rows, tf.int64))
    indices = tf.stack([tf.gather(over_rows, kept[:, 0]), kept[:, 1]], axis=1)
    return tf.tensor_scatter_nd_update(untouched, indices, tf.ones_like(indices[:, 0], tf.bool))


# The band of draws ranked in exact selection: the expected quantile plus or
# minus this many standard deviations (+ a constant for tiny counts). A row
# whose k-th smallest draw falls outside its band makes the batch fall back
# to ranking every eligible token.
CANDIDATE_MARGIN_SIGMAS = 4.0
CANDIDATE_MARGIN_TOKENS = 4.0


def _smallest_listed(coordinates, keys, counts, nrows):
    """The `counts[r]` listed positions of each row `r` with the largest
    `keys` (`_draw_keys`: the smallest draws).

    Args:
        coordinates: int64 `[N, 2]` `(row, position)`, rows non-decreasing
            and in `[0, nrows)`; row `r` listed at least `counts[r]` times.
        keys: int64 `[N]`, unique, from `_draw_keys`.
        counts: int32 `[nrows]`.
        nrows: int64 scalar.

    Returns:
        int64 `[sum(counts), 2]` `(row, position)` of the kept entries.
    """
    padded = row_lists.pad_rows(keys, coordinates[:, 0], nrows, default=tf.int64.min)
    padded = tf.pad(padded, [[0, 0], [0, 1]], constant_values=tf.int64.min)
    top = tf.math.top_k(padded, k=tf.maximum(tf.reduce_max(counts), 1)).values
    kept = tf.where(tf.range(tf.shape(top)[1])[None, :] < counts[:, None])
    positions = tf.bitwise.bitwise_and(-tf.gather_nd(top, kept), 2**31 - 1)
    return tf.stack([kept[:, 0], positions], axis=1)


def exact_tokens(eligible, counts, seed, eligible_count=None, most=None, shares=None):
    """Selects a uniformly random `counts[b]` of each row's eligible tokens.

    The selected tokens are those with the smallest of one uniform 32-bit
    draw each. A row's k-th smallest draw lies, with high probability, in a
    narrow band around the `k / n` quantile: the k-th draw is found among
    the tokens inside it alone (about a seventh of them, in compacted form)
    by a selection (`NthElement`), not a sort, and one comparison against
    it then marks every selected token. If some row's k-th draw falls
    outside its band (or is tied), the whole batch is ranked instead: the
    same result, more time.

    Args:
        eligible: bool `[B, T]`.
        counts: int32 `[B]`, each at most the row's eligible count.
        seed: shape-`[2]` integer seed.
        eligible_count: int32 `[B]` when the caller has it (saves a pass).
        most: `None` or a shape-derived bound on `counts`
            (`exact_count_bound`); under XLA, where it is needed, every
            eligible token is ranked at that fixed width (no band).
        shares: optional fractions of the selected tokens (e.g. the
            corruption's mask / random / keep shares): the draws' low 16
            bits then split the selected tokens among them, so a corruption
            needs no draw of its own. Selection turns on the order of the
            whole 32-bit draws, below a k-th draw of about `k / n * 2**32`:
            the low bits of a selected draw are uniform to within
            `2**16 / (k / n * 2**32)`, far below
            `random_bits.MAX_RELATIVE_QUANTIZATION_ERROR`.

    Returns:
        bool `[B, T]`; with `shares`, `(selected, outcomes)`, `outcomes` a
        `random_bits.Outcomes` over the low 16 bits, or `None` where 16-bit
        thresholds are not precise enough for `shares`.
    """
    draws = random_bits.uniform_bits(tf.shape(eligible), seed, 32)
    selected = _exact_from_draws(eligible, counts, draws, eligible_count, most)
    if shares is None:
        return selected
    if not random_bits.precise_enough(list(shares), 16):
        return selected, None
    outcomes = random_bits.Outcomes(
        tf.cast(draws, tf.uint16), 16, random_bits.thresholds_for(list(shares), 16)
    )
    return selected, outcomes


def _exact_from_draws(eligible, counts, draws, eligible_count, most):
    """`exact_tokens`' selection from its 32-bit `draws`."""
    if random_bits.in_xla_context():
        if most is None:
            most = tf.shape(eligible)[1]
        return smallest_draws(eligible, draws, counts, most)
    if eligible_count is None:
        eligible_count = tf.reduce_sum(tf.cast(eligible, tf.int32), axis=1)
    eligible_count = tf.maximum(tf.cast(eligible_count, tf.float64), 1.0)
    needed = tf.cast(counts, tf.float64)
    spread = tf.sqrt(needed * tf.maximum(1.0 - needed / eligible_count, 0.0))
    margin = CANDIDATE_MARGIN_SIGMAS * spread + CANDIDATE_MARGIN_TOKENS

    def draw_quantile(fraction):
        # Clipped into uint32's range (below 2**32 - 1, so the band's width
        # `high - low` never wraps).
        scaled = tf.clip_by_value(fraction * 2.0**32, 0.0, 2.0**32 - 2)
        return tf.cast(scaled, tf.uint32)[:, None]

    band_low = draw_quantile((needed - margin) / eligible_count)
    band_high = tf.maximum(draw_quantile((needed + margin) / eligible_count), band_low)
    below_band = tf.logical_and(eligible, draws < band_low)
    needed_from_band = counts - tf.reduce_sum(tf.cast(below_band, tf.int32), axis=1)
    # Unsigned: draws below the band wrap round to above its width.
    in_band = tf.logical_and(eligible, (draws - band_low) <= (band_high - band_low))
    threshold, band_holds_kth = _band_threshold(in_band, draws, needed_from_band, band_low)
    return tf.cond(
        band_holds_kth,
        lambda: tf.logical_and(eligible, draws < threshold),
        lambda: smallest_draws(eligible, draws, counts),
    )


def _band_threshold(in_band, draws, needed, band_low):
    """Per row, the draw below which exactly `counts` tokens lie.

    `needed[b]` more tokens must come from the band; the band's draws are
    gathered into a ragged batch and `NthElement` (a selection, not a sort)
    finds each row's `needed[b]`-th smallest: every row is given
    `K - needed[b]` leading dummy draws (-1), so the same `n = K - 1` serves
    all rows. The threshold is that draw + 1 (`band_low` where no token is
    needed from the band).

    Returns:
        `(threshold uint32 [B, 1], holds)`: `holds` is False when some row
        needs more tokens than its band has, fewer than none, or its
        `needed`-th band draw is tied with another (then the threshold
        would not count exactly; the caller ranks every token instead).
    """
    flat_positions, row_splits = row_lists.listed_rows(in_band)
    band_draws = tf.cast(tf.gather(tf.reshape(draws, [-1]), flat_positions), tf.int64)
    above_all = tf.constant(2**32, tf.int64)
    # Rows of band draws, padded with `above_all` to the fullest row.
    band_size = tf.cast(row_splits[1:] - row_splits[:-1], tf.int32)
    widest = tf.maximum(tf.reduce_max(band_size), 0)
    band = row_lists.pad_split_rows(band_draws, row_splits, widest, default=above_all)
    most = tf.maximum(tf.reduce_max(needed), 1)
    leading = tf.range(most)[None, :] < (most - needed)[:, None]
    dummies = tf.where(leading, tf.constant(-1, tf.int64), above_all)
    kth = tf.raw_ops.NthElement(input=tf.concat([dummies, band], axis=1), n=most - 1)
    at_or_below = tf.reduce_sum(tf.cast(band <= kth[:, None], tf.int32), axis=1)
    holds = tf.reduce_all(
        (needed >= 0) & (needed <= band_size) & tf.equal(at_or_below, tf.maximum(needed, 0))
    )
    threshold = tf.where(
        needed[:, None] > 0,
        tf.cast(tf.clip_by_value(kth + 1, 0, 2**32 - 1), tf.uint32)[:, None],
        band_low,
    )
    return threshold, holds
