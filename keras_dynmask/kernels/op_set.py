"""The small op set the kernels are written against, bound per call.

A kernel takes an op set `ops` as its first argument and computes with it
and with Python operators (`&`, `|`, `==`, `<`, indexing with `None`), which
TensorFlow, JAX and PyTorch tensors all support. The same kernel then runs:

- with `TENSORFLOW` inside a `tf.data` map (whatever the Keras backend, as
  Keras's own preprocessing layers do), under the TensorFlow backend, and in
  an exported SavedModel;
- with `KERAS` (`keras.ops`, the active backend) inside a JAX or PyTorch
  model, under jit, and on a backend tensor called eagerly, which then
  gets a tensor of that backend back.

`gather_rows(x, indices)` takes, for each row `b`, the entries
`x[b, indices[b, k]]` along axis 1 (`[B, N]` or `[B, N, D]` by `[B, K]`
indices).

`fori_loop(lower, upper, body, init)` runs `state = body(i, state)` for
`i` in `[lower, upper)` (`keras.ops.fori_loop`; a `tf.while_loop`, whose
body XLA compiles once).

`for_values(*values)` picks the binding for a call's inputs. Nothing here
imports TensorFlow: the TensorFlow binding is made on first use, which only
happens once TensorFlow is loaded (a TF tensor, a `tf.data` graph, or the
TensorFlow backend).
"""

import sys
import types

import keras
import numpy as np


def _tensorflow():
    return sys.modules.get("tensorflow")


def is_tensorflow_value(value):
    """True for a TF tensor, ragged tensor or variable."""
    tf = _tensorflow()
    if tf is None:
        return False
    return isinstance(value, (tf.Tensor, tf.RaggedTensor, tf.Variable, tf.SparseTensor))


def in_tensorflow_graph():
    """True while TensorFlow builds a graph (`tf.data` map, `tf.function`)."""
    tf = _tensorflow()
    return tf is not None and not tf.executing_eagerly()


def for_values(*values):
    """The op set for a call on `values`: `TENSORFLOW` or `KERAS`.

    TensorFlow when Keras runs on TensorFlow, when a value is a TF tensor,
    or while a TF graph is built (a `tf.data` map); `keras.ops` otherwise
    (JAX or PyTorch tensors and tracers, NumPy under those backends).
    """
    if keras.backend.backend() == "tensorflow":
        return tensorflow_ops()
    if in_tensorflow_graph() or any(is_tensorflow_value(v) for v in values):
        return tensorflow_ops()
    return KERAS


def _keras_shape(x):
    """Static dims as ints, unknown ones (under jit) as scalar tensors."""
    static = tuple(x.shape)
    if all(isinstance(d, int) for d in static):
        return static
    dynamic = keras.ops.shape(x)
    return tuple(s if isinstance(s, int) else d for s, d in zip(static, dynamic))


