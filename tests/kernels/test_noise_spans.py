"""noise_spans: T5's counts, random compositions and span layouts."""

import itertools
import math
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask.kernels import noise_spans

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))
from distribution_bounds import chi2_critical  # noqa: E402
from distribution_bounds import chi_square  # noqa: E402
from distribution_bounds import normal_upper_quantile  # noqa: E402
from span_reference import composition_first_part  # noqa: E402
from span_reference import expected_counts  # noqa: E402

SETTINGS = [(0.15, 3.0, None), (0.5, 3.0, None), (0.15, 8.0, None), (0.5, 64.0, None),
            (0.3, 2.0, 5), (0.99, 1.0, None), (0.01, 1.5, 100)]


@pytest.mark.parametrize("density, mean, max_spans", SETTINGS)
def test_span_counts_follow_the_formula_for_every_length(density, mean, max_spans):
    lengths = np.arange(0, 700)
    num_noise, num_spans = noise_spans.span_counts(lengths, density, mean, max_spans)
    expected = np.array([expected_counts(n, density, mean, max_spans) for n in lengths])
    np.testing.assert_array_equal(num_noise.numpy(), expected[:, 0])
    np.testing.assert_array_equal(num_spans.numpy(), expected[:, 1])
    python = noise_spans.python_span_counts(lengths, density, mean, max_spans)
    np.testing.assert_array_equal(python[0], expected[:, 0])
    np.testing.assert_array_equal(python[1], expected[:, 1])


def test_span_counts_take_per_row_settings():
    lengths = tf.constant([100, 100, 100, 1])
    num_noise, num_spans = noise_spans.span_counts(
        lengths, tf.constant([0.15, 0.5, 0.5, 0.5]), tf.constant([3.0, 3.0, 64.0, 3.0])
    )
    assert num_noise.numpy().tolist() == [15, 50, 50, 0]
    assert num_spans.numpy().tolist() == [5, 17, 1, 0]


def test_count_bounds_cover_every_shorter_row():
    settings = [(0.15, 3.0), (0.5, 8.0)]
    bounds = noise_spans.count_bounds(300, settings, max_spans=40)
    found = [0, 0, 0]
    for density, mean in settings:
        for n in range(301):
            noise, spans = expected_counts(n, density, mean, 40)
            found = [max(found[0], n - noise), max(found[1], noise), max(found[2], spans)]
    assert bounds == tuple(found)


def t5_random_spans_helper(inputs_length, noise_density, mean_noise_span_length):
    """T5's helper, restated: Python rounding, one sentinel a span, eos on each side."""

    def lengths(tokens_length):
        num_noise = int(round(tokens_length * noise_density))
        num_spans = int(round(num_noise / mean_noise_span_length))
        return tokens_length - num_noise + num_spans + 1, num_noise + num_spans + 1

    tokens_length = inputs_length - 1
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    return tokens_length, lengths(tokens_length)[1]


@pytest.mark.parametrize("inputs_length", [64, 128, 256, 512, 568, 1024])
@pytest.mark.parametrize("density, mean", [(0.15, 3.0), (0.15, 8.0), (0.25, 3.0)])
def test_lengths_for_inputs_length_agree_with_t5(inputs_length, density, mean):
    ours = noise_spans.lengths_for_inputs_length(inputs_length, density, mean)
    assert tuple(ours) == t5_random_spans_helper(inputs_length, density, mean)


def test_lengths_for_inputs_length_are_the_largest_that_fit():
    assert noise_spans.lengths_for_inputs_length(512, 0.15, 3.0) == (568, 114)
    for extra in (0, 1, 2):
        for wanted in (20, 100, 333):
            tokens, targets = noise_spans.lengths_for_inputs_length(wanted, 0.5, 3.0, extra, 30)

            def inputs_length(n):
                noise, spans = expected_counts(n, 0.5, 3.0, 30)
                return n - noise + spans + extra, noise + spans + int(extra >= 1)

            assert inputs_length(tokens)[0] <= wanted < inputs_length(tokens + 1)[0]
            assert targets == inputs_length(tokens)[1]
    # Too short for noise and no eos: empty targets, reported as 1, the
    # shortest targets_length a layer takes.
    assert noise_spans.lengths_for_inputs_length(1, 0.15, 3.0, extra_inputs_tokens=0) == (1, 1)


def test_random_cuts_are_distinct_sorted_and_in_range():
    rng = np.random.default_rng(0)
    totals = rng.integers(0, 60, size=500).astype(np.int32)
    parts = np.minimum(rng.integers(1, 20, size=500), np.maximum(totals, 1)).astype(np.int32)
    parts[totals == 0] = 0
    cuts = noise_spans.random_cuts(totals, parts, tf.constant([3, 4]), 59, 19).numpy()
    for total, count, row in zip(totals, parts, cuts):
        chosen = row[: max(count - 1, 0)]
        assert len(set(chosen)) == len(chosen)
        assert np.all(np.diff(chosen) > 0) and np.all((chosen >= 1) & (chosen < total))
        assert np.all(row[max(count - 1, 0):] == total)


