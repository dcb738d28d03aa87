"""Which positions whole-word and span masking select: pure TF over whole batches.

A word is a run of eligible tokens (`selection.eligible_tokens`) that
begins at a word-start token; an ineligible token (special, padding, mask)
belongs to no word and ends the word before it. Every function works on
`[B, T]` tensors with dense, static-shape ops that also compile with XLA:
a cumulative sum numbers the words of each row (`word_indices`), per-word
values live in a `[B, T]` "word space" (column `k` is row's word `k`; a row
never has more than `T` words; span masking keeps it word-major, `[T, B]`,
so that shifting by words is slicing rows) and reach the tokens with one
gather (`spread_to_tokens`, `spread_word_major`). Where a word needs only
a uniform random value (Bernoulli, exact, the cap), running sums of draws
taken at the word starts give every piece its word's value without that
gather (`running_sum_word_values`). No `[B, T, T]` intermediate, no
ragged tensor, no loop over words: memory is O(B * T).

A selection strategy is one function here returning a bool `[B, T]` in
which every word is selected whole or not at all: `bernoulli_words`,
`exact_words`, `span_words`; those within a token budget end in
`keras_dynmask.kernels.budget_fill`.
"""

from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask.kernels import budget_fill
from keras_dynmask.kernels import random_bits
from keras_dynmask.kernels import row_lists
from keras_dynmask.kernels import seeds

INT32_MAX = 2**31 - 1


# Word boundaries.


def shift_right(values, fill):
    """`values` moved one position right along the last axis, `fill` first."""
    first = tf.fill(tf.shape(values[:, :1]), tf.constant(fill, values.dtype))
    return tf.concat([first, values[:, :-1]], axis=1)


def starts_from_table(token_ids, eligible, word_starts):
    """bool `[B, T]`: True at the first token of each word.

    Args:
        token_ids: int32/int64 `[B, T]`.
        eligible: bool `[B, T]`.
        word_starts: bool `[vocabulary_size]`, True where an id begins a
            word. Ids outside the table are looked up clipped (they are not
            eligible anyway).
    """
    unsigned = tf.uint32 if token_ids.dtype == tf.int32 else tf.uint64
    last = tf.cast(tf.shape(word_starts, out_type=token_ids.dtype)[0] - 1, unsigned)
    # One unsigned minimum clips both ends (a negative id reads as huge).
    clipped = tf.bitcast(tf.minimum(tf.bitcast(token_ids, unsigned), last), token_ids.dtype)
    begins = tf.gather_nd(word_starts, clipped[..., None])  # cheaper than GatherV2 here
    after_break = shift_right(tf.logical_not(eligible), True)
    return tf.logical_and(eligible, tf.logical_or(begins, after_break))


def starts_from_word_ids(word_ids, eligible):
    """`(eligible, starts)` from per-token word ids (negative: no word).

    Pieces of one word share a value (Hugging Face's `word_ids()`); a
    token whose id differs from the one before begins a word. Tokens with
    a negative word id are not eligible.
    """
    eligible = tf.logical_and(eligible, word_ids >= 0)
    after_break = shift_right(tf.logical_not(eligible), True)
    new_word = tf.not_equal(word_ids, shift_right(word_ids, -1))
    return eligible, tf.logical_and(eligible, tf.logical_or(new_word, after_break))


def word_indices(starts):
    """int32 `[B, T]`: each token's word number in its row (0 before any)."""
    return tf.maximum(row_lists.row_counts(starts) - 1, 0)


def spread_to_tokens(word_values, word_index):
    """`word_values[b, word_index[b, t]]`: one flat gather for the batch."""
    shape = tf.shape(word_index)
    offsets = tf.range(shape[0])[:, None] * shape[1]
    flat = tf.gather(tf.reshape(word_values, [-1]), word_index + offsets)
    return tf.reshape(flat, shape)


def spread_word_major(word_values, word_index):
    """`word_values[word_index[b, t], b]` for word-major `[W, B]` values."""
    batch_size = tf.shape(word_index)[0]
    flat = tf.reshape(word_values, [-1])
    return tf.gather(flat, word_index * batch_size + tf.range(batch_size)[:, None])


# Strategies.


def bernoulli_words(eligible, word_index, mask_rate, seed):
    """Selects each word, whole, with probability `mask_rate`.

    One 16-bit draw per word-space column decides its word (32-bit when
    `mask_rate` is a tensor, e.g. a scheduled rate).
    """
    if not isinstance(mask_rate, float):
        draws = random_bits.uniform_bits(tf.shape(eligible), seed, 32)
        scaled = tf.cast(mask_rate, tf.float64) * 2.0**32
        threshold = tf.cast(tf.clip_by_value(scaled, 0.0, 2.0**32 - 1), tf.uint32)
        chosen = tf.logical_or(draws < threshold, scaled >= 2.0**32)
    else:
        bits = random_bits.choose_bits([mask_rate])
        threshold = random_bits.thresholds_for([mask_rate], bits)[0]
        draws = random_bits.uniform_bits(tf.shape(eligible), seed, bits)
        chosen = random_bits.below(draws, threshold, bits)
        if chosen is None:
            return eligible
    return tf.logical_and(eligible, spread_to_tokens(chosen, word_index))


