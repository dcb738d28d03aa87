"""Whole-word and span (SpanBERT) masked-LM selection written once against the op set.

The statistics of `keras_dynmask.kernels.word_selection` (whole words with
probability `mask_rate`; whole words in random order within the token
budget `round(mask_rate * eligible tokens)`; SpanBERT's spans of whole
words; the `max_predictions` cap that keeps whole words) as dense,
static-width ops over a `[B, T]` batch that run with TensorFlow or with
`keras.ops` (`keras_dynmask.kernels.op_set`): this is what
`DynamicMLMMasking` computes at `"word"` and `"span"` granularity inside a
JAX or PyTorch model, under jit.

A word is a run of eligible tokens that begins at a word start; an
ineligible token (special, padding, mask, or a negative word id) belongs to
no word and ends the word before it. A cumulative sum numbers the words of
a row (`word_indices`); per-word values live in a `[B, T]` "word space"
(column `k` is the row's word `k`: a row never has more than `T` words) and
reach the tokens with one `take_along_axis`. Word orders are random
permutations of the word-space columns (a double argsort of uniform draws),
so no two words ever share a key. Budgets are filled from one sort of the
tokens' word keys (`fill_budget`). Memory is O(B * T): no `[B, T, T]`
intermediate, no loop over tokens or words (loops run over at most
`max_span_length` offsets). Every draw is a uniform float32 `[B, T]` keyed
by a `[2]` seed, so the output is a pure function of the ids and the seed.
"""

import numpy as np

from keras_dynmask.kernels import token_masking

INT32_MAX = 2**31 - 1


# Word boundaries.


def shift_right(ops, values, fill):
    """`values` moved one position right along the last axis, `fill` first."""
    batch_size = ops.shape(values)[0]
    first = ops.cast(ops.zeros((batch_size, 1), "int32") + int(fill), ops.dtype_name(values))
    return ops.concat([first, values[:, :-1]], axis=1)


def starts_from_table(ops, token_ids, eligible, word_starts):
    """bool `[B, T]`: True at the first token of each word.

    `word_starts`: bools `[vocabulary_size]`, True where an id begins a word
    (ids outside the table are looked up clipped; they are not eligible).
    After an ineligible token an eligible one always begins a word.
    """
    table = np.asarray(word_starts, bool)
    clipped = ops.clip(token_ids, 0, len(table) - 1)
    begins = ops.take(ops.convert(table), clipped)
    after_break = shift_right(ops, ops.logical_not(eligible), True)
    return eligible & (begins | after_break)


def starts_from_word_ids(ops, word_ids, eligible):
    """`(eligible, starts)` from per-token word ids `[B, T]` (negative: no word).

    Pieces of one word share a value (Hugging Face's `word_ids()`); a token
    whose word id differs from the one before begins a word. Tokens with a
    negative word id are not eligible.
    """
    eligible = eligible & (word_ids >= 0)
    after_break = shift_right(ops, ops.logical_not(eligible), True)
    new_word = ops.not_equal(word_ids, shift_right(ops, word_ids, -1))
    return eligible, eligible & (new_word | after_break)


def word_indices(ops, starts):
    """int32 `[B, T]`: each token's word number in its row (0 before any)."""
    return ops.maximum(ops.cumsum(ops.cast(starts, "int32"), axis=1) - 1, 0)


def spread_to_tokens(ops, word_values, word_index):
    """`word_values[b, word_index[b, t]]`: word-space values at the tokens."""
    return ops.take_along_axis(word_values, word_index, axis=1)


def random_order(ops, shape, seed):
    """int32 `shape`: per row a uniformly random permutation of `0 .. T - 1`."""
    order = ops.argsort(ops.uniform(shape, seed), axis=-1)
    return ops.cast(ops.argsort(order, axis=-1), "int32")


# Filling a token budget with whole words.


