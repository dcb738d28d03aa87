"""Tests of the masked-LM kernels in `keras_dynmask.kernels.mlm_masking`.

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

from distribution_bounds import chi2_critical, normal_upper_quantile
from mlm_reference import expected_exact_count
from keras_dynmask.kernels import mlm_masking as K

DTYPES = [tf.int32, tf.int64]


def make_plan(**overrides):
    config = dict(
        vocabulary_size=50,
        mask_token_id=4,
        mask_rate=0.15,
        mask_token_rate=0.8,
        random_token_rate=0.1,
        special_token_ids=(1, 2, 3),
        pad_token_id=0,
        selection="bernoulli",
        max_predictions=None,
    )
    config.update(overrides)
    return K.MLMMaskingPlan.build(**config)


def seed(a, b=0):
    return tf.constant([a, b], tf.int64)




def relative_errors(probabilities, bits):
    """Relative error of each outcome's realised share of `bits`-bit values."""
    scale = 2**bits
    cumulative = np.cumsum(probabilities)
    thresholds = [int(round(float(c) * scale)) for c in cumulative]
    counts = np.diff([0] + thresholds)
    return [
        abs(count - p * scale) / (p * scale)
        for p, count in zip(probabilities, counts)
        if p > 0
    ]


# choose_thresholds


def test_choose_thresholds_uses_16_bits_for_bert_rates():
    probabilities = [0.15 * 0.8, 0.15 * 0.1, 0.15 * 0.1]
    bits, thresholds = K.choose_thresholds(probabilities)
    assert bits == 16
    assert len(thresholds) == 3
    for threshold, cumulative in zip(thresholds, np.cumsum(probabilities)):
        assert abs(threshold - cumulative * 2**16) <= 0.5 + 1e-9
    realised = np.diff([0] + thresholds) / 2**16
    np.testing.assert_allclose(realised, probabilities, rtol=1e-3)


@pytest.mark.parametrize(
    "probabilities",
    [
        # A tiny mask rate: 0.0003 * 2**16 = 19.66 rounds to 20 (1.7% off).
        [0.003 * 0.8, 0.003 * 0.1, 0.003 * 0.1],
        # 0.6 / 2**16 cannot be realised by 16-bit thresholds at all.
        [0.6 / 2**16 * 0.8, 0.6 / 2**16 * 0.1, 0.6 / 2**16 * 0.1],
        # A precise selection rate with an imprecise random share.
        [0.15 * 0.8, 0.15 * 0.003, 0.15 * 0.197],
    ],
)
def test_choose_thresholds_uses_32_bits_when_16_are_imprecise(probabilities):
    assert max(relative_errors(probabilities, 16)) > K.MAX_RELATIVE_QUANTIZATION_ERROR
    bits, thresholds = K.choose_thresholds(probabilities)
    assert bits == 32
    for threshold, cumulative in zip(thresholds, np.cumsum(probabilities)):
        assert abs(threshold - cumulative * 2**32) <= 0.5 + 1e-6
    assert max(relative_errors(probabilities, 32)) <= 1e-3


@settings(deadline=None, max_examples=200)
@given(
    st.lists(
        st.one_of(st.just(0.0), st.floats(1e-7, 1.0)), min_size=1, max_size=4
    )
)
def test_choose_thresholds_precision_and_fewest_bits(raw):
    total = sum(raw)
    probabilities = [p / total for p in raw] if total > 1 else raw
    bits, thresholds = K.choose_thresholds(probabilities)
    assert bits in (16, 32)
    assert len(thresholds) == len(probabilities)
    assert all(0 <= t <= 2**bits for t in thresholds)
    assert list(thresholds) == sorted(thresholds)
    for threshold, cumulative in zip(thresholds, np.cumsum(probabilities)):
        assert abs(threshold - cumulative * 2**bits) <= 0.5 + 1e-6
    sixteen_is_precise = (
        max(relative_errors(probabilities, 16), default=0.0)
        <= K.MAX_RELATIVE_QUANTIZATION_ERROR
    )
    # 16 bits exactly when they are precise enough.
    assert (bits == 16) == sixteen_is_precise