def test_random_cuts_draw_every_subset_equally_often():
    # 3 parts of 6 items: one of C(5, 2) = 10 cut pairs, uniformly.
    rows = 20000
    cuts = noise_spans.random_cuts(
        tf.fill([rows], 6), tf.fill([rows], 3), tf.constant([5, 6]), 9, 2
    ).numpy()
    assert_every_subset_equally_often(cuts, 6, 3)


def assert_every_subset_equally_often(cuts, items, parts):
    """Every row's first `parts - 1` cuts are one of the C(items - 1, parts - 1)
    subsets of the gaps, and each comes equally often (chi-square, p = 1e-6)."""
    subsets = list(itertools.combinations(range(1, items), parts - 1))
    index = {subset: i for i, subset in enumerate(subsets)}
    counts = np.zeros(len(subsets), int)
    for row in cuts[:, : parts - 1]:
        counts[index[tuple(int(c) for c in row)]] += 1
    assert counts.sum() == len(cuts)
    expected = [len(cuts) / len(subsets)] * len(subsets)
    assert chi_square(counts, expected) < chi2_critical(len(subsets) - 1)


@pytest.mark.parametrize(
    "items, parts",
    [(7, 4), (6, 5), (8, 7), (9, 2)],  # 3 of 6 gaps; 4 of 5 and 6 of 7 (the left-out
)  # gaps are drawn); 1 of 8
def test_random_cuts_draw_every_subset_equally_often_when_most_gaps_are_cut(items, parts):
    rows = 40 * math.comb(items - 1, parts - 1)
    cuts = noise_spans.random_cuts(
        tf.fill([rows], items), tf.fill([rows], parts), tf.constant([8, 1]), items - 1, parts - 1
    ).numpy()
    assert_every_subset_equally_often(cuts, items, parts)


def test_rows_that_leave_gaps_out_are_unaffected_by_a_huge_one_part_row():
    # A one-part row may hold any number of items (it cuts nothing); the
    # left-out rows' binary search must not depend on it (an int32 bound
    # derived from it once wrapped round).
    for key in range(20):
        seed = tf.constant([key, 1])
        alone = noise_spans.random_cuts(tf.constant([5]), tf.constant([4]), seed, 4, 3)
        beside = noise_spans.random_cuts(
            tf.constant([5, 2**31 - 1]), tf.constant([4, 1]), seed, 4, 3
        ).numpy()
        cuts = beside[0]
        assert list(cuts) == sorted(set(cuts)) and cuts.min() >= 1 and cuts.max() < 5
        np.testing.assert_array_equal(cuts, alone.numpy()[0])
        np.testing.assert_array_equal(beside[1], [2**31 - 1] * 3)


def test_random_cuts_fall_back_to_exact_subsets_when_the_draws_fall_short(monkeypatch):
    # One draw a cut: 5 of 9 gaps left out from 5 draws needs all 5 distinct
    # (probability 9*8*7*6*5 / 9**5 = 0.26 a row), so nearly every batch falls back.
    monkeypatch.setattr(noise_spans, "DRAWS_PER_CUT", 1)
    monkeypatch.setattr(noise_spans, "SPARE_DRAWS", 0)
    rows = 20 * math.comb(9, 4)
    totals, parts = tf.fill([rows], 10), tf.fill([rows], 5)
    _, enough = noise_spans._cuts_from_first_distinct(totals, parts, tf.constant([2, 3]), 9, 4)
    assert not bool(enough)
    cuts = noise_spans.random_cuts(totals, parts, tf.constant([2, 3]), 9, 4).numpy()
    assert_every_subset_equally_often(cuts, 10, 5)


@pytest.mark.parametrize("density, mean", [(0.15, 3.0), (0.5, 3.0), (0.3, 2.0)])
def test_random_cuts_rarely_need_the_fallback(density, mean):
    # The fast draws must hold enough distinct gaps at T5's and UL2's
    # settings (and mean 2, where cuts reach half the gaps): else every
    # batch pays for both selections. A fallback here is a bug, not bad luck:
    # 200 batches of 256 x 512 at these settings drew none.
    lengths = tf.constant(np.linspace(64, 512, 256).astype(np.int32))
    num_noise, num_spans = noise_spans.span_counts(lengths, density, mean, 100)
    for seed in range(10):
        for totals in (lengths - num_noise, num_noise):
            _, enough = noise_spans._cuts_from_first_distinct(
                totals, num_spans, tf.constant([seed, 7]), 512, 256
            )
            assert bool(enough), (density, mean, seed)


def layout_and_mask(lengths, density, mean, seed=(1, 2), width=None, bounds=None):
    lengths = tf.constant(lengths, tf.int32)
    num_noise, num_spans = noise_spans.span_counts(lengths, density, mean)
    layout = noise_spans.span_layout(lengths, num_noise, num_spans, tf.constant(seed), bounds)
    width = int(tf.reduce_max(lengths)) if width is None else width
    mask = noise_spans.noise_mask(layout, lengths, width).numpy()
    return layout, mask, num_noise.numpy(), num_spans.numpy()


