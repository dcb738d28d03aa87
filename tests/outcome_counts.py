"""What a `random_bits.Outcomes` really realises, measured over its draw values.

For 16-bit draws every one of the 2**16 values goes through `outcome_is`
and is counted; for 32-bit draws the outcome boundaries are found by
bisection over `outcome_is` itself (outcomes are consecutive intervals,
checked on a grid). Nothing here restates how thresholds are computed.
"""

import numpy as np
import tensorflow as tf

from keras_dynmask.kernels import random_bits


def outcome_index(outcomes, values):
    """Index of the outcome each value falls in (len = none), checking that
    no value falls in two."""
    count = len(outcomes.thresholds)
    index = np.full(values.shape, count, np.int64)
    hits = np.zeros(values.shape, np.int64)
    for i in range(count):
        member = random_bits.outcome_is(
            random_bits.Outcomes(values, outcomes.bits, outcomes.thresholds), i
        )
        member = np.ones(values.shape, bool) if member is None else member.numpy()
        index[member] = i
        hits += member
    assert hits.max(initial=0) <= 1, "a value falls in two outcomes"
    return index


def measured_counts(outcomes):
    """How many of the 2**bits draw values fall in each outcome."""
    bits, count = outcomes.bits, len(outcomes.thresholds)
    if bits == 16:
        values = tf.cast(tf.range(2**16, dtype=tf.int32), tf.uint16)
        index = outcome_index(outcomes, values)
        # Outcomes are consecutive intervals, in order.
        assert (np.diff(index) >= 0).all()
        return np.bincount(index, minlength=count + 1)[:count]
    # 32 bits: the index is non-decreasing (checked on a grid); bisect for
    # the first value past each outcome.
    grid = tf.constant(np.linspace(0, 2**32 - 1, 4097).astype(np.uint32))
    assert (np.diff(outcome_index(outcomes, grid)) >= 0).all()
    low = np.zeros(count, np.int64)
    high = np.full(count, 2**32, np.int64)  # first value with index > i
    for _ in range(33):
        middle = (low + high) // 2
        probe = tf.constant(np.minimum(middle, 2**32 - 1).astype(np.uint32))
        past = outcome_index(outcomes, probe) > np.arange(count)
        past &= middle < 2**32
        high = np.where(past, middle, high)
        low = np.where(past, low, middle + 1)
    return np.diff(np.concatenate([[0], high]))
