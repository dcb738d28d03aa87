"""Where the random seeds of unseeded masks come from."""

import tensorflow as tf

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def fresh_seed():
    """A shape-`[2]` int64 seed drawn anew on every call, in any process.

    The op carries the seed pair `(0, 0)`, which tells its kernel to seed
    itself from the operating system when it is created: every eager call,
    every `tf.data` iterator (so every epoch, every tf.data service worker
    and job) and every replica gets its own stream, whatever
    `tf.random.set_seed` or `keras.utils.set_random_seed` said. Ops seeded
    from the global seed replay the same values each time a `tf.data`
    pipeline is iterated, and a `tf.random.Generator`'s state is frozen into
    a serialised pipeline; this op does neither. Under
    `tf.config.experimental.enable_op_determinism()` TensorFlow rejects it
    ("random ops must have a seed specified"): pass a seed there.

    Returns:
        An int64 tensor of shape `[2]`.
    """
    return tf.raw_ops.RandomUniformInt(
        shape=tf.constant([2], tf.int32),
        minval=tf.constant(INT64_MIN, tf.int64),
        maxval=tf.constant(INT64_MAX, tf.int64),
        seed=0,
        seed2=0,
    )
