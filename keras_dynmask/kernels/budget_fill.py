"""Whole words within a token budget: which words fit, in key order.

`fill_budget` keeps, per row, the words whose keys come first while their
tokens fit the row's budget; whole-word "exact" selection, span masking and
the `max_predictions` cap of `keras_dynmask.kernels.word_selection` all end
in it. Outside XLA the keys at the budget's edge come from a histogram of
the keys and a sort of the few tokens in its edge bins; under XLA from one
`top_k` of static width.
"""

import math

from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask.kernels import random_bits
from keras_dynmask.kernels import row_lists
from keras_dynmask.kernels import selection


def budget_bound(length, mask_rate, max_predictions=None):
    """A bound on any row's token budget: a Python int when `length` is one.

    `round(mask_rate * n) <= floor(mask_rate * length + 0.5)` for every
    `n <= length`; at least 1, at most `length` and `max_predictions`. A
    tensor rate (a schedule) with a static `length` gives `length` (static
    widths for XLA).
    """
    if isinstance(length, int) and isinstance(mask_rate, float):
        bound = min(length, max(1, int(math.floor(mask_rate * length + 0.5))))
        return bound if max_predictions is None else min(bound, max_predictions)
    if isinstance(length, int):  # a tensor rate (a schedule): the static bound
        return length if max_predictions is None else min(length, max_predictions)
    bound = tf.cast(tf.floor(tf.cast(mask_rate, tf.float64) * tf.cast(length, tf.float64) + 0.5), tf.int32)
    bound = tf.clip_by_value(bound, 1, tf.maximum(tf.cast(length, tf.int32), 1))
    return bound if max_predictions is None else tf.minimum(bound, max_predictions)


def fill_budget(candidates, token_keys, budget, bound, key_bound, cap=None, at_least_one=True):
    """Takes whole words in ascending key order while within `budget` tokens.

    Tokens of one word share a key. The kept words are those whose keys
    come first, as many as fit in `budget[b]` tokens: if the token at the
    budget's edge splits a word, that word is dropped. With `at_least_one`,
    a row with candidates keeps its first word even when it alone exceeds
    the budget, unless it exceeds `cap`. A histogram of the keys finds the
    keys at the budget's edge (`_budget_edge`); under XLA one `top_k` of
    static width `bound + 1`. No ragged tensor.

    Args:
        candidates: bool `[B, T]`, the tokens that may be kept.
        token_keys: int32 or int64 `[B, T]`, each token's word key (non-negative,
            below `key_bound`).
        budget: int32 `[B]`, each at most the row's candidate count and `bound`.
        bound: int (or int32 scalar) at least every `budget[b]`.
        key_bound: int (or int64 scalar) above every key.
        cap: `None` or an int: no word longer than this is kept.
        at_least_one: whether a row keeps a word when none fits.
    """
    if random_bits.in_xla_context():
        last, following, first = _budget_edge_by_top_k(candidates, token_keys, budget, bound)
        keyed = None
    else:
        keyed, last, following = _budget_edge(candidates, token_keys, budget, key_bound)
        first = tf.reduce_min(keyed, axis=1)
    splits_word = tf.equal(last, following)
    # Keep keys <= limit: the last whole word's key, or those before the split word.
    limit = tf.where(splits_word, last - 1, last)
    if keyed is None:
        keyed = tf.where(candidates, token_keys, token_keys.dtype.max)
    if at_least_one:
        keeps_none = tf.logical_and(splits_word, tf.equal(last, first))
        if cap is not None:
            first_length = tf.reduce_sum(tf.cast(tf.equal(keyed, first[:, None]), tf.int32), axis=1)
            keeps_none = tf.logical_and(keeps_none, first_length <= cap)
        limit = tf.where(keeps_none, first, limit)
    limit = tf.where(budget > 0, limit, -1)
    return keyed <= limit[:, None]