def test_choose_thresholds_certain_outcome_covers_every_value():
    for probabilities in ([0.8, 0.1, 0.1], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]):
        bits, thresholds = K.choose_thresholds(probabilities)
        assert thresholds[-1] == 2**bits
        values = tf.constant([0, 2**bits - 1], tf.uint16 if bits == 16 else tf.uint32)
        # `below` of the full range means "all values".
        assert K.below(values, thresholds[-1], bits) is None


def test_choose_thresholds_zero_probability_outcomes_are_empty():
    bits, thresholds = K.choose_thresholds([0.15, 0.0, 0.0])
    assert bits == 16
    assert thresholds[0] == thresholds[1] == thresholds[2] == round(0.15 * 2**16)
    bits, thresholds = K.choose_thresholds([0.0, 0.0, 0.15])
    assert thresholds[0] == thresholds[1] == 0


@pytest.mark.parametrize("bits", [16, 32])
def test_below(bits):
    dtype = tf.uint16 if bits == 16 else tf.uint32
    values = tf.constant([0, 1, 5, 6, 2**bits - 1], dtype)
    np.testing.assert_array_equal(
        K.below(values, 6, bits).numpy(), [True, True, True, False, False]
    )
    assert not K.below(values, 0, bits).numpy().any()
    assert K.below(values, 2**bits, bits) is None


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
    assert K.contiguous_runs(ids) == runs


@settings(deadline=None, max_examples=100)
@given(st.sets(st.integers(0, 200), max_size=40))
def test_contiguous_runs_partition_sorted_ids(ids):
    ids = sorted(ids)
    runs = K.contiguous_runs(ids)
    covered = []
    for first, last in runs:
        assert first <= last
        covered.extend(range(first, last + 1))
    assert covered == ids
    # Runs are maximal: consecutive runs leave a gap.
    for (_, last), (first, _) in zip(runs, runs[1:]):
        assert first >= last + 2


# eligible_mask


def edge_ids(excluded, extra):
    """Ids at and around every run edge, plus `extra`."""
    ids = set(extra)
    for first, last in K.contiguous_runs(sorted(excluded)):
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
def test_eligible_mask_matches_numpy(excluded, extra, dtype, rank):
    ids = np.array(edge_ids(excluded, extra), dtype=dtype.as_numpy_dtype)
    # Rank > 1: tile the ids into a block (the kernel is elementwise).
    shaped = np.stack([ids, ids[::-1]]) if rank >= 2 else ids
    if rank == 3:
        shaped = np.stack([shaped, shaped])
    got = K.eligible_mask(tf.constant(shaped), tuple(sorted(excluded)))
    assert got.dtype == tf.bool
    assert got.shape == shaped.shape
    np.testing.assert_array_equal(got.numpy(), eligible_reference(shaped, excluded))


@pytest.mark.parametrize("dtype", DTYPES)
def test_eligible_mask_runs_at_vocabulary_edges(dtype):
    # BERT-like layout: a run at 0, a run in the middle, the last id alone.
    excluded = (0, 1, 2, 100, 101, 102, 103, 30521)
    ids = np.array(edge_ids(excluded, [30520, 30522, 50, 2**20]), dtype.as_numpy_dtype)
    ids = ids[ids >= 0]
    got = K.eligible_mask(tf.constant(ids), excluded).numpy()
    np.testing.assert_array_equal(got, eligible_reference(ids, excluded))


def test_eligible_mask_int64_ids_beyond_32_bits():
    excluded = (5, 6, 7, 2**33, 2**33 + 1)
    ids = np.array(
        [5, 6, 7, 8, 4, 2**32 + 5, 2**32 + 6, 2**33 - 1, 2**33, 2**33 + 1, 2**33 + 2,
         2**40 + 6, -1, -(2**40)],
        np.int64,
    )
    got = K.eligible_mask(tf.constant(ids), excluded).numpy()
    np.testing.assert_array_equal(got, eligible_reference(ids, excluded))


