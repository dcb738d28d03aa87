"""Uniform random bits, and one draw per token deciding among outcomes.

Random bits are the cost that matters in masking (one 32-bit Philox draw
per token alone runs at a fraction of a no-op `tf.data` map), so a token
gets a single uniform integer of 16 bits when that is precise enough, and
that one number decides among several outcomes with given probabilities
(e.g. selected-and-masked, selected-and-randomised, selected-and-kept, not
selected): outcome `i` holds the values in `[thresholds[i-1], thresholds[i])`.
"""

import collections

import numpy as np
from keras_dynmask.lazy_tensorflow import tf

# Largest relative error allowed between a configured probability and the
# one a 16-bit threshold realises; beyond it the draw spends 32 bits.
MAX_RELATIVE_QUANTIZATION_ERROR = 1e-3

Outcomes = collections.namedtuple("Outcomes", ["values", "bits", "thresholds"])
Outcomes.__doc__ = """One uniform draw per token and the outcomes it falls in.

Attributes:
    values: uint16 or uint32 draws, one per token.
    bits: 16 or 32.
    thresholds: cumulative: outcome `i` holds the values in
        `[thresholds[i - 1], thresholds[i])` (outcome 0 starts at 0). Python
        ints for fixed probabilities; uint64 scalar tensors when a
        probability is a tensor (a scheduled rate).
"""


def _any_tensor(probabilities):
    return any(tf.is_tensor(p) for p in probabilities)


def thresholds_for(probabilities, bits):
    """Cumulative integer thresholds in `[0, 2**bits]` for `probabilities`.

    Python ints for Python probabilities; for tensor probabilities (a rate
    known only at run time) uint64 scalar tensors.
    """
    if _any_tensor(probabilities):
        cumulative = tf.cumsum(tf.stack([tf.cast(p, tf.float64) for p in probabilities]))
        scaled = tf.clip_by_value(tf.round(cumulative * 2.0**bits), 0.0, 2.0**bits)
        return tf.unstack(tf.cast(scaled, tf.uint64))
    cumulative = np.cumsum(np.asarray(probabilities, np.float64))
    return [int(round(float(c) * 2**bits)) for c in cumulative]


def precise_enough(probabilities, bits):
    """True when `bits`-bit thresholds realise every probability closely."""
    counts = np.diff([0] + thresholds_for(probabilities, bits))
    for probability, count in zip(probabilities, counts):
        ideal = probability * 2**bits
        if probability > 0 and abs(count - ideal) > MAX_RELATIVE_QUANTIZATION_ERROR * ideal:
            return False
    return True


def choose_bits(probabilities):
    """16 when 16-bit thresholds are precise enough for `probabilities`, else 32.

    Probabilities known only at run time (tensors) always get 32 bits.
    """
    if _any_tensor(probabilities):
        return 32
    return 16 if precise_enough(probabilities, 16) else 32


# Odd, so that distinct high words fold to distinct values (2**32 / golden ratio).
SEED_FOLD_MULTIPLIER = 0x9E3779B9


def philox_seed(seed):
    """`seed` as int64 in `[0, 2**32)`: the seeds on which XLA's stateless
    random ops draw what TensorFlow's kernels draw (they read negative or
    wider seed values differently, so the same layer call would mask
    otherwise under `jit_compile=True`). Each value's high 32 bits, times
    an odd constant, are XORed into its low ones, so seeds that differ only
    there (0 and -1, 3 and 3 + 2**32) still draw differently; seeds already
    in range are kept as they are."""
    seed = tf.cast(seed, tf.int64)
    high = tf.bitwise.bitwise_and(tf.bitwise.right_shift(seed, 32), 0xFFFFFFFF)
    mixed = tf.bitwise.bitwise_xor(seed, high * SEED_FOLD_MULTIPLIER)
    return tf.bitwise.bitwise_and(mixed, 0xFFFFFFFF)


def uniform_bits(shape, seed, bits):
    """Uniform unsigned integers of `bits` (16 or 32) bits, shape `shape`.

    16-bit values come two to a 32-bit Philox draw, halving its cost.
    """
    seed = philox_seed(seed)
    if bits == 32:
        words = tf.random.stateless_uniform(
            shape, seed, minval=None, maxval=None, dtype=tf.int32
        )
        return tf.bitcast(words, tf.uint32)
    size = tf.reduce_prod(shape)
    words = tf.random.stateless_uniform(
        [(size + 1) // 2], seed, minval=None, maxval=None, dtype=tf.int32
    )
    halves = tf.reshape(tf.bitcast(words, tf.uint16), [-1])
    return tf.reshape(halves[:size], shape)


def draw_outcomes(shape, seed, probabilities):
    """One draw per token, deciding among outcomes of `probabilities`.

    Args:
        shape: the tokens' shape (a shape tensor or list).
        seed: shape-`[2]` integer seed.
        probabilities: probabilities of consecutive outcomes (sum <= 1).

    Returns:
        An `Outcomes`.
    """
    bits = choose_bits(probabilities)
    return Outcomes(uniform_bits(shape, seed, bits), bits, thresholds_for(probabilities, bits))


def below(values, threshold, bits):
    """`values < threshold` for `bits`-bit unsigned values (`None`: all)."""
    if tf.is_tensor(threshold):
        return tf.less(tf.cast(values, tf.uint64), tf.cast(threshold, tf.uint64))
    if threshold >= 2**bits:
        return None
    return tf.less(values, tf.constant(threshold, values.dtype))


def outcome_is(outcomes, index):
    """bool mask (or `None` for all True) of the tokens in outcome `index`."""
    values, bits, thresholds = outcomes
    high = thresholds[index]
    low = thresholds[index - 1] if index > 0 else 0
    if tf.is_tensor(high) or tf.is_tensor(low):
        wide = tf.cast(values, tf.uint64)
        return tf.logical_and(
            tf.greater_equal(wide, tf.cast(low, tf.uint64)),
            tf.less(wide, tf.cast(high, tf.uint64)),
        )
    if high <= low:
        return tf.zeros_like(values, tf.bool)
    if low == 0:
        return below(values, high, bits)
    return below(values - tf.constant(low, values.dtype), high - low, bits)


def logical_and(*masks):
    """AND of boolean masks, where `None` stands for all True."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    result = present[0]
    for mask in present[1:]:
        result = tf.logical_and(result, mask)
    return result


def in_xla_context():
    """True while tracing a function XLA compiles (`jit_compile=True`).

    Kernels take their dense, fixed-width form there: XLA needs every shape
    to follow from the input shapes, so no `tf.where` lists of positions and
    no ragged intermediates.
    """
    graph = tf.compat.v1.get_default_graph()
    from tensorflow.python.ops import control_flow_util

    return bool(control_flow_util.GraphOrParentsInXlaContext(graph))


def uniform_below(shape, seed, limit, dtype):
    """Integers uniform in `[0, limit)` (`limit` a Python int below 2**32).

    One 32-bit draw `u` each, mapped by multiply-shift, `(u * limit) >> 32`:
    a fixed-shape draw XLA compiles whatever `limit` is (its bias, at most
    `limit / 2**32` relative, is far below any test's resolution).
    """
    words = tf.cast(uniform_bits(shape, seed, 32), tf.uint64)
    scaled = tf.bitwise.right_shift(words * tf.constant(limit, tf.uint64), 32)
    return tf.cast(scaled, dtype)
