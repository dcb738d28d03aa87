"""`CausalMask`: causal attention masks computed from each batch's shape."""

import functools

import keras
import numpy as np
from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask import validation
from keras_dynmask.kernels import attention_masks
from keras_dynmask.kernels import op_set
from keras_dynmask.masking_layer import MaskingLayer
from keras_dynmask.masking_layer import backend_values
from keras_dynmask.masking_layer import to_tensor


@keras.saving.register_keras_serializable(package="keras_dynmask")
class CausalMask(MaskingLayer):
    """Causal self-attention mask for a batch, at whatever length it has.

    Returns a bool `[B, T, T]` tensor, True where query `i` may attend key
    `j`: the `attention_mask` that `keras.layers.MultiHeadAttention` takes.
    Only the runtime shape of `inputs` is used (ids `[B, T]` or hidden states
    `[B, T, D]`), so any sequence length works, including a `None` length in
    a SavedModel.

    Rules, in this order:

    1. direction and window: `"forward"` allows `j <= i`, `"backward"`
       allows `j >= i`; `window=w` also needs `|i - j| < w`.
    2. `prefix_length` (forward only): positions inside the prefix see the
       whole prefix both ways (prefix-LM), whatever `window` says.
    3. `segment_ids`: attention stays inside a segment (packed sequences).
    4. `padding_mask`: padded keys are never attended; a padded query
       attends only itself.

    Every row keeps its diagonal, so no row is empty and attention stays
    finite even for a fully padded sequence or with `-inf` masking.

    A ragged `inputs` (`[B, (T)]` or `[B, (T), D]`) gives the mask of the
    padded batch, with the positions past each row's end counted as padding.
    Ragged `padding_mask` and `segment_ids` are padded the same way.

    Args:
        direction: `"forward"` (decoders: look back) or `"backward"` (look
            ahead).
        window: `None`, or an int >= 1: a query sees keys less than `window`
            positions away (itself included), on its `direction` side.
        **kwargs: base layer arguments, such as `name`.

    Call arguments:
        inputs: ids `[B, T]` or hidden states `[B, T, D]`, dense, ragged or
            NumPy; only its shape is read.
        padding_mask: optional `[B, T]`, True (or nonzero) at real tokens,
            e.g. the output of `PaddingMask()`.
        segment_ids: optional integer `[B, T]`; a query sees only keys with
            its own segment id.
        prefix_length: optional int or integer tensor of shape `[]` or
            `[B]`, the length of each sequence's bidirectional prefix
            (forward only; values past `T`, int64 ones included, mean the
            whole sequence). A negative value is an error (an assertion in
            graphs); under XLA, which drops assertions, it counts as 0.

    Returns:
        A bool tensor `[B, T, T]`.

    Example:

    >>> import numpy as np
    >>> ids = np.array([[5, 6, 7, 0]], dtype="int32")
    >>> mask = CausalMask()(ids, padding_mask=ids != 0)
    >>> mask.numpy()[0].astype(int)
    array([[1, 0, 0, 0],
           [1, 1, 0, 0],
           [1, 1, 1, 0],
           [0, 0, 0, 1]])
    >>> CausalMask(window=2)(ids, prefix_length=2).numpy()[0].astype(int)
    array([[1, 1, 0, 0],
           [1, 1, 0, 0],
           [0, 1, 1, 0],
           [0, 0, 1, 1]])
    """

    def __init__(self, direction: str = "forward", window: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.direction = validation.as_choice(
            "direction", direction, attention_masks.DIRECTIONS
        )
        self.window = validation.as_int("window", window, 1, allow_none=True)

    def get_config(self):
        config = super().get_config()
        config.update({"direction": self.direction, "window": self.window})
        return config

    def call(
        self,
        inputs: "tf.Tensor | tf.RaggedTensor",
        padding_mask: "tf.Tensor | None" = None,
        segment_ids: "tf.Tensor | None" = None,
        prefix_length: "int | tf.Tensor | None" = None,
    ) -> "tf.Tensor":
        ops, inputs = backend_values(inputs)
        if ops is op_set.KERAS:
            return self._call_on_backend(
                ops, inputs, padding_mask, segment_ids, prefix_length
            )
        self._check_inputs(inputs)
        # Run-time shape checks, run before the mask is built.
        checks = validation.rank_checks("CausalMask", "inputs", inputs, (2, 3))
        with tf.control_dependencies(checks):
            batch_size, sequence_length = _batch_and_length(inputs)
        # Every source of padding: past the end of ragged rows (of the
        # inputs or of a ragged argument), and where padding_mask is False.
        real_tokens = []
        if isinstance(inputs, tf.RaggedTensor):
            real_tokens.append(_inside_rows(inputs, sequence_length))
        per_token = {"padding_mask": padding_mask, "segment_ids": segment_ids}
        for name, value in per_token.items():
            if value is None:
                continue
            value = to_tensor(value)
            self._check_per_token(value, name, inputs)
            per_token[name], inside_rows, more_checks = _dense_per_token(
                value, name, inputs, batch_size, sequence_length
            )
            real_tokens += inside_rows
            checks += more_checks
        padding_mask, segment_ids = per_token["padding_mask"], per_token["segment_ids"]
        if padding_mask is not None:
            if padding_mask.dtype != tf.bool:
                padding_mask = tf.not_equal(padding_mask, 0)
            real_tokens.append(padding_mask)
        if prefix_length is not None:
            self._check_prefix_length(prefix_length, inputs)
            if not isinstance(prefix_length, (int, np.integer)):
                prefix_length = tf.convert_to_tensor(prefix_length)
                checks += _prefix_length_checks(prefix_length, batch_size)

        with tf.control_dependencies(checks):
            return attention_masks.causal_attention_mask(
                batch_size,
                sequence_length,
                direction=self.direction,
                window=self.window,
                prefix_length=prefix_length,
                segment_ids=segment_ids,
                padding_mask=functools.reduce(tf.logical_and, real_tokens)
                if real_tokens
                else None,
                ops=ops,
            )

    def _call_on_backend(self, ops, inputs, padding_mask, segment_ids, prefix_length):
        """The mask on JAX or PyTorch tensors (`keras.ops`, jit-friendly).

        Shapes are checked statically; values are not checked at run time
        (as under XLA): a negative `prefix_length` counts as 0.
        """
        self._check_inputs(inputs)
        batch_size, sequence_length = ops.shape(inputs)[:2]
        if padding_mask is not None:
            padding_mask = ops.convert(padding_mask)
            self._check_per_token(padding_mask, "padding_mask", inputs)
            if ops.dtype_name(padding_mask) != "bool":
                padding_mask = ops.not_equal(padding_mask, 0)
        if segment_ids is not None:
            segment_ids = ops.convert(segment_ids)
            self._check_per_token(segment_ids, "segment_ids", inputs)
        if prefix_length is not None:
            if not isinstance(prefix_length, (int, np.integer)):
                prefix_length = ops.convert(prefix_length)
            self._check_prefix_length(prefix_length, inputs)
        return attention_masks.causal_attention_mask(
            batch_size,
            sequence_length,
            direction=self.direction,
            window=self.window,
            prefix_length=prefix_length,
            segment_ids=segment_ids,
            padding_mask=padding_mask,
            ops=ops,
        )

    def compute_output_shape(self, input_shape, *args, **kwargs):
        batch_size, sequence_length = tuple(input_shape)[:2]
        return (batch_size, sequence_length, sequence_length)

    def compute_output_spec(
        self, inputs, padding_mask=None, segment_ids=None, prefix_length=None
    ):
        self._check_inputs(inputs)
        for name, value in (
            ("padding_mask", padding_mask),
            ("segment_ids", segment_ids),
        ):
            if value is not None:
                self._check_per_token(value, name, inputs)
        if prefix_length is not None:
            self._check_prefix_length(prefix_length, inputs)
        batch_size, sequence_length = tuple(inputs.shape)[:2]
        return keras.KerasTensor(
            (batch_size, sequence_length, sequence_length), dtype="bool"
        )

    # Validation. What is wrong in static shapes, dtypes or Python values
    # raises ValueError at call (or trace) time; what only the values of a
    # graph tensor reveal is checked by TF asserts at run time.

    def _check_inputs(self, inputs):
        if not hasattr(inputs, "shape"):
            raise ValueError(
                "CausalMask takes ids [B, T] or hidden states [B, T, D]. "
                f"Received: inputs={inputs!r}"
            )
        rank = _rank(inputs)
        if rank is not None and rank not in (2, 3):
            raise ValueError(
                "CausalMask needs inputs of shape [B, T] (ids) or [B, T, D] "
                f"(hidden states). Received: inputs of shape {_shape_text(inputs)}"
            )
        if isinstance(inputs, tf.RaggedTensor) and inputs.ragged_rank != 1:
            raise ValueError(
                "CausalMask needs ragged inputs of shape [B, (T)] or "
                f"[B, (T), D]. Received: inputs of shape {inputs.shape} with "
                f"ragged_rank {inputs.ragged_rank}"
            )

    def _check_per_token(self, value, name, inputs):
        """Checks `padding_mask` or `segment_ids` against `inputs`."""
        dtype = keras.backend.standardize_dtype(value.dtype)
        if name == "segment_ids" and "int" not in dtype:
            raise ValueError(
                "`segment_ids` must be an integer tensor. Received: "
                f"segment_ids of dtype {dtype}"
            )
        if name == "padding_mask" and dtype == "string":
            raise ValueError(
                "`padding_mask` must be bool (or numbers, nonzero = real). "
                f"Received: padding_mask of dtype {dtype}"
            )
        rank = _rank(value)
        expected = _static_batch_and_length(inputs)
        received = tuple(value.shape)[:2] if rank == 2 else None
        if _is_ragged(value) or _is_ragged(inputs):
            # Ragged rows are padded to the inputs' length at run time.
            expected = (expected[0], None)
            if received is not None:
                received = (received[0], None)
        if (rank is not None and rank != 2) or (
            received is not None
            and any(
                e is not None and r is not None and e != r
                for e, r in zip(expected, received)
            )
        ):
            raise ValueError(
                f"`{name}` must have shape [B, T] like the inputs "
                f"{_shape_text(inputs)}. Received: {name} of shape "
                f"{_shape_text(value)}"
            )

    def _check_prefix_length(self, prefix_length, inputs):
        if self.direction != "forward":
            raise ValueError(
                "`prefix_length` needs direction='forward' (the prefix looks "
                "both ways, the rest decodes forward). Received: "
                f"prefix_length={prefix_length!r} with "
                f"direction={self.direction!r}"
            )
        if isinstance(prefix_length, (int, np.integer)) and not isinstance(
            prefix_length, bool
        ):
            if prefix_length < 0:
                raise ValueError(
                    "`prefix_length` must be >= 0. Received: "
                    f"prefix_length={prefix_length!r}"
                )
            return
        prefix_length = to_tensor(prefix_length)
        dtype = getattr(prefix_length, "dtype", None)
        if (
            dtype is None
            or isinstance(prefix_length, tf.RaggedTensor)
            or "int" not in keras.backend.standardize_dtype(dtype)
        ):
            raise ValueError(
                "`prefix_length` must be an int or an integer tensor of shape "
                f"[] or [B]. Received: prefix_length={prefix_length!r}"
            )
        rank = _rank(prefix_length)
        batch = _static_batch_and_length(inputs)[0]
        received = tuple(prefix_length.shape)[0] if rank == 1 else None
        if (rank is not None and rank > 1) or (
            received is not None and batch is not None and received != batch
        ):
            raise ValueError(
                f"`prefix_length` must have shape [] or [B] with B = {batch}, "
                "the batch size of the inputs. Received: prefix_length of "
                f"shape {_shape_text(prefix_length)}"
            )


def _is_ragged(value):
    return isinstance(value, tf.RaggedTensor) or bool(getattr(value, "ragged", False))


def _rank(tensor):
    """Static rank of a tensor or `KerasTensor`, None when unknown."""
    shape = tensor.shape
    if isinstance(shape, tf.TensorShape):
        return shape.rank
    return len(shape)


def _shape_text(tensor):
    shape = tensor.shape
    if isinstance(shape, tf.TensorShape):
        return str(shape.as_list()) if shape.rank is not None else "<unknown>"
    return str(list(shape))


def _static_batch_and_length(inputs):
    if _rank(inputs) is None:
        return (None, None)
    batch_size, sequence_length = tuple(inputs.shape)[:2]
    return batch_size, sequence_length


def _batch_and_length(inputs):
    """`(B, T)`: Python ints where static, scalar int32 tensors otherwise."""
    if isinstance(inputs, tf.RaggedTensor):
        batch_size = inputs.shape[0]
        if batch_size is None:
            batch_size = inputs.nrows(out_type=tf.int32)
        sequence_length = tf.cast(inputs.bounding_shape(axis=1), tf.int32)
        return batch_size, sequence_length
    static = inputs.shape
    dynamic = tf.shape(inputs)
    batch_size = static[0] if static[0] is not None else dynamic[0]
    sequence_length = static[1] if static[1] is not None else dynamic[1]
    return batch_size, sequence_length


def _inside_rows(ragged, sequence_length):
    """bool `[B, T]`: True inside each ragged row."""
    return tf.sequence_mask(ragged.row_lengths(), tf.cast(sequence_length, tf.int64))


def _dense_per_token(value, name, inputs, batch_size, sequence_length):
    """`padding_mask` or `segment_ids` as a dense `[B, T]` tensor.

    Returns `(dense, inside_rows, checks)`: for a ragged `value`,
    `inside_rows` holds its bool `[B, T]` row mask (past a row's end is
    padding); `checks` are the run-time shape checks that static shapes could
    not settle.
    """
    if isinstance(value, tf.RaggedTensor):
        checks = _require(
            tf.equal(tf.cast(value.nrows(), tf.int32), batch_size),
            f"`{name}` must have as many rows as the inputs",
            rows=value.nrows(),
            batch_size=batch_size,
        ) + _require(
            tf.less_equal(
                tf.cast(value.bounding_shape(axis=1), tf.int32), sequence_length
            ),
            f"`{name}` rows must be no longer than the inputs' length",
            longest_row=value.bounding_shape(axis=1),
            length=sequence_length,
        )
        with tf.control_dependencies(checks):
            dense = value.to_tensor(shape=[batch_size, sequence_length])
        return dense, [_inside_rows(value, sequence_length)], []
    static_shape = tuple(value.shape)
    if all(isinstance(d, int) for d in (batch_size, sequence_length)) and (
        static_shape == (batch_size, sequence_length)
    ):
        return value, [], []
    received = tf.shape(value, out_type=tf.int32)
    expected = tf.stack([batch_size, sequence_length])
    checks = _require(
        tf.reduce_all(tf.equal(received, expected)),
        f"`{name}` must have shape [B, T] like the inputs",
        shape=received,
        expected=expected,
    )
    return value, [], checks


def _prefix_length_checks(prefix_length, batch_size):
    checks = _require(
        tf.reduce_all(prefix_length >= 0),
        "`prefix_length` must be >= 0",
        prefix_length=prefix_length,
    )
    if prefix_length.shape.rank == 0:
        return checks
    size = tf.size(prefix_length, out_type=tf.int32)
    if isinstance(batch_size, int) and prefix_length.shape.rank == 1:
        if prefix_length.shape[0] == batch_size:
            return checks
    return checks + _require(
        tf.logical_and(tf.rank(prefix_length) <= 1, tf.equal(size, batch_size)),
        "`prefix_length` must have shape [] or [B] with B the batch size of "
        "the inputs",
        shape=tf.shape(prefix_length),
        batch_size=batch_size,
    )


def _require(condition, message, **values):
    """Checks a tensor condition: ValueError now when eager, else an assert.

    `values` name the tensors the message quotes. Returns the assert ops to
    run before the mask (none when eager).
    """
    if tf.executing_eagerly():
        if not bool(condition):
            shown = ", ".join(
                f"{name}={np.asarray(value).tolist()}"
                for name, value in values.items()
            )
            raise ValueError(f"{message}. Received: {shown}")
        return []
    data = [message + ". Received:"]
    for name, value in values.items():
        data += [f"{name}=", value]
    return [tf.debugging.Assert(condition, data)]
