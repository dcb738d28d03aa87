"""Vectorised kernels for masked-LM corruption.

Everything here is a handful of TF ops over a whole batch; no Python loop
runs over tokens. The layer (`keras_dynmask.DynamicMLMMasking`) turns its
configuration into an `MLMMaskingPlan` once, in Python, and calls
`mask_dense` (or, for ragged rows, `mask_ragged`) with a shape-`[2]` seed.

Random bits are the cost that matters (one 32-bit Philox draw per token
alone runs at a fraction of a no-op `tf.data` map), so each token gets a
single uniform integer `r` of 16 bits when that is precise enough, and that
one number decides everything: the token is selected when `r < S`, replaced
by the mask token when `r < M`, by a random id when `M <= r < R`, and kept
otherwise (`M <= R <= S`). Random replacement ids are drawn only for the few
positions that need one. "exact" selection and the `max_predictions` cap
rank tokens by one further 32-bit random key each.
"""

import dataclasses

import numpy as np
import tensorflow as tf

# Largest relative error allowed between a configured probability and the
# one a 16-bit threshold realises; beyond it the kernel spends 32 bits.
MAX_RELATIVE_QUANTIZATION_ERROR = 1e-3


def _thresholds(probabilities, bits):
    """Cumulative integer thresholds in `[0, 2**bits]` for `probabilities`."""
    scale = 2**bits
    cumulative = np.cumsum(probabilities)
    return [int(round(float(c) * scale)) for c in cumulative]


def _quantization_is_precise(probabilities, bits):
    thresholds = _thresholds(probabilities, bits)
    counts = np.diff([0] + thresholds)
    for probability, count in zip(probabilities, counts):
        if probability <= 0:
            continue
        ideal = probability * 2**bits
        if abs(count - ideal) > MAX_RELATIVE_QUANTIZATION_ERROR * ideal:
            return False
    return True


def choose_thresholds(probabilities):
    """Picks 16 or 32 random bits per token and the thresholds for them.

    Args:
        probabilities: probabilities of consecutive outcomes of one uniform
            draw (they sum to at most 1).

    Returns:
        `(bits, thresholds)` with `thresholds[i]` the cumulative count of
        `bits`-bit values that fall in outcomes `0..i`.
    """
    for bits in (16, 32):
        if _quantization_is_precise(probabilities, bits) or bits == 32:
            return bits, _thresholds(probabilities, bits)


def contiguous_runs(sorted_ids):
    """Groups sorted ids into `(first, last)` runs of consecutive values."""
    runs = []
    for token_id in sorted_ids:
        if runs and token_id == runs[-1][1] + 1:
            runs[-1][1] = token_id
        else:
            runs.append([token_id, token_id])
    return [tuple(run) for run in runs]


@dataclasses.dataclass(frozen=True)
class MLMMaskingPlan:
    """Everything the kernels need, computed once from a layer's config.

    Attributes:
        vocabulary_size: ids lie in `[0, vocabulary_size)`.
        mask_token_id: id written at positions chosen for the mask token.
        mask_rate: chance an eligible token is selected.
        mask_token_rate: share of selected tokens replaced by the mask token.
        random_token_rate: share of selected tokens replaced by a random id.
        excluded_ids: sorted ids never selected (special, padding, mask).
        replacement_ids: sorted ids a random replacement is drawn from.
        selection: "bernoulli" or "exact".
        max_predictions: `None` or the cap on selections per sequence.
    """

    vocabulary_size: int
    mask_token_id: int
    mask_rate: float
    mask_token_rate: float
    random_token_rate: float
    excluded_ids: tuple
    replacement_ids: tuple
    selection: str
    max_predictions: object

    @classmethod
    def build(
        cls,
        vocabulary_size,
        mask_token_id,
        mask_rate,
        mask_token_rate,
        random_token_rate,
        special_token_ids,
        pad_token_id,
        selection,
        max_predictions,
    ):
        excluded = set(int(i) for i in special_token_ids)
        excluded.add(int(mask_token_id))
        if pad_token_id is not None:
            excluded.add(int(pad_token_id))
        excluded = tuple(sorted(excluded))
        replacement = np.setdiff1d(
            np.arange(vocabulary_size, dtype=np.int64), np.array(excluded)
        )
        return cls(
            vocabulary_size=int(vocabulary_size),
            mask_token_id=int(mask_token_id),
            mask_rate=float(mask_rate),
            mask_token_rate=float(mask_token_rate),
            random_token_rate=float(random_token_rate),
            excluded_ids=excluded,
            replacement_ids=tuple(int(i) for i in replacement),
            selection=selection,
            max_predictions=max_predictions,
        )

    @property
    def keep_rate(self):
        return max(0.0, 1.0 - self.mask_token_rate - self.random_token_rate)

    def action_probabilities(self, selection_rate):
        """Probabilities of (mask token, random id, keep) for one draw."""
        return [
            selection_rate * self.mask_token_rate,
            selection_rate * self.random_token_rate,
            selection_rate * self.keep_rate,
        ]