def _keras_uniform(shape, seed):
    """Uniform float32 in [0, 1), a pure function of the `[2]` int `seed`."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        key = jax.numpy.asarray(seed).astype("uint32")
        return jax.random.uniform(key, shape, dtype="float32")
    # No stateless generator in the other backends' public APIs: a counter
    # hash (MurmurHash3's 32-bit finaliser over seed and position) in int64.
    bits = hashed_bits(KERAS, shape, seed)
    return keras.ops.cast(bits, "float32") * (1.0 / 2**32)


def hashed_bits(ops, shape, seed):
    """Uniform 32-bit values (in int64) keyed by `seed` and position."""
    mask = 0xFFFFFFFF
    seed = ops.cast(seed, "int64")
    size = 1
    for dim in shape:
        size = size * dim
    counter = ops.arange(size, dtype="int64")
    x = (counter * 0x9E3779B9 + (seed[0] & mask) * 0x85EBCA6B) & mask
    x = (x ^ ((seed[1] & mask) * 0xC2B2AE35 & mask)) & mask
    for multiplier in (0x85EBCA6B, 0xC2B2AE35):
        x = x ^ (x >> 16)
        x = (x * multiplier) & mask
        x = x ^ (x >> 13)
    x = x ^ (x >> 16)
    return ops.reshape(x, shape)


def _keras_fold_seed(seed, key):
    """A new `[2]` seed from `seed` and a Python int `key` (pure)."""
    seed = keras.ops.cast(seed, "int32")
    key_pair = keras.ops.convert_to_tensor(
        [(key * 0x2545F491) % 2**31, (key * 0x6C8E9CF5 + 1) % 2**31], dtype="int32"
    )
    return keras.ops.bitwise_xor(seed * 1103515245 + 12345, key_pair)


KERAS = types.SimpleNamespace(
    name="keras",
    convert=keras.ops.convert_to_tensor,
    cast=keras.ops.cast,
    shape=_keras_shape,
    arange=lambda n, dtype="int32": keras.ops.arange(n, dtype=dtype),
    where=keras.ops.where,
    abs=keras.ops.abs,
    reshape=keras.ops.reshape,
    broadcast_to=keras.ops.broadcast_to,
    clip=keras.ops.clip,
    not_equal=keras.ops.not_equal,
    logical_not=keras.ops.logical_not,
    ones=lambda shape, dtype: keras.ops.ones(shape, dtype=dtype),
    zeros=lambda shape, dtype: keras.ops.zeros(shape, dtype=dtype),
    stack=keras.ops.stack,
    concat=keras.ops.concatenate,
    sum=keras.ops.sum,
    max=keras.ops.max,
    zeros_like=keras.ops.zeros_like,
    cumsum=keras.ops.cumsum,
    argsort=keras.ops.argsort,
    sort=keras.ops.sort,
    take_along_axis=keras.ops.take_along_axis,
    take=keras.ops.take,
    scatter=keras.ops.scatter,
    gather_rows=lambda x, indices: keras.ops.take_along_axis(
        x, keras.ops.expand_dims(indices, -1) if len(x.shape) == 3 else indices, axis=1
    ),
    minimum=keras.ops.minimum,
    maximum=keras.ops.maximum,
    round=keras.ops.round,
    floor=keras.ops.floor,
    sqrt=keras.ops.sqrt,
    exp=keras.ops.exp,
    any=keras.ops.any,
    uniform=_keras_uniform,
    fold_seed=_keras_fold_seed,
    fori_loop=keras.ops.fori_loop,
    dtype_name=lambda x: keras.backend.standardize_dtype(x.dtype),
)


_TENSORFLOW = None


def tensorflow_ops():
    """The TensorFlow binding of the op set (made on first use)."""
    global _TENSORFLOW
    if _TENSORFLOW is None:
        _TENSORFLOW = _make_tensorflow_ops()
    return _TENSORFLOW


def _make_tensorflow_ops():
    import tensorflow as tf

    def shape(x):
        if x.shape.rank is None:
            return tf.shape(x)  # rank known only at run time: a [rank] tensor
        static = x.shape.as_list()
        if all(isinstance(d, int) for d in static):
            return tuple(static)
        dynamic = tf.shape(x)
        return tuple(d if d is not None else dynamic[i] for i, d in enumerate(static))

    def cast(x, dtype):
        return tf.cast(x, dtype)

    def uniform(shape, seed):
        return tf.random.stateless_uniform(shape, seed, dtype=tf.float32)

    def fold_seed(seed, key):
        return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), key)

    def argsort(x, axis=-1):
        return tf.argsort(x, axis=axis, stable=True)

    def scatter(indices, values, shape):
        # Values at repeated indices add up, as keras.ops.scatter's do.
        shape = tf.stack([tf.cast(dim, indices.dtype) for dim in shape])
        return tf.scatter_nd(indices, values, shape)
    def fori_loop(lower, upper, body, init):
        # `keras.ops.fori_loop`'s meaning: `body(i, state)` for i in [lower, upper).
        def step(i, state):
            return i + 1, body(i, state)

        _, state = tf.while_loop(lambda i, _: i < upper, step, (tf.constant(lower), init))
        return state

    def convert(x, dtype=None):
        if isinstance(x, (tf.Tensor, tf.RaggedTensor, tf.Variable)) and dtype is None:
            return x
        return tf.convert_to_tensor(np.asarray(x) if isinstance(x, list) else x, dtype=dtype)

    return types.SimpleNamespace(
        name="tensorflow",
        convert=convert,
        cast=cast,
        shape=shape,
        arange=lambda n, dtype="int32": tf.range(n, dtype=dtype),
        where=tf.where,
        abs=tf.abs,
        reshape=tf.reshape,
        broadcast_to=tf.broadcast_to,
        clip=tf.clip_by_value,
        not_equal=tf.not_equal,
        logical_not=tf.logical_not,
        ones=lambda shape, dtype: tf.ones(shape, dtype=dtype),
        zeros=lambda shape, dtype: tf.zeros(shape, dtype=dtype),
        stack=tf.stack,
        concat=lambda values, axis=0: tf.concat(values, axis),
        sum=lambda x, axis=None: tf.reduce_sum(x, axis=axis),
        max=lambda x, axis=None: tf.reduce_max(x, axis=axis),
        zeros_like=tf.zeros_like,
        cumsum=lambda x, axis=0: tf.cumsum(x, axis=axis),
        argsort=argsort,
        sort=lambda x, axis=-1: tf.sort(x, axis=axis),
        take_along_axis=lambda x, indices, axis: tf.gather(x, indices, batch_dims=1, axis=axis),
        take=tf.gather,
        scatter=scatter,
        gather_rows=lambda x, indices: tf.gather(x, indices, batch_dims=1, axis=1),
        minimum=tf.minimum,
        maximum=tf.maximum,
        round=tf.round,
        floor=tf.floor,
        sqrt=tf.sqrt,
        exp=tf.exp,
        any=lambda x, axis=None: tf.reduce_any(x, axis=axis),
        uniform=uniform,
        fold_seed=fold_seed,
        fori_loop=fori_loop,
        dtype_name=lambda x: keras.backend.standardize_dtype(x.dtype),
    )
