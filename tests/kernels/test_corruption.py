"""Tests of `keras_dynmask.kernels.corruption`: what selected positions become."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from distribution_bounds import chi2_critical, chi_square
from keras_dynmask.kernels import corruption
from keras_dynmask.kernels import random_bits

DTYPES = [tf.int32, tf.int64]


def seed(a, b=0):
    return tf.constant([a, b], tf.int64)


# allowed_id_count


def test_allowed_id_count():
    assert corruption.allowed_id_count(10, []) == 10
    assert corruption.allowed_id_count(10, [0, 3, 3, 9]) == 7
    # Ids outside the vocabulary exclude nothing.
    assert corruption.allowed_id_count(10, [-1, 10, 12, 4]) == 9
    assert corruption.allowed_id_count(2**31 - 1, [0, 1, 2**31 - 2]) == 2**31 - 4


# uniform_allowed_ids


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "vocabulary_size, excluded",
    [
        (40, [0, 1, 2, 3, 4, 10, 11, 20, 39]),  # runs, singles, the last id
        (12, [0, 1, 2, 3, 4, 5]),  # allowed ids only at the top
        (12, [6, 7, 8, 9, 10, 11]),  # ... only at the bottom
        (30, []),
        (30, [29, 0, 15, 15]),  # unsorted, with a repeat
    ],
)
def test_uniform_allowed_ids_are_uniform_over_exactly_the_allowed_ids(
    dtype, vocabulary_size, excluded
):
    allowed = np.setdiff1d(np.arange(vocabulary_size), excluded)
    n = 400 * len(allowed)
    draws = corruption.uniform_allowed_ids([n], seed(1, 2), vocabulary_size, excluded, dtype)
    assert draws.dtype == dtype and draws.shape == (n,)
    counts = np.bincount(draws.numpy(), minlength=vocabulary_size)
    assert len(counts) == vocabulary_size  # nothing at or past vocabulary_size
    assert counts[np.asarray(excluded, np.int64)].sum() == 0  # exact
    statistic = chi_square(counts[allowed], np.full(len(allowed), n / len(allowed)))
    assert statistic < chi2_critical(len(allowed) - 1), (counts[allowed], statistic)


@settings(deadline=None, max_examples=50)
@given(
    vocabulary_size=st.integers(2, 80),
    excluded=st.sets(st.integers(0, 79), max_size=40),
    key=st.integers(0, 2**31 - 1),
)
def test_uniform_allowed_ids_never_give_an_excluded_id(vocabulary_size, excluded, key):
    excluded = [e for e in excluded if e < vocabulary_size]
    if len(excluded) == vocabulary_size:
        excluded = excluded[1:]
    allowed = np.setdiff1d(np.arange(vocabulary_size), excluded)
    draws = corruption.uniform_allowed_ids(
        [2000], seed(key), vocabulary_size, excluded, tf.int32
    ).numpy()
    assert np.isin(draws, allowed).all()
    # With 2000 draws over at most 80 ids, every allowed id shows up
    # (a given id is missed with chance < (1 - 1/80)**2000 ~ 1e-11).
    np.testing.assert_array_equal(np.unique(draws), allowed)


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_allowed_ids_at_the_largest_int32_vocabulary(dtype):
    # 2**31 - 1 ids: the allowed ids cannot be listed; the edges must hold.
    vocabulary_size = 2**31 - 1
    excluded = [0, 1, 2, 2**30, 2**30 + 1, vocabulary_size - 2, vocabulary_size - 1]
    n = 200_000
    draws = corruption.uniform_allowed_ids(
        [n], seed(3, 4), vocabulary_size, excluded, dtype
    ).numpy().astype(np.int64)
    assert draws.min() >= 3 and draws.max() <= vocabulary_size - 3
    assert not np.isin(draws, excluded).any()
    # Uniform over the allowed ids: 16 equal bins of the allowed index.
    allowed = vocabulary_size - len(excluded)
    index = draws - np.searchsorted(np.array(excluded), draws, side="right")
    assert index.min() >= 0 and index.max() < allowed
    counts = np.bincount(index * 16 // allowed, minlength=16)
    assert chi_square(counts, np.full(16, n / 16)) < chi2_critical(15)


def test_uniform_allowed_ids_beyond_int32_in_int64():
    vocabulary_size = 2**33
    excluded = [2**32, 2**32 + 1]
    draws = corruption.uniform_allowed_ids(
        [100_000], seed(5), vocabulary_size, excluded, tf.int64
    ).numpy()
    assert draws.min() >= 0 and draws.max() < vocabulary_size
    assert not np.isin(draws, excluded).any()
    # About half the draws lie above 2**32.
    above = int((draws > 2**32).sum())
    assert abs(above - 50_000) <= 5 * np.sqrt(100_000 * 0.25)


def test_uniform_allowed_ids_is_a_function_of_the_seed():
    def draw(key):
        return corruption.uniform_allowed_ids([500], seed(key), 50, [0, 5], tf.int32).numpy()

    np.testing.assert_array_equal(draw(7), draw(7))
    assert (draw(7) != draw(8)).any()


# bert_corruption


def corrupt(token_ids, selected, values, bits, thresholds, vocabulary_size, excluded, key=3):
    return corruption.bert_corruption(
        token_ids,
        selected,
        seed(key),
        mask_token_id=4,
        mask_token_rate=0.8,
        random_token_rate=0.1,
        vocabulary_size=vocabulary_size,
        replacement_excluded_ids=excluded,
        outcomes=random_bits.Outcomes(values, bits, thresholds),
    )


@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bert_corruption_threshold_semantics(bits, dtype):
    # The only replacement id is 5, so a random replacement is recognisable.
    excluded = [0, 1, 2, 3, 4]
    m, r, s = 1000, 1500, 2000
    values = [0, 1, m - 1, m, m + 1, r - 1, r, s - 1, 0, m, r]
    selected = [True] * 8 + [False] * 3
    expected_action = ["mask"] * 3 + ["random"] * 3 + ["keep"] * 2 + ["none"] * 3
    value_dtype = tf.uint16 if bits == 16 else tf.uint32
    token_ids = tf.constant([2, 3] * 5 + [2], dtype)
    corrupted = corrupt(
        token_ids,
        tf.constant(selected),
        tf.constant(values, value_dtype),
        bits,
        [m, r, s],
        vocabulary_size=6,
        excluded=excluded,
    )
    assert corrupted.dtype == dtype
    expected = [
        4 if action == "mask" else 5 if action == "random" else original
        for action, original in zip(expected_action, token_ids.numpy())
    ]
    np.testing.assert_array_equal(corrupted.numpy(), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bert_corruption_draws_its_own_outcomes(dtype):
    # Without `outcomes`: 80/10/10 among the selected, nothing else touched.
    rng = np.random.default_rng(0)
    ids = rng.integers(10, 1000, size=(200, 256))
    selected = rng.random(ids.shape) < 0.3
    excluded = [0, 1, 2, 3, 4]
    corrupted = corruption.bert_corruption(
        tf.constant(ids, dtype), tf.constant(selected), seed(9), 4, 0.8, 0.1, 1000, excluded
    ).numpy()
    np.testing.assert_array_equal(corrupted[~selected], ids[~selected])
    new = corrupted[selected]
    original = ids[selected]
    masked = int((new == 4).sum())
    unchanged = int((new == original).sum())
    changed = len(new) - masked - unchanged
    allowed = 1000 - len(excluded)
    expected = np.array([0.8, 0.1 * (1 - 1 / allowed), 0.1 + 0.1 / allowed]) * len(new)
    assert chi_square([masked, changed, unchanged], expected) < chi2_critical(2)
    assert not np.isin(new[new != 4], excluded).any()


def test_bert_corruption_with_zero_rates_keeps_every_id():
    ids = tf.constant([[7, 8, 9]])
    out = corruption.bert_corruption(
        ids, tf.constant([[True, True, True]]), seed(1), 4, 0.0, 0.0, 10, [0, 4]
    )
    np.testing.assert_array_equal(out.numpy(), ids.numpy())