def _budget_edge_by_top_k(candidates, token_keys, budget, bound):
    """`(last, following, first)` keys of each row by one `top_k` of static
    width `bound + 1` (for XLA): the `budget`-th, `budget + 1`-th (the
    dtype's max past the candidates) and smallest candidate keys."""
    length = candidates.shape[1]
    if length is None:
        width = tf.minimum(tf.shape(candidates)[1], bound + 1)
    else:
        width = min(length, bound + 1) if isinstance(bound, int) else tf.minimum(length, bound + 1)
    lowest = token_keys.dtype.min
    # Descending order of -key is ascending order of key; non-candidates last.
    top = tf.math.top_k(tf.where(candidates, -token_keys, lowest), k=width).values
    top = tf.pad(top, [[0, 0], [0, 1]], constant_values=lowest)
    last = tf.gather(top, tf.maximum(budget - 1, 0), batch_dims=1)
    following = tf.gather(top, budget, batch_dims=1)
    following = tf.where(tf.equal(following, lowest), token_keys.dtype.max, -following)
    return -last, following, -top[:, 0]


# Bins of `_budget_edge`'s histogram (a power of two).
EDGE_BINS = 256


def _budget_edge(candidates, token_keys, budget, key_bound):
    """`(keyed, last, following)`: the keys with the dtype's max at
    non-candidates, and per row the `budget`-th and `budget + 1`-th smallest
    candidate keys (the dtype's max past the row's candidates; anything in
    rows of budget 0).

    A radix selection in two steps instead of a sort: a per-row histogram of
    the keys' top bits (`EDGE_BINS` bins, one `DenseBincount`) finds the
    bins holding those two keys; only the few tokens of these bins are
    then gathered and sorted.
    """
    dtype = token_keys.dtype
    key_bits = _bit_length(key_bound)
    shift = tf.cast(tf.maximum(key_bits - int(math.log2(EDGE_BINS)), 0), dtype)
    # Non-candidates fall in bin EDGE_BINS, past every key.
    bins = tf.where(candidates, tf.bitwise.right_shift(token_keys, shift), EDGE_BINS)
    counts = tf.math.bincount(
        tf.cast(bins, tf.int32), minlength=EDGE_BINS + 1, maxlength=EDGE_BINS + 1, axis=-1
    )
    through = row_lists.row_counts(counts[:, :EDGE_BINS])  # candidates in bins 0..j
    below_edge = through < budget[:, None]
    last_bin = tf.reduce_sum(tf.cast(below_edge, tf.int32), axis=1)
    following_bin = tf.minimum(
        tf.reduce_sum(tf.cast(through < (budget + 1)[:, None], tf.int32), axis=1), EDGE_BINS - 1
    )
    before = tf.reduce_max(tf.where(below_edge, through, 0), axis=1)  # candidates below last_bin
    # Bins strictly between the two are empty: the edge tokens' ranks start at `before`.
    edge = tf.logical_or(
        tf.equal(bins, tf.cast(last_bin, dtype)[:, None]),
        tf.equal(bins, tf.cast(following_bin, dtype)[:, None]),
    )
    coordinates = tf.where(edge)
    rows = row_lists.pad_rows(
        tf.gather_nd(token_keys, coordinates), coordinates[:, 0], tf.shape(budget)[0], default=dtype.max
    )
    rows = tf.sort(tf.pad(rows, [[0, 0], [0, 1]], constant_values=dtype.max), axis=1)
    rank = tf.maximum(budget - 1 - before, 0)
    width = tf.shape(rows)[1]
    last = tf.gather(rows, tf.minimum(rank, width - 1), batch_dims=1)
    following = tf.gather(rows, tf.minimum(rank + 1, width - 1), batch_dims=1)
    keyed = tf.where(candidates, token_keys, dtype.max)
    return keyed, last, following


def _bit_length(bound):
    """Bits of `bound - 1`, at least 1 (an int, or an int scalar tensor:
    then an exact int64 tensor)."""
    if isinstance(bound, int):
        return max(bound - 1, 1).bit_length()
    value = tf.maximum(tf.cast(bound, tf.int64) - 1, 1)
    bits = tf.cast(tf.math.floor(tf.math.log(tf.cast(value, tf.float64)) / math.log(2.0)), tf.int64) + 1
    # Correct float rounding near powers of two.
    one = tf.constant(1, tf.int64)
    bits = tf.where(tf.bitwise.left_shift(one, bits) <= value, bits + 1, bits)
    return tf.where(tf.bitwise.left_shift(one, bits - 1) > value, bits - 1, bits)


def word_budget(eligible, mask_rate, max_predictions):
    """int32 `[B]`: `round(mask_rate * eligible tokens)`, at least 1 when any."""
    counts = tf.reduce_sum(tf.cast(eligible, tf.int32), axis=1)
    return selection.exact_counts(counts, mask_rate, max_predictions)