def test_eligible_mask_without_excluded_ids_allows_everything():
    got = K.eligible_mask(tf.constant([[0, 1, 2]]), ())
    assert got is None or bool(tf.reduce_all(got))


# uniform_bits


@pytest.mark.parametrize("bits, dtype", [(16, tf.uint16), (32, tf.uint32)])
@pytest.mark.parametrize("shape", [[7], [3, 5], [0, 4], [2, 3, 3]])
def test_uniform_bits_shape_and_dtype(bits, dtype, shape):
    values = K.uniform_bits(tf.constant(shape), seed(1), bits)
    assert values.dtype == dtype
    assert values.shape == tuple(shape)


@pytest.mark.parametrize("bits", [16, 32])
def test_uniform_bits_are_uniform(bits):
    n = 200_001  # odd: the 16-bit path drops half of its last word
    values = K.uniform_bits(tf.constant([n]), seed(5, 6), bits).numpy().astype(np.int64)
    top = 2**bits
    assert values.min() >= 0 and values.max() < top
    # 16 equal bins over the full range: chi-square, df = 15.
    counts = np.bincount(values * 16 // top, minlength=16)
    expected = n / 16
    statistic = ((counts - expected) ** 2 / expected).sum()
    assert statistic < chi2_critical(15)
    # Purity: same seed, same values; another seed, other values.
    again = K.uniform_bits(tf.constant([n]), seed(5, 6), bits).numpy()
    other = K.uniform_bits(tf.constant([n]), seed(5, 7), bits).numpy()
    np.testing.assert_array_equal(values, again)
    assert (values != other).mean() > 0.99




# apply_actions


@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("dtype", DTYPES)
def test_apply_actions_threshold_semantics(bits, dtype):
    # The only replacement id is 5, so a random replacement is recognisable.
    plan = make_plan(vocabulary_size=6, special_token_ids=(1, 2, 3))
    assert plan.replacement_ids == (5,)
    m, r, s = 1000, 1500, 2000
    values = [0, 1, m - 1, m, m + 1, r - 1, r, s - 1, 0, m, r]
    selected = [True] * 8 + [False] * 3
    expected_action = ["mask"] * 3 + ["random"] * 3 + ["keep"] * 2 + ["none"] * 3
    value_dtype = tf.uint16 if bits == 16 else tf.uint32
    token_ids = tf.constant([2, 3] * 5 + [2], dtype)
    corrupted = K.apply_actions(
        token_ids,
        tf.constant(selected),
        tf.constant(values, value_dtype),
        bits,
        [m, r, s],
        seed(3),
        plan,
    )
    assert corrupted.dtype == dtype
    expected = [
        4 if action == "mask" else 5 if action == "random" else original
        for action, original in zip(expected_action, token_ids.numpy())
    ]
    np.testing.assert_array_equal(corrupted.numpy(), expected)


# exact_counts




def eligible_with_counts(counts, width):
    return tf.sequence_mask(tf.constant(counts), width)


@pytest.mark.parametrize("mask_rate", [0.15, 0.5, 0.3, 0.1, 0.001, 1.0, 0.7])
@pytest.mark.parametrize("max_predictions", [None, 1, 5])
def test_exact_counts_match_float32_round(mask_rate, max_predictions):
    counts = list(range(0, 201))
    eligible = eligible_with_counts(counts, 200).numpy()
    # Shuffle positions so counts do not depend on where tokens sit.
    eligible = tf.constant(np.random.default_rng(1).permuted(eligible, axis=1))
    got = K.exact_counts(eligible, mask_rate, max_predictions)
    assert got.dtype == tf.int32
    np.testing.assert_array_equal(
        got.numpy(), expected_exact_count(counts, mask_rate, max_predictions)
    )


def test_exact_counts_round_half_to_even_and_at_least_one():
    eligible = eligible_with_counts([0, 1, 3, 5, 7, 2], 8)
    # 0.5 * [0, 1, 3, 5, 7, 2] = [0, .5, 1.5, 2.5, 3.5, 1] -> half to even,
    # with at least one selection wherever a token is eligible.
    np.testing.assert_array_equal(
        K.exact_counts(eligible, 0.5, None).numpy(), [0, 1, 2, 2, 4, 1]
    )
    np.testing.assert_array_equal(
        K.exact_counts(eligible, 0.01, None).numpy(), [0, 1, 1, 1, 1, 1]
    )


# smallest_draws of fresh uniform draws: a uniformly random subset


def keep_random_subset(candidates, counts, key):
    """What `cap_selections` ranks with: `counts` candidates per row."""
    draws = K.uniform_bits(tf.shape(candidates), key, 32)
    return K.smallest_draws(candidates, draws, counts)


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


def test_random_subset_subset_is_uniform():
    rows, width, k = 20_000, 16, 5
    pattern = np.ones(width, bool)
    pattern[[0, 7, 15, 3]] = False  # 12 candidates per row
    n = int(pattern.sum())
    candidates = np.tile(pattern, (rows, 1))
    kept = keep_random_subset(
        tf.constant(candidates), tf.fill([rows], k), seed(11, 12)
    ).numpy()
    np.testing.assert_array_equal(kept.sum(axis=1), np.full(rows, k))
    frequency = kept.sum(axis=0)
    assert not frequency[~pattern].any()
    p = k / n
    z = normal_upper_quantile(1e-6 / (2 * n))
    bound = z * math.sqrt(rows * p * (1 - p))
    deviation = np.abs(frequency[pattern] - rows * p)
    assert deviation.max() <= bound, (frequency[pattern], rows * p, bound)


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
    kept = K.cap_selections(tf.constant(selected), cap, seed(key, 2)).numpy()
    assert kept.shape == selected.shape
    assert not (kept & ~selected).any()
    counts = selected.sum(axis=1)
    np.testing.assert_array_equal(kept.sum(axis=1), np.minimum(counts, cap))
    # Rows within the cap are left exactly as they were.
    np.testing.assert_array_equal(kept[counts <= cap], selected[counts <= cap])


# smallest_draws and exact_selection


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
    kept = K.smallest_draws(
        tf.constant(candidates), tf.constant(draws), tf.constant(counts, tf.int32)
    ).numpy()
    np.testing.assert_array_equal(kept, smallest_draws_reference(candidates, draws, counts))


def exact_selection_case(key, batch=16, width=64):
    rng = np.random.default_rng(key)
    eligible = rng.random((batch, width)) < rng.random((batch, 1))
    counts = expected_exact_count(eligible.sum(axis=1), 0.15, None).astype(np.int32)
    return tf.constant(eligible), tf.constant(counts)


@pytest.mark.parametrize("key", range(4))
def test_exact_selection_keeps_exactly_counts_of_eligible(key):
    eligible, counts = exact_selection_case(key)
    kept = K.exact_selection(eligible, counts, seed(key, 3)).numpy()
    assert not (kept & ~eligible.numpy()).any()
    np.testing.assert_array_equal(kept.sum(axis=1), counts.numpy())


def force_exact_selection_fallback(monkeypatch, sigmas=-1.0):
    """Shrinks the candidate margin so rows run short of candidates and the
    whole batch gets ranked; returns a list recording whether each call
    ranked every eligible token."""
    monkeypatch.setattr(K, "CANDIDATE_MARGIN_SIGMAS", sigmas)
    monkeypatch.setattr(K, "CANDIDATE_MARGIN_TOKENS", 0.0)
    ranked_all = []
    smallest_draws = K.smallest_draws

    def spy(candidates, draws, counts):
        ranked_all.append(candidates)
        return smallest_draws(candidates, draws, counts)

    monkeypatch.setattr(K, "smallest_draws", spy)
    return ranked_all


@pytest.mark.parametrize("sigmas", [-1.0, 0.0])
def test_exact_selection_fallback_gives_the_same_subset(monkeypatch, sigmas):
    cases = [exact_selection_case(key) for key in range(6)]
    fast = [K.exact_selection(e, c, seed(i, 4)).numpy() for i, (e, c) in enumerate(cases)]
    ranked = force_exact_selection_fallback(monkeypatch, sigmas)
    slow = [K.exact_selection(e, c, seed(i, 4)).numpy() for i, (e, c) in enumerate(cases)]
    fell_back = [
        np.array_equal(r.numpy(), e.numpy()) for r, (e, _) in zip(ranked, cases)
    ]
    assert len(ranked) == len(cases) and sum(fell_back) >= 3
    for (eligible, counts), a, b in zip(cases, fast, slow):
        np.testing.assert_array_equal(b.sum(axis=1), counts.numpy())
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fallback", [False, True])
def test_exact_selection_subset_is_uniform(monkeypatch, fallback):
    if fallback:
        ranked = force_exact_selection_fallback(monkeypatch)
    rows, width, k = 20_000, 16, 3
    pattern = np.ones(width, bool)
    pattern[[1, 8, 14]] = False  # 13 eligible per row
    n = int(pattern.sum())
    eligible = tf.constant(np.tile(pattern, (rows, 1)))
    kept = K.exact_selection(eligible, tf.fill([rows], k), seed(17, 18)).numpy()
    if fallback:
        assert np.array_equal(ranked[0].numpy(), eligible.numpy())
    np.testing.assert_array_equal(kept.sum(axis=1), np.full(rows, k))
    frequency = kept.sum(axis=0)
    assert not frequency[~pattern].any()
    p = k / n
    z = normal_upper_quantile(1e-6 / (2 * n))
    deviation = np.abs(frequency[pattern] - rows * p)
    assert deviation.max() <= z * math.sqrt(rows * p * (1 - p)), frequency


@pytest.mark.parametrize("shape", [(3, 0), (0, 5), (0, 0)])
def test_exact_selection_empty_shapes(shape):
    kept = K.exact_selection(tf.zeros(shape, tf.bool), tf.zeros([shape[0]], tf.int32), seed(1))
    assert kept.shape == shape and kept.dtype == tf.bool


# select_and_corrupt


def check_select_and_corrupt(token_ids, corrupted, selected, plan, valid=None):
    ids = token_ids.numpy()
    corrupted = corrupted.numpy()
    selected = selected.numpy()
    assert corrupted.shape == ids.shape and selected.shape == ids.shape
    assert selected.dtype == bool
    excluded = eligible_reference(ids, plan.excluded_ids)
    assert not (selected & ~excluded).any(), "selected an excluded id"
    if valid is not None:
        assert not (selected & ~valid).any(), "selected an invalid position"
    np.testing.assert_array_equal(corrupted[~selected], ids[~selected])
    changed = corrupted[selected]
    allowed = np.isin(changed, list(plan.replacement_ids)) | (
        changed == plan.mask_token_id
    ) | (changed == ids[selected])
    assert allowed.all()
    if plan.max_predictions is not None and selected.ndim == 2:
        assert selected.sum(axis=-1).max(initial=0) <= plan.max_predictions


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "selection, max_predictions", [("bernoulli", None), ("bernoulli", 4), ("exact", None), ("exact", 3)]
)
def test_select_and_corrupt_invariants(dtype, selection, max_predictions):
    plan = make_plan(mask_rate=0.3, selection=selection, max_predictions=max_predictions)
    rng = np.random.default_rng(0)
    ids = tf.constant(rng.integers(0, 50, size=(32, 40)), dtype)
    corrupted, selected = K.select_and_corrupt(ids, seed(1), plan)
    assert corrupted.dtype == dtype and selected.dtype == tf.bool
    check_select_and_corrupt(ids, corrupted, selected, plan)
    assert selected.numpy().any()
    if selection == "exact":
        eligible = eligible_reference(ids.numpy(), plan.excluded_ids)
        np.testing.assert_array_equal(
            selected.numpy().sum(axis=1),
            expected_exact_count(eligible.sum(axis=1), 0.3, max_predictions),
        )


