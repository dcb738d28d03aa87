"""Tests of `keras_dynmask.kernels.random_bits`: draws and their outcomes.

What an outcome's probability really is gets measured, not restated: for
16-bit draws every one of the 2**16 values is fed through `outcome_is` and
counted; for 32-bit draws the outcome boundaries are found by bisection over
`outcome_is` itself. The reference for "precise enough" is exact rational
rounding of the cumulative probabilities.
"""

import fractions
import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from distribution_bounds import chi2_critical, chi_square, normal_upper_quantile
from outcome_counts import measured_counts, outcome_index
from keras_dynmask.kernels import random_bits

MAX_ERROR = 1e-3  # the documented precision of a realised probability


def seed(a, b=0):
    return tf.constant([a, b], tf.int64)


def value_dtype(bits):
    return tf.uint16 if bits == 16 else tf.uint32


def outcomes_of(probabilities):
    return random_bits.draw_outcomes(tf.constant([1]), seed(0), probabilities)


def exact_thresholds(probabilities, bits):
    """round(cumulative * 2**bits), in exact rational arithmetic."""
    cumulative = np.cumsum(np.asarray(probabilities, np.float64))
    return [round(fractions.Fraction(float(c)) * 2**bits) for c in cumulative]


def realisable(probabilities, bits):
    """True when rounded `bits`-bit thresholds give each outcome within MAX_ERROR."""
    counts = np.diff([0] + exact_thresholds(probabilities, bits))
    return all(
        abs(c - p * 2**bits) <= MAX_ERROR * p * 2**bits
        for p, c in zip(probabilities, counts)
        if p > 0
    )


# choose_bits, thresholds_for and draw_outcomes


def test_choose_bits_uses_16_bits_for_bert_rates():
    probabilities = [0.15 * 0.8, 0.15 * 0.1, 0.15 * 0.1]
    assert random_bits.choose_bits(probabilities) == 16
    outcomes = outcomes_of(probabilities)
    assert outcomes.bits == 16 and outcomes.values.dtype == tf.uint16
    thresholds = outcomes.thresholds
    assert len(thresholds) == 3
    for threshold, cumulative in zip(thresholds, np.cumsum(probabilities)):
        assert abs(threshold - cumulative * 2**16) <= 0.5 + 1e-9
    realised = measured_counts(outcomes) / 2**16
    np.testing.assert_allclose(realised, probabilities, rtol=MAX_ERROR)


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
def test_choose_bits_uses_32_bits_when_16_are_imprecise(probabilities):
    assert not realisable(probabilities, 16)
    sixteen = random_bits.Outcomes(None, 16, random_bits.thresholds_for(probabilities, 16))
    counts = measured_counts(sixteen)
    assert any(
        abs(c - p * 2**16) > MAX_ERROR * p * 2**16 for p, c in zip(probabilities, counts)
    )
    assert random_bits.choose_bits(probabilities) == 32
    outcomes = outcomes_of(probabilities)
    assert outcomes.bits == 32 and outcomes.values.dtype == tf.uint32
    for threshold, cumulative in zip(outcomes.thresholds, np.cumsum(probabilities)):
        assert abs(threshold - cumulative * 2**32) <= 0.5 + 1e-6
    realised = measured_counts(outcomes) / 2**32
    np.testing.assert_allclose(realised, probabilities, rtol=MAX_ERROR)


@settings(deadline=None, max_examples=200)
@given(
    st.lists(
        st.one_of(st.just(0.0), st.floats(1e-7, 1.0)), min_size=1, max_size=4
    )
)
def test_realised_probabilities_are_precise_with_the_fewest_bits(raw):
    total = sum(raw)
    probabilities = [p / total for p in raw] if total > 1 else raw
    outcomes = outcomes_of(probabilities)
    bits, thresholds = outcomes.bits, outcomes.thresholds
    assert bits in (16, 32)
    assert len(thresholds) == len(probabilities)
    assert all(0 <= t <= 2**bits for t in thresholds)
    assert list(thresholds) == sorted(thresholds)
    for threshold, cumulative in zip(thresholds, np.cumsum(probabilities)):
        assert abs(threshold - cumulative * 2**bits) <= 0.5 + 1e-6
    counts = measured_counts(outcomes)
    for p, count in zip(probabilities, counts):
        # Within one value of ideal, and within MAX_ERROR wherever the
        # chosen width can do that.
        assert abs(count - p * 2**bits) <= 1 + 1e-6
        if realisable(probabilities, bits):
            assert abs(count - p * 2**bits) <= MAX_ERROR * p * 2**bits
    # 16 bits exactly when they are precise enough.
    assert (bits == 16) == realisable(probabilities, 16)


def test_certain_outcome_covers_every_value():
    for probabilities in ([0.8, 0.1, 0.1], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]):
        outcomes = outcomes_of(probabilities)
        bits, thresholds = outcomes.bits, outcomes.thresholds
        assert thresholds[-1] == 2**bits
        assert measured_counts(outcomes).sum() == 2**bits
        values = tf.constant([0, 2**bits - 1], value_dtype(bits))
        # `below` of the full range means "all values".
        assert random_bits.below(values, thresholds[-1], bits) is None


