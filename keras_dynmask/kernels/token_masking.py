"""Token-level masked-LM masking written once against the op set.

Selection (Bernoulli, exact counts, the `max_predictions` cap), BERT's
80/10/10 corruption and keras-hub's fixed-width targets, each a few dense,
static-width ops over a `[B, T]` batch that run with TensorFlow or with
`keras.ops` (`keras_dynmask.kernels.op_set`): this is what
`DynamicMLMMasking` computes inside a JAX or PyTorch model, under jit.
Every random draw is a uniform float32 `[B, T]` keyed by a `[2]` seed
(`ops.uniform`), so the output is a pure function of the ids and the seed.

In `tf.data` the layer keeps TensorFlow-only kernels (`selection`,
`corruption`, `formatting`): bound to TensorFlow, this form runs at 3.6x
keras-hub's masking for Bernoulli "fit" and 0.8x for exact counts, against
the 8x and 3x floors the fast path holds (`benchmarks/one_kernel_form.py`,
figures in docs/benchmarks.md).
"""

import numpy as np

from keras_dynmask.kernels import selection


def eligible_tokens(ops, token_ids, excluded_ids, vocabulary_size):
    """True where a token may be selected.

    Not one of `excluded_ids` (special, padding, mask) and inside `[0,
    vocabulary_size)`: out-of-range ids are never selected (no run-time
    assertion guards them under jit).
    """
    eligible = (token_ids >= 0) & (token_ids < vocabulary_size)
    for first, last in selection.contiguous_runs(excluded_ids):
        eligible = eligible & ((token_ids < first) | (token_ids > last))
    return eligible


def exact_counts(ops, eligible, mask_rate, max_predictions=None):
    """`round(mask_rate * eligible)` per row, at least 1 when any token is
    eligible, at most `max_predictions`.

    The counts for every possible number of eligible tokens `0 .. T` are
    worked out in float64 NumPy (`np.round`, half to even as `tf.round`:
    0.15 * 190 = 28.499... gives 28) and looked up, so no backend needs
    float64 under jit. `T` must be static.
    """
    length = ops.shape(eligible)[-1]
    eligible_count = ops.sum(ops.cast(eligible, "int32"), axis=-1)
    if not isinstance(mask_rate, (int, float)):
        # A scheduled rate (a float32 tensor): rounded in float32.
        product = ops.cast(eligible_count, "float32") * mask_rate
        counts = ops.cast(ops.round(product), "int32")
        counts = ops.minimum(ops.maximum(counts, ops.minimum(eligible_count, 1)), eligible_count)
        return counts if max_predictions is None else ops.minimum(counts, max_predictions)
    possible = np.arange(length + 1)
    table = np.round(float(mask_rate) * possible).astype(np.int64)
    table = np.minimum(np.maximum(table, np.minimum(possible, 1)), possible)
    if max_predictions is not None:
        table = np.minimum(table, max_predictions)
    return ops.take(ops.convert(table.astype(np.int32)), eligible_count)


def draw_ranks(ops, candidates, draws):
    """Each candidate's rank among its row's candidates, by ascending draw.

    Non-candidates rank after every candidate.
    """
    keys = ops.where(candidates, draws, 2.0)
    order = ops.argsort(keys, axis=-1)
    # The rank of position j is where j sits in `order`: the inverse
    # permutation, itself an argsort.
    return ops.argsort(order, axis=-1)


def bernoulli_tokens(ops, eligible, mask_rate, draws):
    """Each eligible token independently with probability `mask_rate`."""
    return eligible & (draws < mask_rate)


def exact_tokens(ops, eligible, counts, draws):
    """Per row, `counts[b]` eligible tokens, a uniformly random subset."""
    ranks = draw_ranks(ops, eligible, draws)
    return eligible & (ranks < ops.cast(counts, "int32")[:, None])


def cap_selections(ops, selected, max_predictions, draws):
    """Keeps at most `max_predictions` selections a row, uniformly at random."""
    ranks = draw_ranks(ops, selected, draws)
    return selected & (ranks < max_predictions)