# Bits of the running-sum draws of `bernoulli_words_by_running_sums`.
RUNNING_SUM_BITS = 12


def running_sums_apply(mask_rate, length):
    """Whether `bernoulli_words_by_running_sums` serves this rate and width:
    a Python rate that 12-bit thresholds realise closely, and rows whose
    running sums of 12-bit values stay exact in float64 (any width known
    only at run time is taken to: 2**41 tokens a row).

    Whether the width is static must not matter: the same inputs and seed
    select the same words in an eager call, a graph of unknown length and
    XLA.
    """
    return (
        isinstance(mask_rate, float)
        and _sums_exact(length, RUNNING_SUM_BITS)
        and random_bits.precise_enough([mask_rate], RUNNING_SUM_BITS)
    )


def _sums_exact(length, bits):
    """Whether float64 running sums of `bits`-bit values are exact over
    rows of `length` (a static width; `None` or a tensor: yes)."""
    return not isinstance(length, int) or length * 2**bits <= 2**53


def running_sum_word_values(starts, seed, bits):
    """int32 `[B, T]`: a uniform value in `[0, 2**bits)` per word, shared by its pieces.

    Each word start draws `u` uniform in `[0, M)` (`M = 2**bits`); a
    token's value is the running sum of the draws at the starts up to it,
    mod `M`, so every piece of a word has its word's value. Successive
    words' values `X_w = X_(w-1) + u_w mod M` are independent and uniform
    (the map from the `u` to the `X` is a bijection of `Z_M^n`). The running
    sums are `row_lists.row_counts`' matrix products, in float32 where its
    integers hold every sum, else float64: no per-token gather from a
    per-word draw.
    """
    field = 2**bits - 1
    draws = random_bits.uniform_bits(tf.shape(starts), seed, 16 if bits <= 16 else 32)
    # float32 where the static width keeps every sum below 2**24, else
    # float64: both exact, so the values do not depend on the choice. In
    # float32 the draws are kept at the starts by a float32 product
    # (several times cheaper than a uint16 select on a CPU).
    width = starts.shape[1]
    in_float32 = isinstance(width, int) and width * 2**bits <= 2**24
    float_dtype = tf.float32 if in_float32 else tf.float64
    draws = tf.bitwise.bitwise_and(draws, field)
    if in_float32:
        word_draws = tf.cast(draws, float_dtype) * tf.cast(starts, float_dtype)
    else:
        word_draws = tf.where(starts, draws, tf.zeros([], draws.dtype))
    sums = row_lists.row_counts(word_draws, float_dtype)
    return tf.cast(tf.bitwise.bitwise_and(sums, field), tf.int32)


def bernoulli_words_by_running_sums(eligible, starts, mask_rate, seed):
    """Selects each word, whole, with probability `mask_rate`, without a gather:
    a word is selected when its `running_sum_word_values` value (12 bits)
    is below `round(mask_rate * 2**12)`."""
    threshold = random_bits.thresholds_for([mask_rate], RUNNING_SUM_BITS)[0]
    values = running_sum_word_values(starts, seed, RUNNING_SUM_BITS)
    return tf.logical_and(eligible, values < threshold)


# Bits of the word keys of whole-word exact selection and the cap: two words
# share a key with chance 2**-24 a pair; `fill_budget` then takes or drops
# them together.
WORD_KEY_BITS = 24


def running_sum_keys_apply(length):
    """Whether `running_sum_word_values` keys rows of `length`: a width
    whose float64 running sums of 24-bit draws stay exact (one known only
    at run time is taken to: 2**29 tokens a row)."""
    return _sums_exact(length, WORD_KEY_BITS)


def span_lengths(shape, seed, span_length_p, max_span_length):
    """int32 span lengths in words, one per element of `shape`.

    Geometric(`span_length_p`) on `1, 2, ...` restricted to
    `[1, max_span_length]` (SpanBERT's law: `P(l)` proportional to
    `p * (1 - p) ** (l - 1)`): one 32-bit draw `u` per span, and the
    length is 1 plus the number of `l` in `[1, max_span_length)` with
    `u < 2**32 * P(length > l)`. Integer comparisons only, so XLA and
    plain TensorFlow draw the same lengths.
    """
    if max_span_length == 1 or span_length_p >= 1.0:
        return tf.ones(shape, tf.int32)
    q = 1.0 - span_length_p
    total = 1.0 - q**max_span_length
    draws = random_bits.uniform_bits(shape, seed, 32)
    lengths = tf.ones(shape, tf.int32)
    for length in range(1, max_span_length):
        longer = (q**length - q**max_span_length) / total  # P(length > l)
        threshold = tf.constant(min(int(round(longer * 2**32)), 2**32 - 1), tf.uint32)
        lengths += tf.cast(draws < threshold, tf.int32)
    return lengths