def test_zero_probability_outcomes_are_empty():
    outcomes = outcomes_of([0.15, 0.0, 0.0])
    assert outcomes.bits == 16
    thresholds = outcomes.thresholds
    assert thresholds[0] == thresholds[1] == thresholds[2] == round(0.15 * 2**16)
    np.testing.assert_array_equal(measured_counts(outcomes)[1:], [0, 0])
    outcomes = outcomes_of([0.0, 0.0, 0.15])
    assert outcomes.thresholds[0] == outcomes.thresholds[1] == 0
    np.testing.assert_array_equal(measured_counts(outcomes)[:2], [0, 0])


@pytest.mark.parametrize("bits", [16, 32])
def test_below(bits):
    dtype = value_dtype(bits)
    values = tf.constant([0, 1, 5, 6, 2**bits - 1], dtype)
    np.testing.assert_array_equal(
        random_bits.below(values, 6, bits).numpy(), [True, True, True, False, False]
    )
    assert not random_bits.below(values, 0, bits).numpy().any()
    assert random_bits.below(values, 2**bits, bits) is None


def test_draw_outcomes_frequencies_follow_the_probabilities():
    probabilities = [0.12, 0.015, 0.015]
    n = 400_000
    outcomes = random_bits.draw_outcomes(tf.constant([n]), seed(3, 4), probabilities)
    index = outcome_index(outcomes, outcomes.values)
    observed = np.bincount(index, minlength=4)
    expected = np.array(probabilities + [1 - sum(probabilities)]) * n
    assert chi_square(observed, expected) < chi2_critical(3)


def test_logical_and_treats_none_as_all_true():
    a = tf.constant([True, False, True])
    b = tf.constant([True, True, False])
    assert random_bits.logical_and() is None
    assert random_bits.logical_and(None, None) is None
    np.testing.assert_array_equal(random_bits.logical_and(a, None).numpy(), a.numpy())
    np.testing.assert_array_equal(
        random_bits.logical_and(None, a, b).numpy(), [True, False, False]
    )


# uniform_bits


@pytest.mark.parametrize("bits, dtype", [(16, tf.uint16), (32, tf.uint32)])
@pytest.mark.parametrize("shape", [[7], [3, 5], [0, 4], [2, 3, 3]])
def test_uniform_bits_shape_and_dtype(bits, dtype, shape):
    values = random_bits.uniform_bits(tf.constant(shape), seed(1), bits)
    assert values.dtype == dtype
    assert values.shape == tuple(shape)


@pytest.mark.parametrize("bits", [16, 32])
def test_uniform_bits_are_uniform(bits):
    n = 200_001  # odd: the 16-bit path drops half of its last word
    values = random_bits.uniform_bits(tf.constant([n]), seed(5, 6), bits).numpy()
    values = values.astype(np.int64)
    top = 2**bits
    assert values.min() >= 0 and values.max() < top
    # 16 equal bins over the full range (the top 4 bits): chi-square, df = 15.
    counts = np.bincount(values * 16 // top, minlength=16)
    assert chi_square(counts, np.full(16, n / 16)) < chi2_critical(15)
    # The low byte too: 256 bins, df = 255.
    counts = np.bincount(values % 256, minlength=256)
    assert chi_square(counts, np.full(256, n / 256)) < chi2_critical(255)
    # Every bit is a fair coin (Bonferroni over the bits).
    ones = np.array([((values >> b) & 1).sum() for b in range(bits)])
    z = normal_upper_quantile(1e-6 / (2 * bits))
    assert np.abs(ones - n / 2).max() <= z * math.sqrt(n / 4), ones
    # Neighbours are independent (the two halves of one Philox word in the
    # 16-bit path): the pair of their top 2 bits, 16 cells, df = 15.
    pairs = (values[:-1:2] * 4 // top) * 4 + values[1::2] * 4 // top
    counts = np.bincount(pairs, minlength=16)
    assert chi_square(counts, np.full(16, len(pairs) / 16)) < chi2_critical(15)
    # Purity: same seed, same values; another seed, other values.
    again = random_bits.uniform_bits(tf.constant([n]), seed(5, 6), bits).numpy()
    other = random_bits.uniform_bits(tf.constant([n]), seed(5, 7), bits).numpy()
    np.testing.assert_array_equal(values, again)
    assert (values != other).mean() > 0.99


@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("values", [(-5, 7), (3, -1), (2**40, 9), (-(2**63), 2**63 - 1)])
def test_xla_draws_what_tensorflow_draws_for_any_seed(bits, values):
    # XLA's stateless ops read seeds outside [0, 2**32) unlike TF's kernels;
    # every draw goes through `philox_seed`, so a layer masks alike either way.
    seed_values = tf.constant(values, tf.int64)

    def draw(seed_values):
        return random_bits.uniform_bits([4, 50], seed_values, bits)

    plain = tf.function(draw)(seed_values).numpy()
    compiled = tf.function(draw, jit_compile=True)(seed_values).numpy()
    np.testing.assert_array_equal(plain, compiled)


def test_seeds_differing_only_above_32_bits_draw_differently():
    low = random_bits.uniform_bits([64], tf.constant([0, 3], tf.int64), 32).numpy()
    for wide in ([2**40, 3], [0, 3 + 2**32], [-1, 3]):
        other = random_bits.uniform_bits([64], tf.constant(wide, tf.int64), 32).numpy()
        assert (low != other).any(), wide
    # In-range seeds are used as they are.
    same = tf.random.stateless_uniform(
        [64], tf.constant([0, 3], tf.int64), minval=None, maxval=None, dtype=tf.int32
    )
    np.testing.assert_array_equal(low, tf.bitcast(same, tf.uint32).numpy())