def uniform_bits(shape, seed, bits):
    """Uniform unsigned integers of `bits` (16 or 32) bits, shape `shape`.

    16-bit values come two to a 32-bit Philox draw, halving its cost.
    """
    if bits == 32:
        words = tf.random.stateless_uniform(
            shape, seed, minval=None, maxval=None, dtype=tf.int32
        )
        return tf.bitcast(words, tf.uint32)
    size = tf.reduce_prod(shape)
    words = tf.random.stateless_uniform(
        [(size + 1) // 2], seed, minval=None, maxval=None, dtype=tf.int32
    )
    halves = tf.reshape(tf.bitcast(words, tf.uint16), [-1])
    return tf.reshape(halves[:size], shape)


def below(values, threshold, bits):
    """`values < threshold` for `bits`-bit unsigned values (None: all)."""
    if threshold >= 2**bits:
        return None
    return tf.less(values, tf.constant(threshold, values.dtype))


def logical_and(*masks):
    """AND of boolean masks, where `None` stands for all True."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    result = present[0]
    for mask in present[1:]:
        result = tf.logical_and(result, mask)
    return result


def eligible_mask(token_ids, excluded_ids):
    """True where a token may be selected (not in `excluded_ids`).

    Consecutive excluded ids (e.g. 101..103) cost one unsigned comparison
    per run, which is much cheaper than a table lookup per token.
    """
    unsigned = tf.uint32 if token_ids.dtype == tf.int32 else tf.uint64
    eligible = None
    for first, last in contiguous_runs(excluded_ids):
        if first == last:
            allowed = tf.not_equal(token_ids, tf.constant(first, token_ids.dtype))
        else:
            offset = tf.bitcast(
                token_ids - tf.constant(first, token_ids.dtype), unsigned
            )
            allowed = tf.greater(offset, tf.constant(last - first, unsigned))
        eligible = allowed if eligible is None else tf.logical_and(eligible, allowed)
    return eligible


def draw_random_replacements(corrupted, replace_positions, seed, plan):
    """Writes a uniformly drawn allowed id at each True of `replace_positions`.

    Only the (few) chosen positions get a draw: they are gathered with
    `tf.where`, given ids, and scattered back.
    """
    indices = tf.where(replace_positions)
    count = tf.shape(indices)[0]
    replacement_ids = tf.constant(plan.replacement_ids, corrupted.dtype)
    draws = tf.random.stateless_uniform(
        [count],
        seed,
        minval=0,
        maxval=len(plan.replacement_ids),
        dtype=tf.int64 if len(plan.replacement_ids) >= 2**31 else tf.int32,
    )
    new_ids = tf.gather(replacement_ids, draws)
    return tf.tensor_scatter_nd_update(corrupted, indices, new_ids)


def apply_actions(token_ids, selected, action_values, bits, thresholds, seed, plan):
    """Mask / randomise / keep each selected token by its action value.

    `action_values` are uniform below `thresholds[-1]` at selected
    positions: values under `thresholds[0]` get the mask token, values in
    `[thresholds[0], thresholds[1])` a random id, the rest keep their id.
    """
    mask_threshold, random_threshold = thresholds[0], thresholds[1]
    corrupted = token_ids
    if mask_threshold > 0:
        to_mask = logical_and(selected, below(action_values, mask_threshold, bits))
        corrupted = tf.where(
            to_mask, tf.constant(plan.mask_token_id, token_ids.dtype), token_ids
        )
    if random_threshold > mask_threshold:
        offset = action_values - tf.constant(mask_threshold, action_values.dtype)
        to_randomise = logical_and(
            selected, below(offset, random_threshold - mask_threshold, bits)
        )
        corrupted = draw_random_replacements(corrupted, to_randomise, seed, plan)
    return corrupted


# The band of draws ranked in "exact" selection: the expected quantile plus
# or minus this many standard deviations (+ a constant for tiny counts). A
# row whose k-th smallest draw falls outside its band makes the batch fall
# back to ranking every eligible token (16 batches in 3,000 of 256 x 512
# tokens).
CANDIDATE_MARGIN_SIGMAS = 4.0
CANDIDATE_MARGIN_TOKENS = 4.0


def smallest_draws(candidates, draws, counts):
    """Marks, per row, the `counts[b]` candidates with the smallest draws.

    Only the candidates are ranked: they are gathered into a ragged batch
    whose `top_k` finds each row's last kept (draw, position) key; one
    elementwise comparison against it then marks the kept tokens. Equal
    draws are ordered by position.

    Args:
        candidates: bool `[B, T]`.
        draws: uint32 `[B, T]` random values.
        counts: int32 `[B]`, each at most the row's number of candidates.
    """
    coordinates = tf.where(candidates)
    # Unique non-negative keys: the 32-bit draw, then the position (< 2**31);
    # negated so that top_k's largest are the smallest draws.
    keys = -tf.bitwise.bitwise_or(
        tf.bitwise.left_shift(tf.cast(tf.gather_nd(draws, coordinates), tf.int64), 31),
        coordinates[:, 1],
    )
    ragged = tf.RaggedTensor.from_value_rowids(
        keys, coordinates[:, 0], nrows=tf.shape(candidates, tf.int64)[0], validate=False
    )
    padded = ragged.to_tensor(default_value=tf.int64.min)
    padded = tf.pad(padded, [[0, 0], [0, 1]], constant_values=tf.int64.min)
    top = tf.math.top_k(padded, k=tf.maximum(tf.reduce_max(counts), 1)).values
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


def cap_selections(selected, max_predictions, seed):
    """Keeps a uniformly random `max_predictions` of each row's selections.

    The kept ones are those with the smallest of one fresh 32-bit draw each
    (`smallest_draws`, as "exact" selection ranks). Ranking runs only when
    some row holds more than `max_predictions` selections.
    """
    counts = tf.reduce_sum(tf.cast(selected, tf.int32), axis=1)
    return tf.cond(
        tf.reduce_any(counts > max_predictions),
        lambda: smallest_draws(
            selected,
            uniform_bits(tf.shape(selected), seed, 32),
            tf.minimum(counts, max_predictions),
        ),
        lambda: selected,
    )


def exact_selection(eligible, counts, seed, eligible_count=None):
    """Selects a uniformly random `counts[b]` of each row's eligible tokens.

    The selected tokens are those with the smallest of one uniform 32-bit
    draw each. A row's k-th smallest draw lies, with high probability, in a
    narrow band around the `k / n` quantile: tokens below the band are
    selected outright, and only the tokens inside it are ranked (about a
    seventh of them). If some row's k-th draw falls outside its band, the
    whole batch is ranked instead: the same result, more time.
    `eligible_count` (int32 `[B]`), when the caller has it, saves a pass.
    """
    draws = uniform_bits(tf.shape(eligible), seed, 32)
    if eligible_count is None:
        eligible_count = tf.reduce_sum(tf.cast(eligible, tf.int32), axis=1)
    eligible_count = tf.maximum(tf.cast(eligible_count, tf.float64), 1.0)
    needed = tf.cast(counts, tf.float64)
    spread = tf.sqrt(needed * tf.maximum(1.0 - needed / eligible_count, 0.0))
    margin = CANDIDATE_MARGIN_SIGMAS * spread + CANDIDATE_MARGIN_TOKENS

    def draw_quantile(fraction):
        scaled = tf.clip_by_value(fraction * 2.0**32, 0.0, 2.0**32 - 1)
        return tf.cast(scaled, tf.uint32)[:, None]

    band_low = draw_quantile((needed - margin) / eligible_count)
    band_high = draw_quantile((needed + margin) / eligible_count)
    below_band = tf.logical_and(eligible, draws < band_low)
    in_band = tf.logical_and(
        tf.logical_and(eligible, draws >= band_low), draws <= band_high
    )
    needed_from_band = counts - tf.reduce_sum(tf.cast(below_band, tf.int32), axis=1)
    band_size = tf.reduce_sum(tf.cast(in_band, tf.int32), axis=1)
    band_holds_kth = tf.reduce_all(
        tf.logical_and(needed_from_band >= 0, needed_from_band <= band_size)
    )
    return tf.cond(
        band_holds_kth,
        lambda: tf.logical_or(
            below_band,
            smallest_draws(in_band, draws, tf.maximum(needed_from_band, 0)),
        ),
        lambda: smallest_draws(eligible, draws, counts),
    )


def exact_counts(eligible, mask_rate, max_predictions, eligible_count=None):
    """`round(mask_rate * eligible)` per row, at least 1 when any eligible."""
    if eligible_count is None:
        eligible_count = tf.reduce_sum(tf.cast(eligible, tf.int32), axis=1)
    counts = tf.cast(
        tf.round(mask_rate * tf.cast(eligible_count, tf.float32)), tf.int32
    )
    counts = tf.maximum(counts, tf.minimum(eligible_count, 1))
    counts = tf.minimum(counts, eligible_count)
    if max_predictions is not None:
        counts = tf.minimum(counts, max_predictions)
    return counts


def select_and_corrupt(token_ids, seed, plan, valid=None):
    """Selects tokens and corrupts them; the core of every code path.

    Args:
        token_ids: int32/int64 ids, any rank for plain "bernoulli"; `[B, T]`
            for "exact" or with `max_predictions`.
        seed: shape-`[2]` integer seed; the result is a pure function of
            `(token_ids, seed, valid)`.
        plan: an `MLMMaskingPlan`.
        valid: optional bool mask of real (non-padded) positions.

    Returns:
        `(corrupted_ids, selected)`, both shaped like `token_ids`.
    """
    selection_seed, rank_seed, replacement_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3)
    )
    shape = tf.shape(token_ids)
    eligible = logical_and(eligible_mask(token_ids, plan.excluded_ids), valid)
    if eligible is None:
        eligible = tf.ones(shape, tf.bool)
    if plan.selection == "bernoulli":
        bits, thresholds = choose_thresholds(plan.action_probabilities(plan.mask_rate))
        selection_threshold = thresholds[2]
        draws = uniform_bits(shape, selection_seed, bits)
        selected = logical_and(eligible, below(draws, selection_threshold, bits))
        if plan.max_predictions is not None:
            selected = cap_selections(selected, plan.max_predictions, rank_seed)
        action_values = draws
    else:
        eligible_count = tf.reduce_sum(tf.cast(eligible, tf.int32), axis=1)
        counts = exact_counts(
            eligible, plan.mask_rate, plan.max_predictions, eligible_count
        )
        selected = exact_selection(eligible, counts, rank_seed, eligible_count)
        bits, thresholds = choose_thresholds(plan.action_probabilities(1.0))
        action_seed = tf.random.experimental.stateless_fold_in(rank_seed, 1)
        action_values = uniform_bits(shape, action_seed, bits)
    corrupted = apply_actions(
        token_ids, selected, action_values, bits, thresholds, replacement_seed, plan
    )
    return corrupted, selected


def prediction_targets(token_ids, selected, max_predictions):
    """keras-hub style `mask_positions`, `mask_ids`, `mask_weights`.

    Positions of the selected tokens in ascending order, then padding with
    position 0, id 0, weight 0, to width `max_predictions`. `tf.where` lists
    selected positions row by row in ascending order, so no sort is needed.

    Args:
        token_ids: original ids `[B, T]`.
        selected: bool `[B, T]` with at most `max_predictions` per row.
        max_predictions: the output width.

    Returns:
        `(positions int32 [B, P], ids [B, P], weights float32 [B, P])`.
    """
    batch_size = tf.shape(token_ids)[0]
    coordinates = tf.cast(tf.where(selected), tf.int32)
    rows = tf.RaggedTensor.from_value_rowids(
        coordinates[:, 1], coordinates[:, 0], nrows=batch_size
    )
    shape = tf.stack([batch_size, max_predictions])
    positions = rows.to_tensor(default_value=0, shape=shape)
    ids = tf.RaggedTensor.from_value_rowids(
        tf.gather_nd(token_ids, coordinates), coordinates[:, 0], nrows=batch_size
    ).to_tensor(default_value=0, shape=shape)
    weights = tf.sequence_mask(rows.row_lengths(), max_predictions, tf.float32)
    return positions, ids, weights
