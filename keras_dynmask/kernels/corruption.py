"""What selected positions become: pure TF over whole batches.

`bert_corruption` is BERT's 80/10/10: each selected token becomes the mask
token, a random id, or keeps its id. A new corruption (e.g. T5's sentinels)
is one new function here, taking the ids and the `selected` mask a
selection (`keras_dynmask.kernels.selection`) made.
"""

from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask.kernels import random_bits
from keras_dynmask.kernels import seeds


def allowed_id_count(vocabulary_size, excluded_ids):
    """How many ids of `[0, vocabulary_size)` are not in `excluded_ids`."""
    return vocabulary_size - len([i for i in set(excluded_ids) if 0 <= i < vocabulary_size])


def uniform_allowed_ids(shape, seed, vocabulary_size, excluded_ids, dtype, dense=False):
    """Ids drawn uniformly from `[0, vocabulary_size)` less `excluded_ids`.

    The allowed ids are never listed: a draw `u` in `[0, allowed)` maps to
    the `u`-th allowed id, `u` plus the number of excluded ids at or below
    it, counted against the sorted excluded ids (so the cost is
    O(number of excluded ids), whatever the vocabulary size).

    Args:
        shape: shape of the draws.
        seed: shape-`[2]` integer seed.
        vocabulary_size: Python int.
        excluded_ids: Python ints in `[0, vocabulary_size)`.
        dtype: the ids' dtype.
        dense: draw with `random_bits.uniform_below` (a fixed-shape 32-bit
            draw, for XLA) rather than `stateless_uniform`'s bounded draw.
    """
    excluded = sorted(set(int(i) for i in excluded_ids if 0 <= i < vocabulary_size))
    allowed = vocabulary_size - len(excluded)
    draw_dtype = tf.int64 if allowed >= 2**31 or dtype == tf.int64 else tf.int32
    if dense:
        draws = random_bits.uniform_below(shape, seed, allowed, draw_dtype)
    else:
        draws = tf.random.stateless_uniform(
            shape, random_bits.philox_seed(seed), minval=0, maxval=allowed, dtype=draw_dtype
        )
    if excluded:
        # The u-th allowed id is u + #{j : excluded[j] - j <= u}.
        shifted = tf.constant([e - j for j, e in enumerate(excluded)], draw_dtype)
        skipped = tf.reduce_sum(
            tf.cast(shifted <= draws[..., None], draw_dtype), axis=-1
        )
        draws = draws + skipped
    return tf.cast(draws, dtype)


def bert_corruption(
    token_ids,
    selected,
    seed,
    mask_token_id,
    mask_token_rate,
    random_token_rate,
    vocabulary_size,
    replacement_excluded_ids,
    outcomes=None,
):
    """Masks, randomises or keeps each selected token (BERT's 80/10/10).

    Args:
        token_ids: int32/int64 ids, any shape.
        selected: bool, same shape.
        seed: shape-`[2]` integer seed.
        mask_token_id: id written for the mask share.
        mask_token_rate: share of selected tokens given `mask_token_id`.
        random_token_rate: share given a random allowed id.
        vocabulary_size: ids lie in `[0, vocabulary_size)`.
        replacement_excluded_ids: ids never drawn as random replacements.
        outcomes: optional `random_bits.Outcomes` whose outcome 0 is the
            mask share and outcome 1 the random share of the selected tokens
            (as `selection.bernoulli_tokens` returns); without it one draw per
            token is made here.

    Returns:
        The corrupted ids, shaped like `token_ids`.
    """
    action_seed, replacement_seed = seeds.split_seed(seed, 2)
    if outcomes is None:
        keep_rate = max(0.0, 1.0 - mask_token_rate - random_token_rate)
        outcomes = random_bits.draw_outcomes(
            tf.shape(token_ids), action_seed, [mask_token_rate, random_token_rate, keep_rate]
        )
    corrupted = token_ids
    if mask_token_rate > 0:
        to_mask = random_bits.logical_and(selected, random_bits.outcome_is(outcomes, 0))
        corrupted = tf.where(to_mask, tf.constant(mask_token_id, token_ids.dtype), corrupted)
    if random_token_rate > 0:
        to_randomise = random_bits.logical_and(selected, random_bits.outcome_is(outcomes, 1))
        if random_bits.in_xla_context():
            # XLA: one fixed-shape draw per token, kept where chosen.
            new_ids = uniform_allowed_ids(
                tf.shape(token_ids), replacement_seed, vocabulary_size,
                replacement_excluded_ids, token_ids.dtype, dense=True,
            )
            return tf.where(to_randomise, new_ids, corrupted)
        # Only the (few) chosen positions get a draw: gathered, given ids,
        # scattered back.
        indices = tf.where(to_randomise)
        new_ids = uniform_allowed_ids(
            tf.shape(indices)[:1],
            replacement_seed,
            vocabulary_size,
            replacement_excluded_ids,
            token_ids.dtype,
        )
        corrupted = tf.tensor_scatter_nd_update(corrupted, indices, new_ids)
    return corrupted