def fill_budget(ops, candidates, token_keys, budget, cap=None, at_least_one=True):
    """Takes whole words in ascending key order while within `budget` tokens.

    The tokens of one word share a key. A row keeps the words whose keys
    come first, as many as fit in `budget[b]` tokens; the word at the
    budget's edge is dropped when it does not fit whole. With
    `at_least_one`, a row with candidates keeps its first word even when
    that word alone exceeds the budget, unless it exceeds `cap`.

    Args:
        candidates: bool `[B, T]`, the tokens that may be kept.
        token_keys: int32 `[B, T]`, each token's word key, in `[0, 2**31 - 1)`.
        budget: int32 `[B]`, each at most the row's candidate count.
        cap: `None` or an int: no word longer than this is kept.
        at_least_one: whether a row keeps a word when none fits.
    """
    keyed = ops.where(candidates, ops.cast(token_keys, "int32"), INT32_MAX)
    batch_size = ops.shape(keyed)[0]
    # Sorted keys, a column of INT32_MAX past the last token.
    past_end = ops.zeros((batch_size, 1), "int32") + INT32_MAX
    ordered = ops.concat([ops.sort(keyed, axis=-1), past_end], axis=1)
    budget = ops.cast(budget, "int32")
    last = ops.take_along_axis(ordered, ops.maximum(budget - 1, 0)[:, None], axis=1)[:, 0]
    following = ops.take_along_axis(ordered, budget[:, None], axis=1)[:, 0]
    splits_word = last == following
    # Keep keys <= limit: the last whole word's key, or those before the split word.
    limit = ops.where(splits_word, last - 1, last)
    if at_least_one:
        first = ordered[:, 0]
        keeps_none = splits_word & (last == first)
        if cap is not None:
            first_length = ops.sum(ops.cast(keyed == first[:, None], "int32"), axis=1)
            keeps_none = keeps_none & (first_length <= cap)
        limit = ops.where(keeps_none, first, limit)
    limit = ops.where(budget > 0, limit, -1)
    return keyed <= limit[:, None]


def cap_words(ops, selected, word_index, max_predictions, seed):
    """Keeps whole selected words, in random order, within `max_predictions`.

    No word is cut, so a row may keep fewer than `max_predictions` tokens;
    a row within the cap keeps everything.
    """
    counts = ops.sum(ops.cast(selected, "int32"), axis=1)
    keys = spread_to_tokens(ops, random_order(ops, ops.shape(selected), seed), word_index)
    return fill_budget(
        ops, selected, keys, ops.minimum(counts, max_predictions), at_least_one=False
    )


# Strategies.


def bernoulli_words(ops, eligible, word_index, mask_rate, seed):
    """Selects each word, whole, with probability `mask_rate` (one draw a word)."""
    draws = spread_to_tokens(ops, ops.uniform(ops.shape(eligible), seed), word_index)
    return eligible & (draws < mask_rate)


def span_lengths(ops, shape, seed, span_length_p, max_span_length):
    """int32 span lengths in words: Geometric(`span_length_p`) on `1, 2, ...`
    restricted to `[1, max_span_length]` (SpanBERT's law), one uniform draw
    `u` a span: 1 plus the number of `l < max_span_length` with
    `u < P(length > l)`."""
    lengths = ops.ones(shape, "int32")
    if max_span_length == 1 or span_length_p >= 1.0:
        return lengths
    q = 1.0 - span_length_p
    total = 1.0 - q**max_span_length
    draws = ops.uniform(shape, seed)
    for length in range(1, max_span_length):
        longer = (q**length - q**max_span_length) / total  # P(length > l)
        lengths = lengths + ops.cast(draws < longer, "int32")
    return lengths


def offset_bits(max_span_length):
    """Bits of a word's offset in its span: `covering_keys`' low bits."""
    return max(max_span_length - 1, 1).bit_length()


def covering_keys(ops, priorities, lengths, max_span_length):
    """int32 `[B, W]`: per word, the ordering key of the first span covering it.

    `priorities` and `lengths` are `[B, W]`, column `k` holding the span
    that starts at word `k`: a random permutation of `0 .. W - 1` and a
    length in words. Spans are added in ascending priority; a span covers
    words `k .. k + length - 1`. A word's key is `priority * 2**offset_bits
    + offset`, the offset of the word in the first span covering it, so
    sorting words by key lists them span by span, each span's new words left
    to right. Every word is covered by its own span at least. One pass per
    offset `1 .. max_span_length - 1`: O(B * W * max_span_length).
    """
    first_keys = priorities * (2 ** offset_bits(max_span_length))
    best = first_keys
    reach = max_span_length - 1
    if reach == 0:
        return best
    batch_size, width = ops.shape(priorities)[:2]
    # Spans starting before word 0 (left padding) have length 0: they reach no word.
    padding = ops.zeros((batch_size, reach), "int32")
    first_keys = ops.concat([padding, first_keys], axis=1)
    lengths = ops.concat([padding, ops.cast(lengths, "int32")], axis=1)
    for offset in range(1, max_span_length):
        start = reach - offset  # spans starting `offset` words before
        keys = first_keys[:, start : start + width]
        spans = lengths[:, start : start + width]
        best = ops.minimum(best, ops.where(spans > offset, keys + offset, INT32_MAX))
    return best


