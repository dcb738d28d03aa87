"""The one set of argument and input checks every keras_dynmask layer uses.

Configuration checks run in Python at construction and return the value as
a plain Python `int` / `float` / `list`: NumPy scalars (`np.int64(5)`,
`np.float32(0.15)`) and 0-d arrays count as the Python value they hold, and
1-d arrays as lists, so a layer's `get_config` always holds JSON-friendly
values. Every message quotes `name=value`, as `keras.layers.Dropout` does.

Input checks look at a tensor's static dtype and rank where they are known
and add run-time assertions (`require`) where only the values tell.
"""

import contextlib
import numbers

import numpy as np
from keras_dynmask.lazy_tensorflow import tf


def _plain(value):
    """A NumPy scalar or 0-d array as its Python value; others unchanged."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def is_integer(value):
    """True for Python and NumPy integers (not bools)."""
    value = _plain(value)
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _interval(low, high, low_open=False, high_open=True):
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>' if low_open else '>='} {low}"
    if low is None:
        return f" {'<' if high_open else '<='} {high}"
    return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def _outside(value, low, high, low_open, high_open):
    if low is not None and (value < low or (low_open and value == low)):
        return True
    if high is not None and (value > high or (high_open and value == high)):
        return True
    return False


def as_int(name, value, low=None, high=None, allow_none=False):
    """`value` as a Python int in `[low, high)`, else a `ValueError`.

    Args:
        name: the argument's name, quoted in the message.
        value: a Python or NumPy integer (or `None` when `allow_none`).
        low: inclusive lower bound, or `None`.
        high: exclusive upper bound, or `None`.
        allow_none: whether `None` is accepted (and returned).
    """
    if value is None and allow_none:
        return None
    plain = _plain(value)
    if not is_integer(plain) or _outside(plain, low, high, False, True):
        kind = "None or an integer" if allow_none else "an integer"
        raise ValueError(
            f"`{name}` must be {kind}{_interval(low, high)}. "
            f"Received: {name}={value!r}"
        )
    return int(plain)


def as_float(name, value, low=None, high=None, low_open=False, high_open=False, as_written=False):
    """`value` as a Python float inside the given interval, else a `ValueError`.

    `as_written=True` (a ratio read in exact decimal arithmetic) takes a
    NumPy float as the decimal it prints as: `np.float32(0.6)` is 0.6, not
    the 0.6000000238... it holds.
    """
    if as_written and isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if as_written and isinstance(value, np.floating):
        value = float(str(value))
    plain = _plain(value)
    ok = isinstance(plain, numbers.Real) and not isinstance(plain, bool)
    if ok:
        plain = float(plain)
        ok = np.isfinite(plain) and not _outside(plain, low, high, low_open, high_open)
    if not ok:
        raise ValueError(
            f"`{name}` must be a float{_interval(low, high, low_open, high_open)}. "
            f"Received: {name}={value!r}"
        )
    return plain


def as_int_list(name, value, low=None, high=None):
    """A list, tuple or 1-d array of integers as a list of Python ints."""
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.ndim == 1 else value
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple, set, frozenset, range)):
        raise ValueError(
            f"`{name}` must be a list of integers. Received: {name}={value!r}"
        )
    values = list(value)
    if not all(is_integer(v) for v in values) or any(
        _outside(_plain(v), low, high, False, True) for v in values
    ):
        raise ValueError(
            f"`{name}` must hold integers{_interval(low, high)}. "
            f"Received: {name}={value!r}"
        )
    return [int(_plain(v)) for v in values]


def as_bool_table(name, value, size, allow_none=True):
    """A 1-d sequence of `size` bools as a read-only NumPy bool array, else a `ValueError`.

    Accepts a list, tuple, NumPy array or eager tensor of bools (or of 0/1
    integers).
    """
    if value is None and allow_none:
        return None
    if hasattr(value, "numpy") and callable(value.numpy):  # an eager tensor
        value = value.numpy()
    array = np.asarray(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    if (
        array is None
        or array.ndim != 1
        or array.shape[0] != size
        or not (array.dtype == bool or (array.dtype.kind in "iu" and np.isin(array, (0, 1)).all()))
    ):
        if array is None:
            shown = type(value).__name__ if hasattr(value, "shape") else value
        else:
            shown = value if array.size <= 8 else f"array of shape {array.shape}"
        raise ValueError(
            f"`{name}` must be {'None or ' if allow_none else ''}{size} bools, one per id. "
            f"Received: {name}={shown!r}"
        )
    table = array.astype(bool)  # a copy: the caller's array may change later
    table.setflags(write=False)
    return table


def as_choice(name, value, choices):
    """`value` if it is one of `choices`, else a `ValueError` listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"`{name}` must be one of {tuple(choices)}. Received: {name}={value!r}"
        )
    return value


