"""`keras_dynmask.kernels.seeds`: the one place seeds are derived.

The derivations are stated here independently (TF's stateless fold-in and
split from a documented starting pair) and the seeds checked against them;
then the properties a seed must have: pure functions of their keys, distinct
for distinct keys, and fresh seeds new on every call and every iteration.
"""

import random

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask.kernels import seeds

ELEMENT_SALT = 0x6D61736B  # "mask": element seeds apart from keyed seeds


def fold(key, *values):
    for value in values:
        key = tf.random.experimental.stateless_fold_in(key, tf.constant(value, tf.int64))
    return key


def start(base_seed, salt=0):
    return tf.constant([base_seed % 2**63, salt], tf.int64)


def as_list(seed):
    return seed.numpy().tolist()


# Against the stated derivations.


@pytest.mark.parametrize("base_seed", [0, 42, -5, 2**63 + 9, 2**70])
def test_keyed_seed_folds_keys_into_the_base(base_seed):
    assert seeds.keyed_seed(base_seed).dtype == tf.int64
    assert as_list(seeds.keyed_seed(base_seed)) == as_list(start(base_seed))
    assert as_list(seeds.keyed_seed(base_seed, 3, 8)) == as_list(fold(start(base_seed), 3, 8))
    key = tf.constant(8, tf.int32)  # tensor keys of any integer dtype
    assert as_list(seeds.keyed_seed(base_seed, 3, key)) == as_list(fold(start(base_seed), 3, 8))


@pytest.mark.parametrize("base_seed", [0, 7, 2**64 + 7])
def test_element_seed_is_the_salted_fold_of_epoch_and_index(base_seed):
    got = seeds.element_seed(base_seed, tf.constant(2, tf.int64), tf.constant(11, tf.int64))
    assert as_list(got) == as_list(fold(start(base_seed, ELEMENT_SALT), 2, 11))
    # Not the keyed seed of the same numbers.
    assert as_list(got) != as_list(seeds.keyed_seed(base_seed, 2, 11))


def test_split_seed_is_stateless_split_of_the_folded_seed():
    key = tf.constant([3, 4], tf.int64)
    parts = seeds.split_seed(key, 3)
    want = tf.random.experimental.stateless_split(key, 3).numpy().tolist()
    assert [as_list(p) for p in parts] == want
    assert len({tuple(as_list(p)) for p in parts}) == 3
    # Seeds outside [0, 2**32) split as their folded 32 bits, alike under XLA.
    wide = tf.constant([-1, 2**32 + 4], tf.int64)

    def fold(value):
        high, low = (value >> 32) & 0xFFFFFFFF, value & 0xFFFFFFFF
        return low ^ ((high * 0x9E3779B9) & 0xFFFFFFFF)

    low = tf.constant([fold(-1), fold(2**32 + 4)], tf.int64)
    assert [as_list(p) for p in seeds.split_seed(wide, 2)] == [
        as_list(p) for p in seeds.split_seed(low, 2)
    ]
    compiled = tf.function(lambda s: tf.stack(seeds.split_seed(s, 2)), jit_compile=True)
    assert compiled(wide).numpy().tolist() == [as_list(p) for p in seeds.split_seed(wide, 2)]


def test_content_seed_depends_on_content_only():
    ids = tf.constant([[5, 6, 7], [8, 9, 0]])
    same = seeds.content_seed(1, tf.constant([[5, 6, 7], [8, 9, 0]]))
    assert as_list(seeds.content_seed(1, ids)) == as_list(same)
    swapped = seeds.content_seed(1, tf.constant([[8, 9, 0], [5, 6, 7]]))
    one_changed = seeds.content_seed(1, tf.constant([[5, 6, 7], [8, 9, 1]]))
    other_base = seeds.content_seed(2, ids)
    seen = {tuple(as_list(s)) for s in (same, swapped, one_changed, other_base)}
    assert len(seen) == 4
    # A ragged batch is keyed by its padded content.
    ragged = tf.ragged.constant([[5, 6, 7], [8, 9]])
    assert as_list(seeds.content_seed(1, ragged)) == as_list(same)
    # int32 and int64 ids of the same values give the same seed.
    assert as_list(seeds.content_seed(1, tf.cast(ids, tf.int64))) == as_list(same)


def test_content_fingerprint_weights_positions():
    # sum(v_i * (2 i + 1)) with i from 1: [1, 2] -> 1*3 + 2*5 = 13.
    assert int(seeds.content_fingerprint(tf.constant([1, 2]))) == 13
    assert int(seeds.content_fingerprint(tf.constant([2, 1]))) == 11
    assert int(seeds.content_fingerprint(tf.zeros([0], tf.int32))) == 0


# Properties.


def test_element_seeds_are_distinct_across_keys():
    found = set()
    for base_seed in (0, 1):
        for epoch in range(4):
            for index in range(50):
                found.add(tuple(as_list(seeds.element_seed(base_seed, epoch, index))))
    assert len(found) == 2 * 4 * 50


def test_fresh_seed_is_new_every_call_and_every_iteration_after_set_random_seed():
    keras.utils.set_random_seed(0)
    try:
        eager = {tuple(as_list(seeds.fresh_seed())) for _ in range(20)}
        assert len(eager) == 20
        dataset = tf.data.Dataset.range(5).map(lambda _: seeds.fresh_seed())
        first = [tuple(s.numpy().tolist()) for s in dataset]
        second = [tuple(s.numpy().tolist()) for s in dataset]
        assert len(set(first) | set(second)) == 10
        graph = tf.function(seeds.fresh_seed)
        assert as_list(graph()) != as_list(graph())
    finally:
        tf.random.set_seed(None)
        np.random.seed()
        random.seed()
    assert seeds.fresh_seed().dtype == tf.int64 and seeds.fresh_seed().shape == (2,)
