"""The one place seeds are derived.

Every random draw in keras_dynmask is a stateless TF op keyed by a
shape-`[2]` int64 seed, and every such seed comes from a function here:

- `fresh_seed()`: a new seed from the operating system on every call
  (unseeded layers);
- `element_seed(base_seed, epoch, index)`: the seed of one dataset element,
  a pure function of its key (`mask_dataset`, the tf.data service path);
- `content_seed(base_seed, token_ids)`: a seed keyed by a batch's content
  (a fixed evaluation masking that does not depend on batch order);
- `keyed_seed(base_seed, *keys)`: any other key (an epoch's data order, a
  batch index);
- `split_seed(seed, n)`: `n` independent seeds from one, one per draw;
- `layer_generator(seed)` / `call_seed(seed, generator)`: the seed of one
  layer call (a call-time seed, else the layer's generator, else fresh).
"""

from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask import validation
from keras_dynmask.kernels import random_bits

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# Distinguishes element seeds from other seeds made from the same base seed.
ELEMENT_SEED_SALT = 0x6D61736B


def _base(base_seed, salt=0):
    return tf.constant([int(base_seed) % 2**63, salt], tf.int64)


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


def keyed_seed(base_seed, *keys):
    """A shape-`[2]` int64 seed, a pure function of `base_seed` and `keys`.

    Args:
        base_seed: Python int.
        *keys: int scalars (Python or tensors), folded in one by one.
    """
    seed = _base(base_seed)
    for key in keys:
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(key, tf.int64))
    return seed


def element_seed(base_seed, epoch, index):
    """The shape-`[2]` seed of one dataset element: a pure function of its key.

    Args:
        base_seed: int, the user's seed.
        epoch: int64 scalar, which pass over the data.
        index: int64 scalar, the element's position within the pass.
    """
    seed = _base(base_seed, ELEMENT_SEED_SALT)
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(epoch, tf.int64))
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(index, tf.int64))


def content_fingerprint(token_ids):
    """A deterministic int64 summary of a batch's content."""
    if isinstance(token_ids, tf.RaggedTensor):
        token_ids = token_ids.to_tensor()
    values = tf.reshape(tf.cast(token_ids, tf.int64), [-1])
    weights = tf.range(1, tf.size(values, tf.int64) + 1, dtype=tf.int64)
    return tf.reduce_sum(values * (2 * weights + 1))


def content_seed(base_seed, token_ids):
    """A seed keyed by `base_seed` and the content of `token_ids`."""
    return keyed_seed(base_seed, content_fingerprint(token_ids))


def split_seed(seed, num_seeds):
    """`num_seeds` independent shape-`[2]` seeds derived from `seed`.

    Split from `random_bits.philox_seed(seed)`, so that XLA splits alike.
    """
    seed = random_bits.philox_seed(seed)
    return tf.unstack(tf.random.experimental.stateless_split(seed, num_seeds))


def layer_generator(seed):
    """A layer's seed generator: `None` unseeded, else one started at `seed`.

    A seeded layer draws each call's seed from it: the same sequence run to
    run when calls come in a fixed order.
    """
    return None if seed is None else tf.random.Generator.from_seed(seed)


def backend_seed_generator(seed):
    """A layer's `keras.random.SeedGenerator` for JAX and PyTorch models.

    `None` under the TensorFlow backend, where the TF generator above is
    used (no extra variable in TF models and SavedModels). Keras carries
    its state through jit: each training step draws a fresh seed.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        return None
    return keras.random.SeedGenerator(seed)


def backend_content_seed(base_seed, token_ids):
    """`content_seed` for JAX and PyTorch tensors: an int32 `[2]` seed keyed
    by `base_seed` and the batch's content (wrapping int32 arithmetic)."""
    import keras

    from keras_dynmask.kernels import op_set

    ops = op_set.KERAS
    values = ops.reshape(ops.cast(token_ids, "int32"), [-1])
    weights = 2 * ops.arange(values.shape[0], dtype="int32") + 1
    fingerprint = ops.sum(values * weights)
    base = keras.ops.convert_to_tensor([int(base_seed) % 2**31, 0x6D61], dtype="int32")
    return ops.fold_seed(base + fingerprint, 1)


def backend_call_seed(seed, generator):
    """`call_seed` on JAX and PyTorch: a call-time `seed` (checked), else the
    next seed of the layer's `keras.random.SeedGenerator`."""
    if seed is None:
        return generator.next()
    return validation.backend_call_seed(seed)


def call_seed(seed, generator):
    """The shape-`[2]` seed of one layer call.

    A call-time `seed` (checked; its value, not its dtype, counts), else the
    next seed of the layer's `generator`, else `fresh_seed()`.
    """
    if seed is not None:
        return validation.call_seed(seed)
    if generator is None:
        return fresh_seed()
    return generator.make_seeds(1)[:, 0]