@pytest.mark.parametrize("selection", ["bernoulli", "exact"])
def test_select_and_corrupt_is_a_function_of_inputs_and_seed(selection):
    plan = make_plan(mask_rate=0.3, selection=selection)
    ids = tf.constant(np.random.default_rng(1).integers(5, 50, size=(16, 64)), tf.int32)
    first = K.select_and_corrupt(ids, seed(4, 2), plan)
    again = K.select_and_corrupt(ids, seed(4, 2), plan)
    other = K.select_and_corrupt(ids, seed(4, 3), plan)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert (first[1].numpy() != other[1].numpy()).any()


@pytest.mark.parametrize(
    "selection, max_predictions", [("bernoulli", None), ("bernoulli", 2), ("exact", None), ("exact", 2)]
)
def test_select_and_corrupt_rows_with_nothing_eligible(selection, max_predictions):
    plan = make_plan(mask_rate=1.0, selection=selection, max_predictions=max_predictions)
    ids = tf.constant(
        [[1, 0, 0, 0], [4, 4, 2, 3], [1, 17, 2, 0], [0, 0, 0, 0]], tf.int32
    )
    corrupted, selected = K.select_and_corrupt(ids, seed(7), plan)
    np.testing.assert_array_equal(selected.numpy(), [[0] * 4, [0] * 4, [0, 1, 0, 0], [0] * 4])
    check_select_and_corrupt(ids, corrupted, selected, plan)