def offset_bits(max_span_length):
    """Bits of a word's offset in its span: `covering_keys`' low bits."""
    return max(max_span_length - 1, 1).bit_length()


def covering_keys(priorities, lengths, max_span_length):
    """int32 `[W, B]`: per word, the ordering key of the first span covering it.

    Word-major: `priorities` and `lengths` are `[W + max_span_length - 1,
    B]`, row `max_span_length - 1 + k` holding the span that starts at word
    `k` (the leading rows are padding and reach no word). The span's key is
    its priority (uniform below `2**(31 - offset_bits)`); it covers words
    `k .. k + length - 1`, and spans are added in ascending key order. A
    word's key is `span_key * 2**offset_bits + offset`, the offset of the
    word in that span, so sorting words by key lists them span by span,
    each span's new words left to right. Every word is covered by its own
    span at least. Two spans share a key with chance `2**-(31 -
    offset_bits)` a pair (`2**-27` for spans of up to 16 words): their words
    are then taken or dropped together. Shifting by words is slicing rows,
    which shares memory when a row is 64-byte aligned (B a multiple of
    16): each of the `max_span_length` offsets costs four elementwise
    passes, O(B * W * max_span_length), and no copy.
    """
    reach = max_span_length - 1
    width = tf.shape(priorities)[0] - reach
    first_keys = tf.bitwise.left_shift(priorities, offset_bits(max_span_length))
    best = first_keys[reach:]  # every word is its own span's offset 0
    for offset in range(1, max_span_length):
        start = reach - offset  # spans starting `offset` words before
        keys, spans = first_keys[start : start + width], lengths[start : start + width]
        best = tf.minimum(best, tf.where(spans > offset, keys + offset, INT32_MAX))
    return best


def span_words(
    eligible, word_index, mask_rate, seed, span_length_p=0.2, max_span_length=10,
    max_predictions=None,
):
    """SpanBERT's span masking, in whole words, within a token budget.

    Spans start at word starts chosen uniformly in random order, each
    `span_lengths` words long, and are added until the next would exceed
    `round(mask_rate * eligible tokens)` tokens (or `max_predictions`); the
    span at the edge keeps the leading words that still fit. A span counts
    words, not tokens, and skips over any ineligible token in its way
    (which stays unselected). At least one word when any is eligible and
    it fits `max_predictions`. `max_span_length=1` is whole-word exact
    selection.

    Args:
        eligible: bool `[B, T]`.
        word_index: int32 `[B, T]` from `word_indices`.
        mask_rate: Python float in `(0, 1]`.
        seed: shape-`[2]` integer seed.
        span_length_p: geometric parameter in `(0, 1]`.
        max_span_length: int >= 1, the longest span in words.
        max_predictions: `None` or an int cap on selected tokens per row.
    """
    priority_seed, length_seed = seeds.split_seed(seed, 2)
    # Word-major draws, `max_span_length - 1` leading rows of padding spans.
    batch_size, width = tf.unstack(tf.shape(eligible))
    padding = max_span_length - 1
    shift = tf.constant(1 + offset_bits(max_span_length), tf.uint32)
    draws = random_bits.uniform_bits([width + padding, batch_size], priority_seed, 32)
    priorities = tf.bitcast(tf.bitwise.right_shift(draws, shift), tf.int32)
    lengths = span_lengths([width, batch_size], length_seed, span_length_p, max_span_length)
    lengths = tf.pad(lengths, [[padding, 0], [0, 0]])  # padding spans reach no word
    word_keys = covering_keys(priorities, lengths, max_span_length)
    token_keys = spread_word_major(word_keys, word_index)
    bound = budget_fill.budget_bound(_width(eligible), mask_rate, max_predictions)
    budget = budget_fill.word_budget(eligible, mask_rate, max_predictions)
    key_bound = 2**31  # covering_keys' int32
    return budget_fill.fill_budget(
        eligible, token_keys, budget, bound, key_bound, cap=max_predictions
    )


def _width(tokens):
    """The rows' length: a Python int when static (static bounds for XLA),
    else a scalar tensor."""
    return tokens.shape[1] if tokens.shape[1] is not None else tf.shape(tokens)[1]