def as_seed(value, name="seed"):
    """A constructor seed: `None` or a Python int (any size, folded to int64)."""
    if value is None:
        return None
    if not is_integer(value):
        raise ValueError(f"`{name}` must be None or an int. Received: {name}={value!r}")
    return int(_plain(value))


def as_dataset(value, name="dataset"):
    """`value` if it is a `tf.data.Dataset`, else a `ValueError`."""
    if not isinstance(value, tf.data.Dataset):
        raise ValueError(
            f"`{name}` must be a tf.data.Dataset. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    return value


# Tensors.


def static_rank(tensor):
    """Static rank of a tensor or `KerasTensor`, `None` when unknown."""
    shape = tensor.shape
    if isinstance(shape, tf.TensorShape):
        return shape.rank
    return None if shape is None else len(shape)


def shape_text(tensor):
    """A tensor's static shape for messages, e.g. `[None, 128]`."""
    shape = tensor.shape
    if isinstance(shape, tf.TensorShape):
        return str(shape.as_list()) if shape.rank is not None else "<unknown rank>"
    return str(list(shape))


def is_ragged(value):
    """True for a `tf.RaggedTensor` or a ragged `KerasTensor`."""
    return isinstance(value, tf.RaggedTensor) or bool(getattr(value, "ragged", False))


def dtype_name(tensor):
    """`"int32"`, `"float32"`, ...: a TF, NumPy, JAX or PyTorch dtype's name."""
    dtype = tensor.dtype
    if isinstance(dtype, tf.DType):
        return dtype.name
    try:
        import keras

        return keras.backend.standardize_dtype(dtype)
    except ValueError:
        return str(dtype)


def check_integer_ids(owner, name, tensor, ranks):
    """Static checks of an id tensor: int32/int64, a rank in `ranks`.

    Args:
        owner: the layer's name for messages, e.g. `"PaddingMask"`.
        name: the argument's name, e.g. `"token_ids"`.
        tensor: a tensor, ragged tensor or `KerasTensor`.
        ranks: the accepted ranks, e.g. `(1, 2)`.
    """
    if not hasattr(tensor, "dtype") or not hasattr(tensor, "shape"):
        raise ValueError(
            f"{owner} takes a tensor of token ids. Received: {name}={tensor!r}"
        )
    dtype = dtype_name(tensor)
    if dtype not in ("int32", "int64"):
        raise ValueError(
            f"{owner} needs int32 or int64 {name}. Received: {name} of "
            f"dtype {dtype} and shape {shape_text(tensor)}"
        )
    rank = static_rank(tensor)
    if rank is not None and rank not in ranks:
        raise ValueError(
            f"{owner} needs {name} of rank {' or '.join(map(str, ranks))}. "
            f"Received: {name} of rank {rank}, shape {shape_text(tensor)}"
        )
    if is_ragged(tensor) and rank != 2:
        raise ValueError(
            f"{owner} needs ragged {name} of shape [B, (T)]. "
            f"Received: {name} of shape {shape_text(tensor)}"
        )


def rank_checks(owner, name, tensor, ranks):
    """Run-time rank check of a tensor whose static rank is unknown.

    Returns the assert ops to run first (none when the static rank is known,
    which `check_integer_ids` settles, or for a ragged tensor).
    """
    if static_rank(tensor) is not None or is_ragged(tensor) or not tf.is_tensor(tensor):
        return []
    rank = tf.rank(tensor)
    return require(
        tf.reduce_any(tf.equal(rank, list(ranks))),
        f"{owner} needs {name} of rank {' or '.join(map(str, ranks))}",
        rank=rank,
    )


def fits_dtype(name, value, tensor, what):
    """`ValueError` unless the Python int `value` fits `tensor`'s integer dtype.

    `what` names the output that takes `tensor`'s dtype (e.g. `"labels"`).
    """
    dtype = tf.as_dtype(dtype_name(tensor))
    if not dtype.min <= value <= dtype.max:
        raise ValueError(
            f"`{name}` must fit the {what}' dtype, that of the ids ({dtype.name}); "
            f"pass int64 ids for a wider one. Received: {name}={value!r}"
        )


def require(condition, message, **values):
    """Checks a tensor condition: `ValueError` now when eager, else an assert.

    `values` name the tensors the message quotes. Returns the assert ops to
    run first (none when eager); wrap the result in
    `tf.control_dependencies`.
    """
    if tf.executing_eagerly():
        if not bool(condition):
            shown = ", ".join(
                f"{name}={np.asarray(value).tolist()}" for name, value in values.items()
            )
            raise ValueError(f"{message}. Received: {shown}")
        return []
    data = [message + ". Received:"]
    for name, value in values.items():
        data += [f"{name}=", value]
    return [tf.debugging.Assert(condition, data, summarize=8)]


def dependencies(checks):
    """`tf.control_dependencies(checks)`, or a context doing nothing when
    there are no checks (eager, or on JAX and PyTorch tensors)."""
    if not checks:
        return contextlib.nullcontext()
    return tf.control_dependencies(checks)


def ids_below(values, vocabulary_size):
    """bool scalar: every id of `values` lies in `[0, vocabulary_size)`.

    One unsigned max decides: negative ids become huge unsigned ones, and an
    empty tensor gives 0.
    """
    unsigned = tf.uint32 if values.dtype == tf.int32 else tf.uint64
    return tf.reduce_max(tf.bitcast(values, unsigned)) < tf.cast(vocabulary_size, unsigned)


def checked_ids_below(owner, values, vocabulary_size):
    """`values`, after a run-time check that every id lies in `[0, vocabulary_size)`.

    One unsigned max decides; the message's min and max are computed only on
    failure. Under XLA the assertion is dropped (the caller must then make
    out-of-range ids harmless).
    """

    def raise_out_of_range():
        check = tf.debugging.Assert(
            False,
            [
                f"{owner} received token ids outside "
                f"[0, vocabulary_size={vocabulary_size}): min id",
                tf.reduce_min(values),
                "max id",
                tf.reduce_max(values),
            ],
            summarize=1,
        )
        with tf.control_dependencies([check]):
            return tf.identity(values)

    return tf.cond(ids_below(values, vocabulary_size), lambda: values, raise_out_of_range)


def call_seed(seed):
    """A call-time seed as an int64 `[2]` tensor, checked.

    Its value, not its dtype, decides the mask: `[7, 42]` as int32 and as
    int64 give the same seed.
    """
    if isinstance(seed, (list, tuple, np.ndarray)):
        array = np.asarray(seed)
        if array.dtype.kind not in "iu" or array.shape != (2,):
            raise ValueError(
                "A call-time `seed` must be two integers, shape [2]. "
                f"Received: seed={seed!r}"
            )
        return tf.constant(array, tf.int64)
    if not isinstance(seed, (tf.Tensor, tf.Variable)):
        raise ValueError(
            "A call-time `seed` must be an integer tensor of shape [2]. "
            f"Received: seed={seed!r}"
        )
    if not seed.dtype.is_integer:
        raise ValueError(
            "A call-time `seed` must be an integer tensor of shape [2]. "
            f"Received: seed of dtype {seed.dtype.name}"
        )
    if seed.shape.rank is not None and seed.shape.as_list() not in ([2], [None]):
        raise ValueError(
            "A call-time `seed` must be an integer tensor of shape [2]. "
            f"Received: seed of shape {shape_text(seed)}"
        )
    return tf.reshape(tf.cast(seed, tf.int64), [2])


def backend_call_seed(seed):
    """A call-time seed on JAX or PyTorch as an int32 `[2]` backend tensor.

    Two integers (a list, array or integer tensor of shape `[2]`); under
    jit its value is not checked.
    """
    import keras

    if isinstance(seed, (list, tuple, np.ndarray)) or np.isscalar(seed):
        array = np.asarray(seed)
        if array.dtype.kind not in "iu" or array.shape != (2,):
            raise ValueError(
                "A call-time `seed` must be two integers, shape [2]. "
                f"Received: seed={seed!r}"
            )
        return keras.ops.convert_to_tensor(array.astype(np.int64) % 2**31, dtype="int32")
    if not hasattr(seed, "dtype") or "int" not in dtype_name(seed) or tuple(seed.shape) != (2,):
        raise ValueError(
            "A call-time `seed` must be an integer tensor of shape [2]. "
            f"Received: seed={seed!r}"
        )
    return keras.ops.cast(seed, "int32")


def call_step(step):
    """A call-time schedule `step` as an int64 scalar tensor, checked.

    The step counts the batches masked before, so it is at least 0: a
    negative one is a `ValueError` (eagerly; in a graph a failed assertion,
    and under XLA, which drops assertions, it counts as 0) rather than a
    schedule evaluated before its start.
    """
    if isinstance(step, bool) or not (is_integer(step) or tf.is_tensor(step)):
        raise ValueError(
            f"A call-time `step` must be an integer scalar. Received: step={step!r}"
        )
    if not tf.is_tensor(step):
        if _plain(step) < 0:
            raise ValueError(
                "A call-time `step` must be >= 0 (the number of batches masked "
                f"before). Received: step={step!r}"
            )
        return tf.constant(int(_plain(step)), tf.int64)
    if not step.dtype.is_integer or (step.shape.rank not in (None, 0)):
        raise ValueError(
            "A call-time `step` must be an integer scalar. Received: step "
            f"of dtype {step.dtype.name} and shape {shape_text(step)}"
        )
    step = tf.cast(step, tf.int64)
    checks = require(
        step >= 0,
        "A call-time `step` must be >= 0 (the number of batches masked before)",
        step=step,
    )
    with tf.control_dependencies(checks):
        return tf.maximum(step, 0)


def refuse_ragged_under_xla(owner, name, tensor, in_xla):
    """`ValueError` for a ragged `tensor` when compiling with XLA (`in_xla`).

    XLA has no kernels for ragged tensors' conversions; the message says to
    pad the input first.
    """
    if in_xla and is_ragged(tensor):
        raise ValueError(
            f"{owner} under XLA (`jit_compile=True`, Keras' default on a GPU) "
            f"needs dense {name}: XLA cannot convert a tf.RaggedTensor. Pad it "
            f"first (e.g. `{name}.to_tensor()`, padding with the layer's "
            f"pad_token_id) or run without XLA. Received: ragged {name} of shape "
            f"{shape_text(tensor)}"
        )


LENGTHS_RANGE_MESSAGE = (
    "`lengths` must lie in [0, T], T the inputs' length (a length past T is "
    "often a count in other units, e.g. audio samples instead of frames)"
)


def length_checks(lengths, batch_size, sequence_length):
    """TensorFlow: `lengths` holds `batch_size` values in `[0, T]`.

    A `ValueError` when eager, else asserts to run first (which XLA drops:
    the kernels then clip lengths to `[0, T]`).
    """
    lengths = tf.reshape(lengths, [-1]) if lengths.shape.rank is None else lengths
    checks = []
    if not isinstance(batch_size, int) or lengths.shape[0] != batch_size:
        size = tf.size(lengths, out_type=tf.int32)
        checks += require(
            tf.equal(size, batch_size),
            "`lengths` must have shape [B], one per row of the inputs",
            size=size,
            batch_size=batch_size,
        )
    length = tf.cast(sequence_length, lengths.dtype)
    checks += require(
        tf.reduce_all((lengths >= 0) & (lengths <= length)),
        LENGTHS_RANGE_MESSAGE,
        lengths=lengths,
        T=sequence_length,
    )
    return checks


def check_length_values(lengths, sequence_length):
    """JAX and PyTorch, called eagerly: `lengths` in `[0, T]` (a `ValueError`).

    Traced values (under jit) cannot be read and are left to the kernels,
    which clip them to `[0, T]`.
    """
    import keras

    try:
        values = np.asarray(keras.ops.convert_to_numpy(lengths))
    except Exception:  # a tracer: no values to check
        return
    if values.size and (values.min() < 0 or values.max() > sequence_length):
        raise ValueError(
            f"{LENGTHS_RANGE_MESSAGE}. Received: lengths={values.tolist()}, T={sequence_length}"
        )


def check_lengths_tensor(owner, lengths, batch_size, name="lengths"):
    """Static checks of a `lengths` tensor: integers, shape `[B]`.

    `batch_size`: the inputs' static batch size, or `None`.
    """
    if not hasattr(lengths, "dtype") or "int" not in dtype_name(lengths):
        shown = lengths if not hasattr(lengths, "dtype") else f"a tensor of dtype {dtype_name(lengths)}"
        raise ValueError(
            f"{owner}: `{name}` must be integers [B], each row's number of real "
            f"frames or tokens. Received: {shown!r}"
        )
    rank = static_rank(lengths)
    received = tuple(lengths.shape) if rank is not None else None
    if received is not None and (
        len(received) != 1 or None not in (batch_size, received[0]) and batch_size != received[0]
    ):
        raise ValueError(
            f"{owner}: `{name}` must have shape [B] with B = {batch_size}, the batch "
            f"size of the inputs. Received: {name} of shape {shape_text(lengths)}"
        )
