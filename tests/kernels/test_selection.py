"""Tests of `keras_dynmask.kernels.selection`: which positions get selected.

Each kernel is checked against an independent NumPy reference or against
the invariants its docstring promises. Random outputs are never compared
with hard-coded values: only with properties that any correct draw has, or
with distributional bounds (5 sigma, Bonferroni-corrected) at fixed seeds.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from distribution_bounds import chi2_critical, chi_square, normal_upper_quantile
from mlm_reference import expected_exact_count
from keras_dynmask.kernels import random_bits
from keras_dynmask.kernels import selection

DTYPES = [tf.int32, tf.int64]


def seed(a, b=0):
    return tf.constant([a, b], tf.int64)


# contiguous_runs


@pytest.mark.parametrize(
    "ids, runs",
    [
        ([], []),
        ([7], [(7, 7)]),
        ([0, 1, 2], [(0, 2)]),
        ([0, 1, 2, 5, 7, 8], [(0, 2), (5, 5), (7, 8)]),
        ([0, 100, 101, 102, 103, 30521], [(0, 0), (100, 103), (30521, 30521)]),
    ],
)
def test_contiguous_runs_examples(ids, runs):
    assert selection.contiguous_runs(ids) == runs


@settings(deadline=None, max_examples=100)
@given(st.sets(st.integers(0, 200), max_size=40))
def test_contiguous_runs_partition_sorted_ids(ids):
    ids = sorted(ids)
    runs = selection.contiguous_runs(ids)
    covered = []
    for first, last in runs:
        assert first <= last
        covered.extend(range(first, last + 1))
    assert covered == ids
    # Runs are maximal: consecutive runs leave a gap.
    for (_, last), (first, _) in zip(runs, runs[1:]):
        assert first >= last + 2


# eligible_tokens


def edge_ids(excluded, extra):
    """Ids at and around every run edge, plus `extra`."""
    ids = set(extra)
    for first, last in selection.contiguous_runs(sorted(excluded)):
        ids.update([first - 1, first, first + 1, last - 1, last, last + 1])
    return sorted(ids)


def eligible_reference(ids, excluded):
    return ~np.isin(ids, np.array(sorted(excluded), dtype=np.int64))


@settings(deadline=None, max_examples=60)
@given(
    excluded=st.sets(st.integers(0, 60), min_size=1, max_size=15),
    extra=st.lists(st.integers(-5, 70), max_size=20),
    dtype=st.sampled_from(DTYPES),
    rank=st.integers(1, 3),
)
def test_eligible_tokens_match_numpy(excluded, extra, dtype, rank):
    ids = np.array(edge_ids(excluded, extra), dtype=dtype.as_numpy_dtype)
    # Rank > 1: tile the ids into a block (the kernel is elementwise).
    shaped = np.stack([ids, ids[::-1]]) if rank >= 2 else ids
    if rank == 3:
        shaped = np.stack([shaped, shaped])
    got = selection.eligible_tokens(tf.constant(shaped), tuple(sorted(excluded)))
    assert got.dtype == tf.bool
    assert got.shape == shaped.shape
    np.testing.assert_array_equal(got.numpy(), eligible_reference(shaped, excluded))


@pytest.mark.parametrize("dtype", DTYPES)
def test_eligible_tokens_runs_at_vocabulary_edges(dtype):
    # BERT-like layout: a run at 0, a run in the middle, the last id alone.
    excluded = (0, 1, 2, 100, 101, 102, 103, 30521)
    ids = np.array(edge_ids(excluded, [30520, 30522, 50, 2**20]), dtype.as_numpy_dtype)
    ids = ids[ids >= 0]
    got = selection.eligible_tokens(tf.constant(ids), excluded).numpy()
    np.testing.assert_array_equal(got, eligible_reference(ids, excluded))


def test_eligible_tokens_int64_ids_beyond_32_bits():
    excluded = (5, 6, 7, 2**33, 2**33 + 1)
    ids = np.array(
        [5, 6, 7, 8, 4, 2**32 + 5, 2**32 + 6, 2**33 - 1, 2**33, 2**33 + 1, 2**33 + 2,
         2**40 + 6, -1, -(2**40)],
        np.int64,
    )
    got = selection.eligible_tokens(tf.constant(ids), excluded).numpy()
    np.testing.assert_array_equal(got, eligible_reference(ids, excluded))


def test_eligible_tokens_without_excluded_ids_allows_everything():
    got = selection.eligible_tokens(tf.constant([[0, 1, 2]]), ())
    assert got.dtype == tf.bool and bool(tf.reduce_all(got))


def test_eligible_tokens_respect_valid():
    ids = tf.constant([[0, 5, 6, 7], [5, 6, 0, 8]])
    valid = tf.constant([[True, True, False, True], [False, True, True, True]])
    got = selection.eligible_tokens(ids, [0], valid).numpy()
    np.testing.assert_array_equal(
        got, [[False, True, False, True], [False, True, False, True]]
    )


# bernoulli_tokens


def test_bernoulli_tokens_rate_and_shares():
    eligible = np.random.default_rng(1).random((500, 512)) < 0.9
    shares = (0.8, 0.1, 0.1)
    selected, outcomes = selection.bernoulli_tokens(
        tf.constant(eligible), 0.15, seed(2, 3), shares
    )
    selected = selected.numpy()
    assert not (selected & ~eligible).any()
    count, trials = int(selected.sum()), int(eligible.sum())
    assert abs(count - 0.15 * trials) <= 5 * math.sqrt(trials * 0.15 * 0.85)
    # The outcomes split the selected tokens into the shares.
    observed = [
        int((selected & random_bits.outcome_is(outcomes, i).numpy()).sum()) for i in range(3)
    ]
    assert sum(observed) == count
    assert chi_square(observed, np.array(shares) * count) < chi2_critical(2)


def test_bernoulli_tokens_is_a_function_of_the_seed():
    eligible = tf.ones([64, 64], tf.bool)
    first, _ = selection.bernoulli_tokens(eligible, 0.3, seed(4))
    again, _ = selection.bernoulli_tokens(eligible, 0.3, seed(4))
    other, _ = selection.bernoulli_tokens(eligible, 0.3, seed(5))
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert (first.numpy() != other.numpy()).any()


# exact_counts


@pytest.mark.parametrize("mask_rate", [0.15, 0.5, 0.3, 0.1, 0.001, 1.0, 0.7])
@pytest.mark.parametrize("max_predictions", [None, 1, 5])
def test_exact_counts_match_float64_round(mask_rate, max_predictions):
    counts = np.arange(0, 1001)
    got = selection.exact_counts(tf.constant(counts, tf.int32), mask_rate, max_predictions)
    assert got.dtype == tf.int32
    np.testing.assert_array_equal(
        got.numpy(), expected_exact_count(counts, mask_rate, max_predictions)
    )
    # The same, stated with Python's round (half to even) count by count.
    for n, k in zip(counts, got.numpy()):
        want = 0 if n == 0 else min(max(round(mask_rate * int(n)), 1), int(n))
        if max_predictions is not None:
            want = min(want, max_predictions)
        assert k == want, (n, k, want)


def test_exact_counts_of_190_at_015_is_28():
    # 0.15 * 190 = 28.5 rounds half to even: 28 (a float32 product gives 29).
    assert int(selection.exact_counts(tf.constant([190]), 0.15)[0]) == 28
    assert int(selection.exact_counts(tf.constant([190]), tf.constant(0.15, tf.float64))[0]) == 28


def test_exact_counts_round_half_to_even_and_at_least_one():
    counts = tf.constant([0, 1, 3, 5, 7, 2])
    # 0.5 * [0, 1, 3, 5, 7, 2] = [0, .5, 1.5, 2.5, 3.5, 1] -> half to even,
    # with at least one selection wherever a token is eligible.
    np.testing.assert_array_equal(
        selection.exact_counts(counts, 0.5, None).numpy(), [0, 1, 2, 2, 4, 1]
    )
    np.testing.assert_array_equal(
        selection.exact_counts(counts, 0.01, None).numpy(), [0, 1, 1, 1, 1, 1]
    )


# smallest_draws of fresh uniform draws: a uniformly random subset


def keep_random_subset(candidates, counts, key):
    """What `cap_selections` ranks with: `counts` candidates per row."""
    draws = random_bits.uniform_bits(tf.shape(candidates), key, 32)
    return selection.smallest_draws(candidates, draws, counts)


@settings(deadline=None, max_examples=40)
@given(
    batch=st.integers(1, 6),
    width=st.integers(0, 40),
    density=st.floats(0.0, 1.0),
    data=st.data(),
    key=st.integers(0, 2**31 - 1),
)
def test_random_subset_keeps_exactly_counts(batch, width, density, data, key):
    rng = np.random.default_rng(key)
    candidates = rng.random((batch, width)) < density
    available = candidates.sum(axis=1)
    counts = np.array(
        [data.draw(st.integers(0, int(a)), label="count") for a in available], np.int32
    )
    kept = keep_random_subset(
        tf.constant(candidates), tf.constant(counts), seed(key, 1)
    ).numpy()
    assert kept.shape == (batch, width)
    assert not (kept & ~candidates).any(), "kept a non-candidate"
    np.testing.assert_array_equal(kept.sum(axis=1), counts)


def test_random_subset_all_candidates_kept_when_count_is_all():
    candidates = np.zeros((64, 48), bool)
    candidates[:, 3:40] = True
    candidates[::2, 10:20] = False
    counts = candidates.sum(axis=1).astype(np.int32)
    kept = keep_random_subset(tf.constant(candidates), tf.constant(counts), seed(2)).numpy()
    np.testing.assert_array_equal(kept, candidates)


@pytest.mark.parametrize("shape", [(3, 0), (0, 5), (0, 0)])
def test_random_subset_empty_shapes(shape):
    kept = keep_random_subset(
        tf.zeros(shape, tf.bool), tf.zeros([shape[0]], tf.int32), seed(1)
    )
    assert kept.shape == shape and kept.dtype == tf.bool


def test_random_subset_rows_without_candidates_or_with_zero_counts():
    candidates = np.array([[False] * 6, [True] * 6, [True, False] * 3])
    kept = keep_random_subset(
        tf.constant(candidates), tf.constant([0, 0, 3]), seed(9)
    ).numpy()
    assert not kept[:2].any()
    np.testing.assert_array_equal(kept[2], candidates[2])


def assert_uniform_subset(kept, pattern, k):
    """Each row keeps `k` of the `pattern` positions, uniformly: marginal
    frequencies and pairwise co-occurrences (Bonferroni normal bounds)."""
    rows = kept.shape[0]
    n = int(pattern.sum())
    np.testing.assert_array_equal(kept.sum(axis=1), np.full(rows, k))
    frequency = kept.sum(axis=0)
    assert not frequency[~pattern].any()
    p = k / n
    z = normal_upper_quantile(1e-6 / (2 * n))
    deviation = np.abs(frequency[pattern] - rows * p)
    assert deviation.max() <= z * math.sqrt(rows * p * (1 - p)), frequency
    # Pairs: a uniform k-subset holds positions i != j together with chance
    # k (k - 1) / (n (n - 1)). A selection that favours neighbours (a
    # shifted block) or spreads them out has the right marginals only.
    on = kept[:, pattern].astype(np.int64)
    together = on.T @ on
    pairs = np.triu_indices(n, 1)
    q = k * (k - 1) / (n * (n - 1))
    z = normal_upper_quantile(1e-6 / (2 * len(pairs[0])))
    deviation = np.abs(together[pairs] - rows * q)
    assert deviation.max() <= z * math.sqrt(rows * q * (1 - q)), together


def test_random_subset_subset_is_uniform():
    rows, width, k = 20_000, 16, 5
    pattern = np.ones(width, bool)
    pattern[[0, 7, 15, 3]] = False  # 12 candidates per row
    candidates = np.tile(pattern, (rows, 1))
    kept = keep_random_subset(
        tf.constant(candidates), tf.fill([rows], k), seed(11, 12)
    ).numpy()
    assert_uniform_subset(kept, pattern, k)


def test_pairwise_check_catches_a_shifted_block():
    # The marginals of a random cyclic shift of a block are uniform; its pairs
    # are not. The check above must reject it.
    rows, n, k = 20_000, 12, 5
    shifts = np.random.default_rng(0).integers(0, n, size=rows)
    kept = ((np.arange(n)[None, :] - shifts[:, None]) % n) < k
    with pytest.raises(AssertionError):
        assert_uniform_subset(kept, np.ones(n, bool), k)


# cap_selections


@settings(deadline=None, max_examples=30)
@given(
    batch=st.integers(0, 6),
    width=st.integers(0, 30),
    density=st.floats(0.0, 1.0),
    cap=st.integers(1, 10),
    key=st.integers(0, 2**31 - 1),
)
def test_cap_selections_keeps_min_of_count_and_cap(batch, width, density, cap, key):
    selected = np.random.default_rng(key).random((batch, width)) < density
    kept = selection.cap_selections(tf.constant(selected), cap, seed(key, 2)).numpy()
    assert kept.shape == selected.shape
    assert not (kept & ~selected).any()
    counts = selected.sum(axis=1)
    np.testing.assert_array_equal(kept.sum(axis=1), np.minimum(counts, cap))
    # Rows within the cap are left exactly as they were.
    np.testing.assert_array_equal(kept[counts <= cap], selected[counts <= cap])


def test_cap_selections_keeps_a_uniform_subset():
    rows, width, cap = 20_000, 14, 4
    pattern = np.ones(width, bool)
    pattern[[2, 9]] = False
    kept = selection.cap_selections(
        tf.constant(np.tile(pattern, (rows, 1))), cap, seed(13, 14)
    ).numpy()
    assert_uniform_subset(kept, pattern, cap)


# smallest_draws and exact_tokens


def smallest_draws_reference(candidates, draws, counts):
    kept = np.zeros_like(candidates)
    for row in range(candidates.shape[0]):
        positions = np.flatnonzero(candidates[row])
        # Rank by the draw, then by position.
        order = sorted(positions, key=lambda j: (int(draws[row, j]), j))
        kept[row, order[: counts[row]]] = True
    return kept


@settings(deadline=None, max_examples=40)
@given(
    batch=st.integers(0, 6),
    width=st.integers(0, 30),
    density=st.floats(0.0, 1.0),
    draw_range=st.sampled_from([4, 64, 2**32]),
    data=st.data(),
    key=st.integers(0, 2**31 - 1),
)
def test_smallest_draws_matches_numpy(batch, width, density, draw_range, data, key):
    rng = np.random.default_rng(key)
    candidates = rng.random((batch, width)) < density
    # A small draw range forces ties, which positions must break.
    draws = rng.integers(0, draw_range, size=(batch, width), dtype=np.uint64).astype(
        np.uint32
    )
    counts = np.array(
        [data.draw(st.integers(0, int(a)), label="count") for a in candidates.sum(axis=1)],
        np.int32,
    )
    kept = selection.smallest_draws(
        tf.constant(candidates), tf.constant(draws), tf.constant(counts, tf.int32)
    ).numpy()
    np.testing.assert_array_equal(kept, smallest_draws_reference(candidates, draws, counts))


def exact_tokens_case(key, batch=16, width=64):
    rng = np.random.default_rng(key)
    eligible = rng.random((batch, width)) < rng.random((batch, 1))
    counts = expected_exact_count(eligible.sum(axis=1), 0.15, None).astype(np.int32)
    return tf.constant(eligible), tf.constant(counts)


@pytest.mark.parametrize("key", range(4))
def test_exact_tokens_keeps_exactly_counts_of_eligible(key):
    eligible, counts = exact_tokens_case(key)
    kept = selection.exact_tokens(eligible, counts, seed(key, 3)).numpy()
    assert not (kept & ~eligible.numpy()).any()
    np.testing.assert_array_equal(kept.sum(axis=1), counts.numpy())
    # Passing the eligible count changes nothing.
    given_count = selection.exact_tokens(
        eligible, counts, seed(key, 3), tf.reduce_sum(tf.cast(eligible, tf.int32), 1)
    ).numpy()
    np.testing.assert_array_equal(given_count, kept)


def force_exact_tokens_fallback(monkeypatch, sigmas=-1.0):
    """Shrinks the candidate margin so rows run short of candidates and the
    whole batch gets ranked; returns a list recording whether each call
    ranked every eligible token."""
    monkeypatch.setattr(selection, "CANDIDATE_MARGIN_SIGMAS", sigmas)
    monkeypatch.setattr(selection, "CANDIDATE_MARGIN_TOKENS", 0.0)
    ranked_all = []
    smallest_draws = selection.smallest_draws

    def spy(candidates, draws, counts):
        ranked_all.append(candidates)
        return smallest_draws(candidates, draws, counts)

    monkeypatch.setattr(selection, "smallest_draws", spy)
    return ranked_all


@pytest.mark.parametrize("sigmas", [-1.0, 0.0])
def test_exact_tokens_fallback_gives_the_same_subset(monkeypatch, sigmas):
    cases = [exact_tokens_case(key) for key in range(6)]
    fast = [selection.exact_tokens(e, c, seed(i, 4)).numpy() for i, (e, c) in enumerate(cases)]
    ranked = force_exact_tokens_fallback(monkeypatch, sigmas)
    slow = [selection.exact_tokens(e, c, seed(i, 4)).numpy() for i, (e, c) in enumerate(cases)]
    # Only the fallback ranks through `smallest_draws`, and always every
    # eligible token of the batch.
    assert 3 <= len(ranked) <= len(cases)
    assert all(any(np.array_equal(r.numpy(), e.numpy()) for e, _ in cases) for r in ranked)
    for (eligible, counts), a, b in zip(cases, fast, slow):
        np.testing.assert_array_equal(b.sum(axis=1), counts.numpy())
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fallback", [False, True])
def test_exact_tokens_subset_is_uniform(monkeypatch, fallback):
    if fallback:
        ranked = force_exact_tokens_fallback(monkeypatch)
    rows, width, k = 20_000, 16, 3
    pattern = np.ones(width, bool)
    pattern[[1, 8, 14]] = False  # 13 eligible per row
    eligible = tf.constant(np.tile(pattern, (rows, 1)))
    kept = selection.exact_tokens(eligible, tf.fill([rows], k), seed(17, 18)).numpy()
    if fallback:
        assert np.array_equal(ranked[0].numpy(), eligible.numpy())
    assert_uniform_subset(kept, pattern, k)


@pytest.mark.parametrize("shape", [(3, 0), (0, 5), (0, 0)])
def test_exact_tokens_empty_shapes(shape):
    kept = selection.exact_tokens(
        tf.zeros(shape, tf.bool), tf.zeros([shape[0]], tf.int32), seed(1)
    )
    assert kept.shape == shape and kept.dtype == tf.bool