@pytest.mark.parametrize(
    "selection, max_predictions", [("bernoulli", None), ("bernoulli", 3), ("exact", None), ("exact", 3)]
)
@pytest.mark.parametrize("shape", [(3, 0), (0, 6), (0, 0)])
def test_select_and_corrupt_empty_shapes(selection, max_predictions, shape):
    plan = make_plan(selection=selection, max_predictions=max_predictions)
    ids = tf.zeros(shape, tf.int64)
    corrupted, selected = K.select_and_corrupt(ids, seed(1), plan)
    assert corrupted.shape == shape and corrupted.dtype == tf.int64
    assert selected.shape == shape and selected.dtype == tf.bool


def test_select_and_corrupt_plain_bernoulli_takes_any_rank():
    plan = make_plan(mask_rate=0.5)
    for shape in [(0,), (37,), (3, 4, 5)]:
        ids = tf.constant(np.random.default_rng(2).integers(0, 50, size=shape), tf.int32)
        corrupted, selected = K.select_and_corrupt(ids, seed(3), plan)
        check_select_and_corrupt(ids, corrupted, selected, plan)


@pytest.mark.parametrize(
    "selection, max_predictions", [("bernoulli", None), ("bernoulli", 3), ("exact", None)]
)
def test_select_and_corrupt_respects_valid(selection, max_predictions):
    plan = make_plan(mask_rate=0.9, selection=selection, max_predictions=max_predictions)
    rng = np.random.default_rng(3)
    ids = tf.constant(rng.integers(5, 50, size=(20, 30)), tf.int32)
    lengths = rng.integers(0, 31, size=20)
    valid = np.arange(30)[None, :] < lengths[:, None]
    corrupted, selected = K.select_and_corrupt(ids, seed(5), plan, valid=tf.constant(valid))
    check_select_and_corrupt(ids, corrupted, selected, plan, valid=valid)
    if selection == "exact":
        np.testing.assert_array_equal(
            selected.numpy().sum(axis=1), expected_exact_count(lengths, 0.9, None)
        )