def mask_runs(row):
    """Run lengths of a bool row: [(is_noise, length), ...]."""
    found = []
    for value in row:
        if found and found[-1][0] == value:
            found[-1][1] += 1
        else:
            found.append([bool(value), 1])
    return found


@pytest.mark.parametrize("density, mean", [(0.15, 3.0), (0.5, 3.0), (0.5, 64.0), (0.3, 1.0)])
def test_noise_masks_have_the_counts_and_alternate_from_non_noise(density, mean):
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, 90, size=300)
    _, mask, num_noise, num_spans = layout_and_mask(lengths, density, mean, width=96)
    for n, row, noise, spans in zip(lengths, mask, num_noise, num_spans):
        assert not row[n:].any()
        assert row.sum() == noise == expected_counts(n, density, mean)[0]
        if n < 2:
            continue
        found = mask_runs(row[:n])
        assert [r[0] for r in found] == [False, True] * spans
        assert sum(1 for r in found if r[0]) == spans == expected_counts(n, density, mean)[1]


def test_span_lengths_are_uniform_compositions():
    # 40 tokens at 0.3, mean 3: 12 noise in 4 spans, 28 non-noise in 4 spans.
    rows = 6000
    _, mask, num_noise, num_spans = layout_and_mask([40] * rows, 0.3, 3.0, seed=(9, 9))
    assert set(num_noise) == {12} and set(num_spans) == {4}
    first_noise, first_nonnoise, all_noise = [], [], []
    for row in mask:
        found = mask_runs(row)
        first_nonnoise.append(found[0][1])
        first_noise.append(found[1][1])
        all_noise += [r[1] for r in found if r[0]]
    for observed, m in ((first_noise, 12), (first_nonnoise, 28)):
        probabilities = composition_first_part(m, 4)
        counts = np.bincount(observed, minlength=len(probabilities) + 1)[1:]
        expected = probabilities * rows
        keep = expected >= 5  # pool the sparse tail
        observed_pooled, expected_pooled = counts[keep], expected[keep]
        if (~keep).any():
            observed_pooled = np.append(observed_pooled, counts[~keep].sum())
            expected_pooled = np.append(expected_pooled, expected[~keep].sum())
        assert chi_square(observed_pooled, expected_pooled) < chi2_critical(len(observed_pooled) - 1)
    # Every row's noise spans average exactly 3; the first span's mean too.
    assert np.mean(all_noise) == 3.0
    spread = math.sqrt(np.var(first_noise) / rows) * normal_upper_quantile(1e-6)
    assert abs(np.mean(first_noise) - 3.0) < spread


def test_static_bounds_and_run_time_bounds_give_the_same_layout():
    lengths = [0, 1, 2, 3, 17, 50, 64]
    bounds = noise_spans.count_bounds(64, [(0.15, 3.0)])
    dynamic, _, _, _ = layout_and_mask(lengths, 0.15, 3.0, seed=(4, 4))
    static, _, _, _ = layout_and_mask(lengths, 0.15, 3.0, seed=(4, 4), bounds=bounds)
    for a, b in zip(dynamic, static):
        k = a.shape[1]
        np.testing.assert_array_equal(a.numpy(), b.numpy()[:, :k])
        assert np.all(b.numpy()[:, k:] == b.numpy()[:, -1:])


def test_prefix_split_noise_is_uniform_over_the_split_points():
    rows = 14000
    noise = noise_spans.prefix_split_noise(tf.fill([rows], 8), tf.constant([7, 7])).numpy()
    counts = np.bincount(noise, minlength=8)
    assert counts[0] == 0 and counts[1:].sum() == rows
    assert chi_square(counts[1:], [rows / 7] * 7) < chi2_critical(6)
    short = noise_spans.prefix_split_noise(tf.constant([0, 1, 2]), tf.constant([1, 1])).numpy()
    assert short.tolist() == [0, 0, 1]


def test_layout_runs_under_xla_with_fixed_lengths():
    bounds = noise_spans.count_bounds(48, [(0.5, 3.0)])

    @tf.function(jit_compile=True)
    def mask(lengths, seed):
        num_noise, num_spans = noise_spans.span_counts(lengths, 0.5, 3.0)
        layout = noise_spans.span_layout(lengths, num_noise, num_spans, seed, bounds)
        return noise_spans.noise_mask(layout, lengths, 48), num_noise, num_spans

    lengths = np.arange(0, 49, dtype=np.int32)
    out, num_noise, num_spans = (t.numpy() for t in mask(lengths, tf.constant([1, 1])))
    for n, row, noise, spans in zip(lengths, out, num_noise, num_spans):
        assert row.sum() == noise == expected_counts(n, 0.5, 3.0)[0]
        if n >= 2:
            assert sum(1 for r in mask_runs(row[:n]) if r[0]) == spans