def random_allowed_ids(ops, draws, vocabulary_size, excluded_ids, dtype):
    """Ids uniform over `[0, vocabulary_size)` less `excluded_ids`.

    `draws` are uniform in `[0, 1)`; the `u`-th allowed id is `u` plus the
    number of excluded ids at or below it (O(excluded) per token). float32
    draws resolve `2**24` values: exact for vocabularies up to 16.7 M ids.
    """
    excluded = sorted({int(i) for i in excluded_ids if 0 <= i < vocabulary_size})
    allowed = vocabulary_size - len(excluded)
    ids = ops.cast(ops.floor(draws * allowed), "int32")
    ids = ops.minimum(ids, allowed - 1)
    for j, excluded_id in enumerate(excluded):
        ids = ids + ops.cast(ids >= excluded_id - j, "int32")
    return ops.cast(ids, dtype)


def select_and_corrupt(ops, token_ids, seed, *, excluded_ids, vocabulary_size, mask_rate,
                       selection, max_predictions, mask_token_id, mask_token_rate,
                       random_token_rate):
    """`(corrupted, selected)` for ids `[B, T]`: the whole token-level masking.

    A Bernoulli selection's draw, divided by the rate, is uniform on `[0, 1)`
    at the selected tokens, and decides their corruption too (no second
    draw); exact counts rank one draw and take a second for the corruption.
    A third draw picks the random ids, when `random_token_rate > 0`.
    """
    seeds = [ops.fold_seed(seed, key) for key in range(4)]
    shape = ops.shape(token_ids)
    eligible = eligible_tokens(ops, token_ids, excluded_ids, vocabulary_size)
    draws = ops.uniform(shape, seeds[0])
    if selection == "bernoulli":
        selected = bernoulli_tokens(ops, eligible, mask_rate, draws)
        corruption_draws = draws * (1.0 / mask_rate)
        if max_predictions is not None:
            selected = cap_selections(ops, selected, max_predictions, ops.uniform(shape, seeds[1]))
    else:
        counts = exact_counts(ops, eligible, mask_rate, max_predictions)
        selected = exact_tokens(ops, eligible, counts, draws)
        corruption_draws = ops.uniform(shape, seeds[2])
    id_draws = ops.uniform(shape, seeds[3]) if random_token_rate > 0 else None
    corrupted = bert_corruption(
        ops, token_ids, selected, corruption_draws, id_draws, mask_token_id,
        mask_token_rate, random_token_rate, vocabulary_size, excluded_ids,
    )
    return corrupted, selected


def bert_corruption(ops, token_ids, selected, draws, id_draws, mask_token_id,
                    mask_token_rate, random_token_rate, vocabulary_size, excluded_ids):
    """BERT's 80/10/10: selected tokens become the mask token, a random id,
    or keep their id, with the given shares (one uniform draw a token)."""
    dtype = ops.dtype_name(token_ids)
    to_mask = selected & (draws < mask_token_rate)
    corrupted = ops.where(to_mask, ops.convert(mask_token_id, dtype=dtype), token_ids)
    if random_token_rate > 0:
        to_random = selected & (draws >= mask_token_rate) & (
            draws < mask_token_rate + random_token_rate
        )
        random_ids = random_allowed_ids(ops, id_draws, vocabulary_size, excluded_ids, dtype)
        corrupted = ops.where(to_random, random_ids, corrupted)
    return corrupted


def prediction_targets(ops, token_ids, selected, max_predictions):
    """keras-hub's `(mask_positions, mask_ids, mask_weights)`, width `max_predictions`.

    Positions ascending, then padded with position 0, id 0, weight 0.
    `selected` holds at most `max_predictions` a row.
    """
    batch_size, length = ops.shape(selected)[:2]
    positions = ops.arange(length)[None, :]
    keys = ops.where(selected, positions, positions + length)
    order = ops.argsort(keys, axis=-1)
    if isinstance(length, int) and length < max_predictions:
        pad = ops.zeros((batch_size, max_predictions - length), "int32")
        order = ops.concat([ops.cast(order, "int32"), pad], axis=-1)
        kept = ops.concat([ops.take_along_axis(selected, order[:, :length], axis=-1),
                           ops.zeros((batch_size, max_predictions - length), "bool")], axis=-1)
    else:
        order = ops.cast(order[:, :max_predictions], "int32")
        kept = ops.take_along_axis(selected, order, axis=-1)
    mask_positions = ops.where(kept, order, ops.zeros(ops.shape(order), "int32"))
    ids = ops.take_along_axis(token_ids, mask_positions, axis=-1)
    mask_ids = ops.where(kept, ids, ops.zeros(ops.shape(ids), ops.dtype_name(ids)))
    return mask_positions, mask_ids, ops.cast(kept, "float32")