@pytest.mark.parametrize("selection", ["bernoulli", "exact"])
def test_select_and_corrupt_certain_outcomes(selection):
    ids = np.random.default_rng(4).integers(0, 50, size=(8, 25))
    eligible = eligible_reference(ids, (0, 1, 2, 3, 4))
    # Everything eligible is selected and masked.
    plan = make_plan(mask_rate=1.0, mask_token_rate=1.0, random_token_rate=0.0, selection=selection)
    corrupted, selected = K.select_and_corrupt(tf.constant(ids), seed(1), plan)
    np.testing.assert_array_equal(selected.numpy(), eligible)
    np.testing.assert_array_equal(corrupted.numpy(), np.where(eligible, 4, ids))
    # Everything eligible is selected and kept.
    plan = make_plan(mask_rate=1.0, mask_token_rate=0.0, random_token_rate=0.0, selection=selection)
    corrupted, selected = K.select_and_corrupt(tf.constant(ids), seed(1), plan)
    np.testing.assert_array_equal(selected.numpy(), eligible)
    np.testing.assert_array_equal(corrupted.numpy(), ids)
    # Everything eligible gets a random allowed id.
    plan = make_plan(mask_rate=1.0, mask_token_rate=0.0, random_token_rate=1.0, selection=selection)
    corrupted, selected = K.select_and_corrupt(tf.constant(ids), seed(1), plan)
    np.testing.assert_array_equal(selected.numpy(), eligible)
    assert np.isin(corrupted.numpy()[eligible], plan.replacement_ids).all()
    np.testing.assert_array_equal(corrupted.numpy()[~eligible], ids[~eligible])