def span_words(ops, eligible, word_index, mask_rate, seed, span_length_p=0.2,
               max_span_length=10, max_predictions=None):
    """SpanBERT's span masking, in whole words, within a token budget.

    Spans start at word starts taken in uniformly random order, each
    `span_lengths` words long, and are added until the next would exceed
    `round(mask_rate * eligible tokens)` tokens (or `max_predictions`); the
    span at the edge keeps the leading words that still fit. A span counts
    words, not tokens, and skips any ineligible token in its way (which
    stays unselected). At least one word when any is eligible and it fits
    `max_predictions`. `max_span_length=1` is whole-word exact selection.
    """
    shape = ops.shape(eligible)
    priorities = random_order(ops, shape, ops.fold_seed(seed, 0))
    lengths = span_lengths(ops, shape, ops.fold_seed(seed, 1), span_length_p, max_span_length)
    word_keys = covering_keys(ops, priorities, lengths, max_span_length)
    token_keys = spread_to_tokens(ops, word_keys, word_index)
    budget = token_masking.exact_counts(ops, eligible, mask_rate, max_predictions)
    return fill_budget(ops, eligible, token_keys, budget, cap=max_predictions)


def exact_words(ops, eligible, word_index, mask_rate, seed, max_predictions=None):
    """Whole words in random order while within `round(mask_rate * eligible)`
    tokens (and `max_predictions`); at least one word when any is eligible
    and it fits `max_predictions`."""
    return span_words(ops, eligible, word_index, mask_rate, seed, max_span_length=1,
                      max_predictions=max_predictions)


def select_words(ops, token_ids, eligible, seed, granularity, selection, mask_rate,
                 word_starts=None, word_ids=None, span_length_p=0.2, max_span_length=10,
                 max_predictions=None):
    """bool `[B, T]`: the selection at `"word"` or `"span"` granularity.

    Word boundaries come from `word_ids` (int `[B, T]`, negative: no word)
    when given, else from the id-level `word_starts` table (bools
    `[vocabulary_size]`).

    Args:
        token_ids, eligible: int `[B, T]` ids, bool `[B, T]`.
        seed: shape-`[2]` integer seed.
        granularity, selection: `"word"` / `"span"`, `"bernoulli"` / `"exact"`
            (`"span"` fills its budget whatever `selection` says).
        mask_rate: Python float in `(0, 1]`, or a float32 scalar tensor (a
            scheduled rate: the budgets are then rounded in float32).
        word_starts, word_ids: the word boundaries.
        span_length_p, max_span_length: the span length law.
        max_predictions: `None` or an int cap on selected tokens per row.
    """
    if word_ids is not None:
        eligible, starts = starts_from_word_ids(ops, word_ids, eligible)
    else:
        starts = starts_from_table(ops, token_ids, eligible, word_starts)
    word_index = word_indices(ops, starts)
    if granularity == "span":
        return span_words(ops, eligible, word_index, mask_rate, seed, span_length_p,
                          max_span_length, max_predictions)
    if selection == "exact":
        return exact_words(ops, eligible, word_index, mask_rate, seed, max_predictions)
    selected = bernoulli_words(ops, eligible, word_index, mask_rate, ops.fold_seed(seed, 0))
    if max_predictions is not None:
        selected = cap_words(ops, selected, word_index, max_predictions, ops.fold_seed(seed, 1))
    return selected


def select_and_corrupt(ops, token_ids, seed, *, excluded_ids, vocabulary_size, mask_rate,
                       granularity, selection, max_predictions, mask_token_id,
                       mask_token_rate, random_token_rate, word_starts=None, word_ids=None,
                       span_length_p=0.2, max_span_length=10):
    """`(corrupted, selected)` for ids `[B, T]`: whole-word or span masking.

    The word-level selection (`select_words`), then BERT's 80/10/10
    corruption of the selected tokens (`token_masking.bert_corruption`) from
    a draw of its own.
    """
    eligible = token_masking.eligible_tokens(ops, token_ids, excluded_ids, vocabulary_size)
    selected = select_words(
        ops, token_ids, eligible, ops.fold_seed(seed, 0), granularity, selection, mask_rate,
        word_starts=word_starts, word_ids=word_ids, span_length_p=span_length_p,
        max_span_length=max_span_length, max_predictions=max_predictions,
    )
    shape = ops.shape(token_ids)
    draws = ops.uniform(shape, ops.fold_seed(seed, 1))
    id_draws = ops.uniform(shape, ops.fold_seed(seed, 2)) if random_token_rate > 0 else None
    corrupted = token_masking.bert_corruption(
        ops, token_ids, selected, draws, id_draws, mask_token_id, mask_token_rate,
        random_token_rate, vocabulary_size, excluded_ids,
    )
    return corrupted, selected
