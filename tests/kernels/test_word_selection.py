"""Whole-word and span selection kernels: invariants exactly, laws statistically."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask.kernels import word_selection
from distribution_bounds import chi2_critical
from distribution_bounds import chi_square
from distribution_bounds import normal_upper_quantile

VOCAB = 200
SPECIALS = (0, 1, 2, 3)  # pad, [CLS], [SEP], [MASK]
Z = normal_upper_quantile(1e-6)


def continuation_table(fraction, seed=0):
    """A word-start table: ids below 4 start words; a `fraction` of the rest continue."""
    rng = np.random.default_rng(seed)
    table = rng.random(VOCAB) >= fraction
    table[list(SPECIALS)] = True
    return table


def random_batch(rows, length, seed=0, pad_from=None):
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, VOCAB, size=(rows, length))
    ids[:, 0] = 1
    ids[rng.random((rows, length)) < 0.03] = 2  # separators inside rows
    if pad_from is not None:
        ids[:, pad_from:] = 0
    return ids.astype(np.int32)


def reference_words(ids, table):
    """Word number per token (-1: no word) by a plain Python walk."""
    words = np.full(ids.shape, -1)
    for b in range(ids.shape[0]):
        current, previous_eligible = -1, False
        for t, token in enumerate(ids[b]):
            if token in SPECIALS:
                previous_eligible = False
                continue
            if table[token] or not previous_eligible:
                current += 1
            words[b, t] = current
            previous_eligible = True
    return words


def assert_whole_words(selected, words):
    selected = np.asarray(selected)
    assert not selected[words < 0].any(), "a token of no word was selected"
    for b in range(words.shape[0]):
        for w in np.unique(words[b][words[b] >= 0]):
            pieces = selected[b][words[b] == w]
            assert pieces.all() or not pieces.any(), f"row {b}: word {w} cut"


def select(ids, table, granularity, mode, rate, seed=(1, 2), **kwargs):
    ids = tf.constant(ids)
    eligible = ids > 3
    return word_selection.select_words(
        ids, eligible, tf.constant(seed), granularity, mode, rate,
        word_starts=tf.constant(table), **kwargs,
    ).numpy()


def test_word_indices_match_a_python_walk():
    table = continuation_table(0.4)
    ids = random_batch(6, 40, pad_from=33)
    eligible = tf.constant(ids > 3)
    starts = word_selection.starts_from_table(tf.constant(ids), eligible, tf.constant(table))
    index = word_selection.word_indices(starts).numpy()
    words = reference_words(ids, table)
    np.testing.assert_array_equal(np.where(words >= 0, index, -1), words)


def test_specials_end_a_word_and_continuations_after_them_start_one():
    table = np.ones(VOCAB, bool)
    table[[50, 51]] = False  # continuation pieces
    ids = tf.constant([[1, 50, 10, 51, 2, 51, 3, 50, 0]])
    starts = word_selection.starts_from_table(ids, ids > 3, tf.constant(table))
    np.testing.assert_array_equal(starts[0], [0, 1, 1, 0, 0, 1, 0, 1, 0])


def test_word_ids_give_starts_and_negative_ids_are_no_word():
    word_ids = tf.constant([[-1, 0, 0, 1, 1, 1, -1, 2, 2, -1]])
    eligible = tf.ones([1, 10], tf.bool)
    eligible_out, starts = word_selection.starts_from_word_ids(word_ids, eligible)
    np.testing.assert_array_equal(eligible_out[0], word_ids[0] >= 0)
    np.testing.assert_array_equal(starts[0], [0, 1, 0, 1, 0, 0, 0, 1, 0, 0])


@pytest.mark.parametrize(
    "granularity, mode, kwargs",
    [
        ("word", "bernoulli", {}),
        ("word", "exact", {}),
        ("span", "exact", {}),
        ("word", "bernoulli", {"max_predictions": 5}),
        ("word", "exact", {"max_predictions": 5}),
        ("span", "exact", {"max_predictions": 5}),
    ],
)
@pytest.mark.parametrize("jit_compile", [False, True])
def test_words_are_selected_whole_and_specials_never(granularity, mode, kwargs, jit_compile):
    table = continuation_table(0.5)
    ids = random_batch(32, 48, pad_from=40)
    words = reference_words(ids, table)

    def run(ids, seed):
        return word_selection.select_words(
            ids, ids > 3, seed, granularity, mode, 0.3,
            word_starts=tf.constant(table), **kwargs,
        )

    fn = tf.function(run, jit_compile=jit_compile)
    selected = fn(tf.constant(ids), tf.constant([4, 5])).numpy()
    assert_whole_words(selected, words)
    assert selected.any()
    if "max_predictions" in kwargs:
        assert selected.sum(axis=1).max() <= kwargs["max_predictions"]


@pytest.mark.parametrize("granularity", ["word", "span"])
def test_xla_gives_the_same_selection(granularity):
    table = continuation_table(0.3)
    ids = tf.constant(random_batch(16, 64))
    mode = "exact" if granularity == "span" else "bernoulli"

    def run(ids, seed):
        return word_selection.select_words(
            ids, ids > 3, seed, granularity, mode, 0.2, word_starts=tf.constant(table)
        )

    seed = tf.constant([9, 9])
    plain = tf.function(run)(ids, seed).numpy()
    compiled = tf.function(run, jit_compile=True)(ids, seed).numpy()
    np.testing.assert_array_equal(plain, compiled)


def first_pieces(words):
    """bool: True at the first piece of each word (`reference_words` numbering)."""
    firsts = np.zeros_like(words, bool)
    firsts[:, 1:] = (words[:, 1:] >= 0) & (words[:, 1:] != words[:, :-1])
    firsts[:, 0] = words[:, 0] >= 0
    return firsts


def test_bernoulli_selects_each_word_at_mask_rate():
    table = continuation_table(0.5)
    ids = random_batch(400, 64)
    words = reference_words(ids, table)
    selected = select(ids, table, "word", "bernoulli", 0.15)
    assert_whole_words(selected, words)
    # One trial per word: its first piece.
    firsts = first_pieces(words)
    n, hits = firsts.sum(), selected[firsts].sum()
    sigma = math.sqrt(n * 0.15 * 0.85)
    assert abs(hits - 0.15 * n) < Z * sigma


@pytest.mark.parametrize("granularity", ["word", "span"])
def test_exact_and_span_fill_the_token_budget_without_exceeding_it(granularity):
    table = continuation_table(0.5)
    ids = random_batch(64, 80, pad_from=70)
    words = reference_words(ids, table)
    eligible = words >= 0
    budget = np.maximum(np.round(0.2 * eligible.sum(1)), 1)
    longest = max(np.bincount(row[row >= 0]).max() for row in words)
    selected = select(ids, table, granularity, "exact", 0.2)
    assert_whole_words(selected, words)
    counts = selected.sum(1)
    assert (counts <= budget).all()
    assert (counts > budget - longest).all()


def test_single_token_words_fill_the_budget_exactly():
    table = np.ones(VOCAB, bool)
    ids = random_batch(32, 100)
    eligible = ids > 3
    budget = np.maximum(np.round(0.15 * eligible.sum(1)), 1)
    for granularity in ("word", "span"):
        counts = select(ids, table, granularity, "exact", 0.15).sum(1)
        np.testing.assert_array_equal(counts, budget)


def test_at_least_one_word_even_when_the_only_word_exceeds_the_budget():
    table = np.zeros(VOCAB, bool)  # everything continues: one word per run
    ids = np.array([[1, 10, 11, 12, 13, 14, 2, 0, 0]], np.int32)
    for granularity in ("word", "span"):
        selected = select(ids, table, granularity, "exact", 0.1)
        np.testing.assert_array_equal(selected[0], [0, 1, 1, 1, 1, 1, 0, 0, 0])
    # ... unless it is longer than max_predictions: the cap never cuts a word.
    capped = select(ids, table, "word", "exact", 0.1, max_predictions=3)
    assert not capped.any()


def test_exact_picks_words_uniformly():
    # Words of one token: each of n positions is selected with chance k / n.
    table = np.ones(VOCAB, bool)
    rows, length = 2000, 20
    ids = np.random.default_rng(3).integers(4, VOCAB, (rows, length)).astype(np.int32)
    selected = select(ids, table, "word", "exact", 0.25)
    observed = selected.sum(0)
    expected = np.full(length, rows * 5 / 20)
    assert chi_square(observed, expected) < chi2_critical(length - 1)


def test_span_lengths_follow_the_truncated_geometric_law():
    p, longest, n = 0.2, 10, 200_000
    lengths = word_selection.span_lengths([n], tf.constant([3, 4]), p, longest).numpy()
    assert lengths.min() >= 1 and lengths.max() <= longest
    law = np.array([p * (1 - p) ** (l - 1) for l in range(1, longest + 1)])
    law /= law.sum()
    observed = np.bincount(lengths, minlength=longest + 1)[1:]
    assert chi_square(observed, n * law) < chi2_critical(longest - 1)
    assert abs(lengths.mean() - 3.797) < 0.03  # SpanBERT's mean span, 3.8 words


@pytest.mark.parametrize("p, longest", [(0.3, 4), (0.5, 20)])
def test_span_lengths_law_and_xla_for_other_laws(p, longest):
    n = 200_000
    law = np.array([p * (1 - p) ** (l - 1) for l in range(1, longest + 1)])
    law /= law.sum()

    def draw(seed):
        return word_selection.span_lengths([n], seed, p, longest)

    seed = tf.constant([11, -12], tf.int64)
    lengths = tf.function(draw)(seed).numpy()
    np.testing.assert_array_equal(lengths, tf.function(draw, jit_compile=True)(seed).numpy())
    observed = np.bincount(lengths, minlength=longest + 1)[1:]
    expected = n * law
    kept = expected >= 5  # chi-square cells with enough expected counts
    rest = [observed[~kept].sum()] if (~kept).any() else []
    cells = np.concatenate([observed[kept], rest])
    means = np.concatenate([expected[kept], [expected[~kept].sum()] if (~kept).any() else []])
    assert chi_square(cells, means) < chi2_critical(len(cells) - 1)


def test_spans_are_runs_of_whole_words_with_the_law_of_lengths():
    # Long rows of one-token words at a low rate: spans rarely touch, so the
    # selected runs' lengths follow the span-length law (the budget's last,
    # cut span and the merged ones aside: a loose bound on the mean).
    table = np.ones(VOCAB, bool)
    ids = np.random.default_rng(5).integers(4, VOCAB, (200, 1000)).astype(np.int32)
    selected = select(ids, table, "span", "exact", 0.04, seed=(7, 8))
    edges = np.diff(np.pad(selected.astype(np.int8), [(0, 0), (1, 1)]), axis=1)
    runs = np.nonzero(edges == -1)[1] - np.nonzero(edges == 1)[1]
    assert 3.3 < runs.mean() < 4.4
    assert runs.max() <= 2 * 10


def test_span_with_word_pieces_keeps_whole_words():
    table = continuation_table(0.6)
    ids = random_batch(64, 120)
    words = reference_words(ids, table)
    selected = select(ids, table, "span", "exact", 0.15, span_length_p=0.3, max_span_length=4)
    assert_whole_words(selected, words)


def test_long_rows_fit_in_memory():
    table = continuation_table(0.3)
    ids = tf.constant(np.random.default_rng(0).integers(4, VOCAB, (2, 32768)).astype(np.int32))
    for granularity, mode in (("word", "bernoulli"), ("word", "exact"), ("span", "exact")):
        selected = word_selection.select_words(
            ids, ids > 3, tf.constant([1, 1]), granularity, mode, 0.15,
            word_starts=tf.constant(table),
        )
        fraction = float(tf.reduce_mean(tf.cast(selected, tf.float32)))
        assert 0.12 < fraction < 0.18


@pytest.mark.parametrize("granularity, mode", [("word", "bernoulli"), ("word", "exact"), ("span", "exact")])
def test_a_tensor_rate_compiles_and_keeps_whole_words(granularity, mode):
    table = continuation_table(0.4)
    ids = random_batch(200, 40)
    words = reference_words(ids, table)

    @tf.function(jit_compile=True)
    def run(ids, rate):
        return word_selection.select_words(
            ids, ids > 3, tf.constant([2, 3]), granularity, mode, rate,
            word_starts=tf.constant(table),
        )

    selected = run(tf.constant(ids), tf.constant(0.3)).numpy()
    assert_whole_words(selected, words)
    share = selected.sum() / (words >= 0).sum()
    assert 0.25 < share < 0.35


def test_running_sum_draws_select_words_independently():
    # Bernoulli words draw by running sums (no gather): words next to each
    # other must be selected independently, not only at the right rate.
    table = continuation_table(0.5)
    ids = random_batch(400, 64)
    assert word_selection.running_sums_apply(0.3, 64)
    words = reference_words(ids, table)
    selected = select(ids, table, "word", "bernoulli", 0.3)
    assert_whole_words(selected, words)
    firsts = first_pieces(words)
    pairs = both = 0
    for row, starts in zip(selected, firsts):
        chosen = row[starts]
        pairs += len(chosen) - 1
        both += int(np.sum(chosen[1:] & chosen[:-1]))
    # Independent words: each consecutive pair is selected together w.p. 0.09.
    sigma = math.sqrt(pairs * 0.09 * 0.91)
    assert abs(both - 0.09 * pairs) < Z * sigma


@pytest.mark.parametrize("rate, length, running_sums", [(0.003, 64, False), (0.3, 5000, True)])
def test_imprecise_rates_take_the_word_space_path_and_long_rows_keep_running_sums(
    rate, length, running_sums
):
    # 12-bit thresholds cannot realise 0.003; a row of 5000 tokens is past
    # float32's exact sums but within float64's. Either way, whole words.
    assert word_selection.running_sums_apply(rate, length) == running_sums
    table = continuation_table(0.5)
    ids = random_batch(4, length)
    selected = select(ids, table, "word", "bernoulli", rate)
    assert_whole_words(selected, reference_words(ids, table))


def test_running_sum_keys_are_shared_by_pieces_and_independent_across_words():
    table = continuation_table(0.5)
    ids = random_batch(400, 64)
    eligible = tf.constant(ids > 3)
    starts = word_selection.starts_from_table(tf.constant(ids), eligible, tf.constant(table))
    keys = word_selection.running_sum_word_values(starts, tf.constant([5, -7]), 24).numpy()
    assert keys.dtype == np.int32 and keys.min() >= 0 and keys.max() < 2**24
    words = reference_words(ids, table)
    firsts = first_pieces(words)
    for b in range(ids.shape[0]):
        for w in np.unique(words[b][words[b] >= 0]):
            assert len(set(keys[b][words[b] == w])) == 1
    # Uniform 24-bit keys: the top 4 bits of each word's key, and the pairs
    # of consecutive words' top 2 bits, are uniform.
    word_keys = [row[starts] for row, starts in zip(keys, firsts)]
    flat = np.concatenate(word_keys)
    observed = np.bincount(flat >> 20, minlength=16)
    assert chi_square(observed, np.full(16, len(flat) / 16)) < chi2_critical(15)
    pairs = np.concatenate([(k[:-1] >> 22) * 4 + (k[1:] >> 22) for k in word_keys])
    observed = np.bincount(pairs, minlength=16)
    assert chi_square(observed, np.full(16, len(pairs) / 16)) < chi2_critical(15)


@pytest.mark.parametrize("mode", ["exact", "bernoulli"])
def test_running_sum_paths_compile_alike_and_keep_whole_words_within_a_cap(mode):
    table = continuation_table(0.3)
    ids = tf.constant(random_batch(16, 64, pad_from=50))
    assert word_selection.running_sum_keys_apply(64)

    def run(ids, seed):
        return word_selection.select_words(
            ids, ids > 3, seed, "word", mode, 0.25, word_starts=tf.constant(table),
            max_predictions=6,
        )

    seed = tf.constant([-3, 2**40], tf.int64)  # outside [0, 2**32): see random_bits.philox_seed
    plain = tf.function(run)(ids, seed).numpy()
    compiled = tf.function(run, jit_compile=True)(ids, seed).numpy()
    np.testing.assert_array_equal(plain, compiled)
    assert plain.sum(axis=1).max() <= 6 and plain.sum(axis=1).min() >= 1
    assert_whole_words(plain, reference_words(ids.numpy(), table))