def test_select_and_corrupt_bernoulli_cap_that_never_binds_keeps_every_selection():
    # With max_predictions >= T the cap removes nothing: the selected
    # fraction stays mask_rate (a 5-sigma binomial bound).
    plan = make_plan(vocabulary_size=1000, mask_rate=0.15, max_predictions=64)
    ids = tf.constant(np.random.default_rng(5).integers(5, 1000, size=(2000, 64)), tf.int32)
    _, selected = K.select_and_corrupt(ids, seed(8), plan)
    n = 2000 * 64
    count = int(selected.numpy().sum())
    assert abs(count - 0.15 * n) <= 5 * math.sqrt(n * 0.15 * 0.85), count / n


# prediction_targets


def targets_reference(ids, selected, width):
    rows = []
    for row_ids, row_selected in zip(ids, selected):
        positions = np.flatnonzero(row_selected)
        pad = width - len(positions)
        rows.append(
            (
                np.concatenate([positions, np.zeros(pad, np.int64)]),
                np.concatenate([row_ids[positions], np.zeros(pad, row_ids.dtype)]),
                np.concatenate([np.ones(len(positions)), np.zeros(pad)]),
            )
        )
    return [np.stack(column) if rows else None for column in zip(*rows)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "batch, width, max_predictions",
    [(6, 20, 5), (6, 3, 5), (4, 5, 5), (3, 0, 4), (5, 1, 1), (7, 12, 1)],
)
def test_prediction_targets(dtype, batch, width, max_predictions):
    rng = np.random.default_rng(batch * 100 + width)
    ids = rng.integers(0, 1000, size=(batch, width))
    selected = np.zeros((batch, width), bool)
    for row in range(batch):
        count = rng.integers(0, min(width, max_predictions) + 1)
        selected[row, rng.choice(width, size=count, replace=False)] = True
    if batch and width:
        selected[0, :] = False  # an empty row
        selected[-1, :] = False
        selected[-1, : min(width, max_predictions)] = True  # a full one
    positions, mask_ids, weights = K.prediction_targets(
        tf.constant(ids, dtype), tf.constant(selected), max_predictions
    )
    assert positions.dtype == tf.int32
    assert mask_ids.dtype == dtype
    assert weights.dtype == tf.float32
    for tensor in (positions, mask_ids, weights):
        assert tensor.shape == (batch, max_predictions)
    expected = targets_reference(ids, selected, max_predictions)
    np.testing.assert_array_equal(positions.numpy(), expected[0])
    np.testing.assert_array_equal(mask_ids.numpy(), expected[1])
    np.testing.assert_array_equal(weights.numpy(), expected[2])


def test_prediction_targets_empty_batch():
    positions, mask_ids, weights = K.prediction_targets(
        tf.zeros([0, 7], tf.int32), tf.zeros([0, 7], tf.bool), 3
    )
    assert positions.shape == mask_ids.shape == weights.shape == (0, 3)