def _priority_key_bound(length):
    """Above every `priority * length + position` key of 32-bit priorities."""
    if isinstance(length, int):
        return 2**32 * length
    return tf.constant(2**32, tf.int64) * tf.cast(length, tf.int64)


def exact_words(eligible, word_index, mask_rate, seed, max_predictions=None):
    """Whole words in random order while within `round(mask_rate * eligible)`.

    At least one word when any is eligible (and it fits `max_predictions`).
    """
    return span_words(
        eligible, word_index, mask_rate, seed, max_span_length=1, max_predictions=max_predictions
    )


def exact_words_by_running_sums(eligible, starts, mask_rate, seed, max_predictions=None):
    """`exact_words` keyed by `running_sum_word_values`: no word numbering
    and no gather from word space (`running_sum_keys_apply` widths)."""
    return budget_fill.fill_budget(
        eligible,
        running_sum_word_values(starts, seed, WORD_KEY_BITS),
        budget_fill.word_budget(eligible, mask_rate, max_predictions),
        budget_fill.budget_bound(_width(eligible), mask_rate, max_predictions),
        2**WORD_KEY_BITS,
        cap=max_predictions,
    )


def cap_words(selected, word_index, max_predictions, seed, starts=None):
    """Keeps whole selected words, in random order, within `max_predictions`.

    Runs only when some row selected more tokens than the cap; no word is
    cut, so a row may keep fewer than `max_predictions` tokens. Given the
    word `starts` (and no `word_index`), the words are ordered by
    `running_sum_word_values`.
    """
    counts = tf.reduce_sum(tf.cast(selected, tf.int32), axis=1)

    def capped():
        if word_index is None:
            keys = running_sum_word_values(starts, seed, WORD_KEY_BITS)
            key_bound = 2**WORD_KEY_BITS
        else:
            priorities = random_bits.uniform_bits(tf.shape(selected), seed, 32)
            width = tf.shape(selected, out_type=tf.int64)[1]
            keys = tf.cast(priorities, tf.int64) * width + tf.range(width)[None, :]
            keys = spread_to_tokens(keys, word_index)
            key_bound = _priority_key_bound(_width(selected))
        return budget_fill.fill_budget(
            selected,
            keys,
            tf.minimum(counts, max_predictions),
            max_predictions,
            key_bound,
            at_least_one=False,
        )

    return tf.cond(tf.reduce_any(counts > max_predictions), capped, lambda: selected)


def select_words(
    token_ids, eligible, seed, granularity, selection_mode, mask_rate, word_starts=None,
    word_ids=None, span_length_p=0.2, max_span_length=10, max_predictions=None,
):
    """`selected` bool `[B, T]` at `"word"` or `"span"` granularity.

    Word boundaries come from `word_ids` (`[B, T]`, negative: no word) when
    given, else from the id-level `word_starts` table.

    Args:
        token_ids, eligible: int `[B, T]` ids, bool `[B, T]`.
        seed: shape-`[2]` integer seed.
        granularity, selection_mode: `"word"` / `"span"`, `"bernoulli"` / `"exact"`.
        mask_rate: Python float in `(0, 1]` (or a scheduled float tensor).
        word_starts, word_ids: a bool `[vocabulary_size]` table, int `[B, T]`.
        span_length_p, max_span_length: the span length law.
        max_predictions: `None` or an int cap on selected tokens per row.
    """
    if word_ids is not None:
        eligible, starts = starts_from_word_ids(word_ids, eligible)
    else:
        starts = starts_from_table(token_ids, eligible, word_starts)
    if granularity == "word" and selection_mode == "bernoulli":
        if running_sums_apply(mask_rate, eligible.shape[1]):
            if max_predictions is None:
                return bernoulli_words_by_running_sums(eligible, starts, mask_rate, seed)
            selection_seed, cap_seed = seeds.split_seed(seed, 2)
            selected = bernoulli_words_by_running_sums(eligible, starts, mask_rate, selection_seed)
            return cap_words(selected, None, max_predictions, cap_seed, starts=starts)
    if granularity == "word" and selection_mode == "exact":
        if running_sum_keys_apply(eligible.shape[1]):
            return exact_words_by_running_sums(eligible, starts, mask_rate, seed, max_predictions)
    word_index = word_indices(starts)
    if granularity == "span":
        return span_words(
            eligible, word_index, mask_rate, seed, span_length_p, max_span_length, max_predictions
        )
    if selection_mode == "exact":
        return exact_words(eligible, word_index, mask_rate, seed, max_predictions)
    selection_seed, cap_seed = seeds.split_seed(seed, 2)
    selected = bernoulli_words(eligible, word_index, mask_rate, selection_seed)
    if max_predictions is not None:
        selected = cap_words(selected, word_index, max_predictions, cap_seed)
    return selected
