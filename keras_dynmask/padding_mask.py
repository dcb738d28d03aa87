"""`PaddingMask`: padding masks computed from each batch of token ids, frame
lengths or Keras masks, and cross-attention masks between two sequences."""

import keras
from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask import validation
from keras_dynmask.kernels import attention_masks
from keras_dynmask.kernels import op_set
from keras_dynmask.masking_layer import MaskingLayer
from keras_dynmask.masking_layer import backend_values
from keras_dynmask.masking_layer import cast_float_ids_in_models
from keras_dynmask.masking_layer import to_tensor

OUTPUT_MODES = ("mask", "attention", "cross")


@keras.saving.register_keras_serializable(package="keras_dynmask")
class PaddingMask(MaskingLayer):
    """Marks the real tokens of a batch of ids, at whatever length it has.

    With `output_mode="mask"` the layer returns a bool `[B, T]` tensor, True
    where the token is real (its id is not `pad_token_id`). With
    `output_mode="attention"` it returns a bool `[B, T, T]` tensor, True where
    query and key are both real: the `attention_mask` that
    `keras.layers.MultiHeadAttention` takes, and exactly the mask it builds
    itself from the Keras masks of its inputs. In that mode a padded query's
    row is all False; Keras's attention handles such rows (with a finite
    large negative logit), but if your attention fills masked logits with
    `-inf`, use `CausalMask(...)(ids, padding_mask=...)`, which never leaves a
    row empty.

    A ragged batch `[B, (T)]` gives the dense mask of the padded batch: False
    past each row's end (and, as in a dense batch, at ids equal to
    `pad_token_id` inside a row).

    Frames instead of ids (speech, any features `[B, T, D]`): pass each
    row's number of real frames, `layer(features, lengths=lengths)`, and
    only the features' shape is read; or pass features that carry a Keras
    mask (after `keras.layers.Masking`, `Embedding(mask_zero=True)`, ...),
    and that mask is the padding. Float features with neither raise a
    `ValueError`. A length below 0 or above `T` is an error, not a silent
    clip: a `ValueError` when called eagerly (TensorFlow, or a JAX or
    PyTorch tensor outside a model), a failed assertion when a TF graph
    runs (`tf.data`, `tf.function`, a SavedModel). Where no check can run
    (under XLA, or inside a JAX or PyTorch model) lengths are clipped to
    `[0, T]`.

    Encoder-decoder models: `PaddingMask(output_mode="cross")((target,
    source))` returns the cross-attention mask `[B, T_target, T_source]`,
    True where the query (a target position) and the key (a source
    position) are both real. Each side is token ids, a bool padding mask
    `[B, T]` or float features with a Keras mask; `lengths=(target_lengths,
    source_lengths)` (either may be `None`) gives a side's padding by its
    lengths instead. In a `tf.data` map of `(target, source)` pairs, call
    it on the pair: `ds.map(lambda t, s: cross((t, s)))`.

    The layer holds no weights and runs the same in a `tf.data` pipeline, in
    a Keras model, and in an exported SavedModel.

    Args:
        pad_token_id: int, the padding id; or `None` when no id is padding
            (useful for ragged batches, whose padding is past each row's
            end).
        output_mode: `"mask"` for `[B, T]`, `"attention"` for `[B, T, T]`,
            or `"cross"` for `[B, T_target, T_source]` from a pair.
        **kwargs: base layer arguments, such as `name`.

    Call arguments:
        inputs: int32 or int64 ids, a dense `[B, T]` (or `[T]`) tensor or
            NumPy array, or a `tf.RaggedTensor` `[B, (T)]`; with `lengths`,
            any dense `[B, T]` or `[B, T, D]` tensor; float features with a
            Keras mask; in `"cross"` mode, a pair `(target, source)`.
        lengths: optional integer `[B]`: each row's number of real frames
            or tokens, counted from the start (in `"cross"` mode a pair).
        mask: optional Keras mask `[B, T]` of float features; Keras passes
            the input's own mask here.

    Returns:
        A bool tensor: `[B, T]` (mode `"mask"`), `[B, T, T]` (mode
        `"attention"`) or `[B, T_target, T_source]` (mode `"cross"`);
        `[T]` / `[T, T]` for a single sequence of ids `[T]`.

    Example:

    >>> import numpy as np
    >>> ids = np.array([[5, 6, 0], [7, 0, 0]], dtype="int32")
    >>> np.asarray(PaddingMask()(ids))
    array([[ True,  True, False],
           [ True, False, False]])
    >>> np.asarray(PaddingMask(output_mode="attention")(ids))[1].astype(int)
    array([[1, 0, 0],
           [0, 0, 0],
           [0, 0, 0]])

    Frames by their lengths, and a decoder's cross-attention mask:

    >>> frames = np.zeros((2, 4, 80), "float32")     # [B, T, D] features
    >>> lengths = np.array([4, 2], "int32")
    >>> np.asarray(PaddingMask()(frames, lengths=lengths)).astype(int)
    array([[1, 1, 1, 1],
           [1, 1, 0, 0]])
    >>> audio = PaddingMask()(frames, lengths=lengths)
    >>> cross = PaddingMask(output_mode="cross")((ids, audio))
    >>> tuple(cross.shape)
    (2, 3, 4)
    >>> np.asarray(cross)[1].astype(int)
    array([[1, 1, 0, 0],
           [0, 0, 0, 0],
           [0, 0, 0, 0]])
    """

    def __init__(self, pad_token_id: int | None = 0, output_mode: str = "mask", **kwargs) -> None:
        super().__init__(**kwargs)
        self.pad_token_id = validation.as_int("pad_token_id", pad_token_id, allow_none=True)
        self.output_mode = validation.as_choice("output_mode", output_mode, OUTPUT_MODES)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"pad_token_id": self.pad_token_id, "output_mode": self.output_mode}
        )
        return config

    def __call__(self, inputs, *args, **kwargs):
        # Keras refuses a pair that mixes tensors and NumPy arrays: both
        # become tensors first.
        if self.output_mode == "cross" and isinstance(inputs, (tuple, list)):
            inputs = tuple(to_tensor(value) for value in inputs)
            if isinstance(kwargs.get("lengths"), (tuple, list)):
                kwargs["lengths"] = tuple(
                    None if value is None else to_tensor(value) for value in kwargs["lengths"]
                )
        return super().__call__(inputs, *args, **kwargs)

    def compute_mask(self, inputs, previous_mask=None):
        # The output is itself a mask and carries none. (Defining this also
        # tells Keras the layer takes its input's Keras mask, as `mask`.)
        return None

    def call(
        self,
        inputs: "tf.Tensor | tf.RaggedTensor | tuple",
        lengths: "tf.Tensor | tuple | None" = None,
        mask: "tf.Tensor | tuple | None" = None,
    ) -> "tf.Tensor":
        if self.output_mode == "cross":
            (target, source), (target_lengths, source_lengths) = self._pairs(inputs, lengths)
            target_mask, source_mask = mask if isinstance(mask, (tuple, list)) else (None, None)
            target_padding = self._padding(target, target_lengths, target_mask, "target", cross=True)
            source_padding = self._padding(source, source_lengths, source_mask, "source", cross=True)
            checks = _same_batch_checks(target_padding, source_padding)
            with validation.dependencies(checks):
                return attention_masks.cross_attention_mask(target_padding, source_padding)
        self._refuse_pair(inputs)
        padding_mask = self._padding(inputs, lengths, mask, "inputs")
        if self.output_mode == "attention":
            return attention_masks.attention_mask_from_padding(padding_mask)
        return padding_mask

    def compute_output_shape(self, input_shape):
        if self.output_mode == "cross":
            target, source = (tuple(shape) for shape in input_shape)
            return (target[0] if target[0] is not None else source[0], target[1], source[1])
        shape = tuple(input_shape)
        if len(shape) > 2:  # features [B, T, ...]: a mask over [B, T]
            shape = shape[:2]
        if self.output_mode == "attention":
            return shape + shape[-1:]
        return shape

    def compute_output_spec(self, inputs, lengths=None, mask=None):
        if self.output_mode == "cross":
            (target, source), (target_lengths, source_lengths) = self._pairs(inputs, lengths)
            target_mask, source_mask = mask if isinstance(mask, (tuple, list)) else (None, None)
            shapes = []
            for value, value_lengths, value_mask, name in (
                (target, target_lengths, target_mask, "target"),
                (source, source_lengths, source_mask, "source"),
            ):
                self._padding_spec(value, value_lengths, value_mask, name, cross=True)
                shapes.append(tuple(value.shape)[:2])
            _same_batch_checks(target, source)  # static batch sizes: checked now
            return keras.KerasTensor(self.compute_output_shape(shapes), dtype="bool")
        self._refuse_pair(inputs)
        self._padding_spec(inputs, lengths, mask, "inputs")
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype="bool")

    # Padding masks of one input: from lengths, a Keras mask, or ids.

    def _padding(self, value, lengths, keras_mask, name, cross=False):
        """bool `[B, T]` (or `[T]` for ids `[T]`), True at real positions."""
        if lengths is not None:
            return self._from_lengths(value, lengths, name)
        ops, converted = backend_values(value)
        kind = _kind(converted)
        if cross and kind == "bool":
            _check_rank(converted, name, "a padding mask [B, T]")
            return converted
        if kind == "float" and keras_mask is not None:
            return self._from_keras_mask(ops, converted, keras_mask, name)
        if kind == "float" and _rank(converted) == 3:
            raise ValueError(_FEATURES_MESSAGE.format(name=name, shape=validation.shape_text(converted)))
        return self._from_token_ids(value, name, cross)

    def _padding_spec(self, value, lengths, keras_mask, name, cross=False):
        """The static checks of `_padding`, on `KerasTensor`s."""
        if lengths is not None:
            self._check_lengths(value, lengths, name)
            return
        kind = _kind(value)
        if cross and kind == "bool":
            _check_rank(value, name, "a padding mask [B, T]")
        elif kind == "float" and keras_mask is not None:
            _check_keras_mask(value, keras_mask, name)
        elif kind == "float" and _rank(value) == 3:
            raise ValueError(_FEATURES_MESSAGE.format(name=name, shape=validation.shape_text(value)))
        else:
            token_ids = cast_float_ids_in_models(value, True)
            self._check_token_ids(token_ids)
            if cross:
                _check_rank(token_ids, name, "token ids [B, T]")

    def _from_token_ids(self, token_ids, name, cross):
        token_ids = cast_float_ids_in_models(token_ids, self.called_inside_model)
        ops, token_ids = backend_values(token_ids)
        self._check_token_ids(token_ids)
        ranks = (2,) if cross else (1, 2)
        if cross:
            _check_rank(token_ids, name, "token ids [B, T]")
        if ops is op_set.KERAS:  # every backend tensor has a static rank
            return attention_masks.token_padding_mask(token_ids, self.pad_token_id, ops)
        checks = validation.rank_checks("PaddingMask", name if cross else "token_ids", token_ids, ranks)
        with tf.control_dependencies(checks):
            return attention_masks.token_padding_mask(token_ids, self.pad_token_id, ops)

    def _from_keras_mask(self, ops, features, keras_mask, name):
        _check_keras_mask(features, keras_mask, name)
        keras_mask = ops.convert(keras_mask)
        if ops.dtype_name(keras_mask) != "bool":
            keras_mask = ops.not_equal(keras_mask, 0)
        return keras_mask

    def _from_lengths(self, value, lengths, name):
        ops, value = backend_values(value)
        lengths = ops.convert(lengths) if ops is op_set.KERAS else to_tensor(lengths)
        self._check_lengths(value, lengths, name)
        shape = ops.shape(value)
        batch_size, sequence_length = shape[0], shape[1]
        if ops is op_set.KERAS:
            if not self.called_inside_model:
                validation.check_length_values(lengths, sequence_length)
            return attention_masks.length_padding_mask(lengths, sequence_length, ops)
        checks = validation.length_checks(lengths, batch_size, sequence_length)
        with validation.dependencies(checks):
            return attention_masks.length_padding_mask(lengths, sequence_length, ops)

    def _check_lengths(self, value, lengths, name):
        lengths_name = "lengths" if name == "inputs" else f"{name} lengths"
        if not hasattr(value, "shape") or validation.is_ragged(value):
            raise ValueError(
                f"PaddingMask with `lengths` takes a dense tensor [B, T] or "
                f"[B, T, D] (only its shape is read). Received: {name}={value!r}"
            )
        rank = _rank(value)
        if rank is not None and rank < 2:
            raise ValueError(
                f"PaddingMask with `lengths` needs {name} of shape [B, T] or "
                f"[B, T, D]. Received: {name} of shape {validation.shape_text(value)}"
            )
        if not hasattr(lengths, "dtype") or "int" not in validation.dtype_name(lengths):
            shown = lengths if not hasattr(lengths, "dtype") else f"a tensor of dtype {validation.dtype_name(lengths)}"
            raise ValueError(
                f"`{lengths_name}` must be integers [B], each row's number of real "
                f"frames or tokens. Received: {shown!r}"
            )
        batch = tuple(value.shape)[0] if rank is not None else None
        received = tuple(lengths.shape) if _rank(lengths) is not None else None
        if received is not None and (
            len(received) != 1 or None not in (batch, received[0]) and batch != received[0]
        ):
            raise ValueError(
                f"`{lengths_name}` must have shape [B] with B = {batch}, the batch "
                f"size of {name} (shape {validation.shape_text(value)}). Received: "
                f"{lengths_name} of shape {validation.shape_text(lengths)}"
            )

    @staticmethod
    def _refuse_pair(inputs):
        if isinstance(inputs, tuple):
            raise ValueError(
                "A pair (target, source) needs PaddingMask(output_mode='cross'), "
                "which gives the cross-attention mask [B, T_target, T_source]. "
                f"Received a tuple of {len(inputs)}"
            )

    @staticmethod
    def _pairs(inputs, lengths):
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise ValueError(
                "PaddingMask(output_mode='cross') takes a pair (target, source), "
                "each token ids [B, T], a bool padding mask [B, T] or float "
                "features with a Keras mask. Received: "
                f"inputs={inputs!r}"
            )
        if lengths is None:
            lengths = (None, None)
        if not isinstance(lengths, (tuple, list)) or len(lengths) != 2:
            raise ValueError(
                "With output_mode='cross', `lengths` is a pair (target_lengths, "
                f"source_lengths), each None or [B]. Received: lengths={lengths!r}"
            )
        return tuple(inputs), tuple(lengths)

    def _check_token_ids(self, token_ids):
        if not hasattr(token_ids, "dtype"):
            raise ValueError(
                "PaddingMask takes a tensor of token ids [B, T]. Received: "
                f"token_ids={token_ids!r}"
            )
        dtype = keras.backend.standardize_dtype(token_ids.dtype)
        if dtype not in ("int32", "int64"):
            raise ValueError(
                "PaddingMask needs int32 or int64 token ids, or features with "
                "`lengths=` or a Keras mask. Received "
                f"dtype={dtype} for token_ids of shape {token_ids.shape}"
            )
        rank = _rank(token_ids)
        if isinstance(token_ids, tf.RaggedTensor) and rank != 2:
            raise ValueError(
                "PaddingMask needs ragged token_ids of shape [B, (T)]. "
                f"Received shape {token_ids.shape}"
            )
        if rank not in (None, 1, 2):
            raise ValueError(
                "PaddingMask needs token_ids of rank 1 [T] or 2 [B, T]. "
                f"Received rank {rank}, shape {token_ids.shape}"
            )


_FEATURES_MESSAGE = (
    "PaddingMask reads float features [B, T, D] only with `lengths=` (each "
    "row's number of real frames, [B]) or a Keras mask (e.g. after "
    "keras.layers.Masking or Embedding(mask_zero=True)); token ids must be "
    "int32 or int64. Received: {name}, float features of shape {shape}, "
    "with neither"
)


def _kind(value):
    """`"bool"`, `"float"`, `"int"` or `None`: what a tensor holds."""
    if not hasattr(value, "dtype"):
        return None
    dtype = validation.dtype_name(value)
    if dtype == "bool":
        return "bool"
    if "float" in dtype:
        return "float"
    return "int" if "int" in dtype else None


def _check_rank(value, name, what):
    rank = _rank(value)
    if rank is not None and rank != 2:
        raise ValueError(
            f"PaddingMask(output_mode='cross') needs the {name} as {what}. "
            f"Received: {name} of shape {validation.shape_text(value)}"
        )


def _check_keras_mask(features, keras_mask, name):
    """A Keras mask must be `[B, T]` like the features' first two dims."""
    expected = tuple(features.shape)[:2] if _rank(features) is not None else None
    received = tuple(keras_mask.shape) if _rank(keras_mask) is not None else None
    if (
        expected is not None
        and received is not None
        and (
            len(received) != 2
            or any(e is not None and r is not None and e != r for e, r in zip(expected, received))
        )
    ):
        raise ValueError(
            f"The Keras mask of {name} must have shape [B, T], the first two "
            f"dims of {name} (shape {validation.shape_text(features)}). Received: "
            f"a mask of shape {validation.shape_text(keras_mask)}"
        )


def _same_batch_checks(target_padding, source_padding):
    """The target and the source must have the same batch size."""
    target_batch = tuple(target_padding.shape)[0]
    source_batch = tuple(source_padding.shape)[0]
    if isinstance(target_batch, int) and isinstance(source_batch, int):
        if target_batch != source_batch:
            raise ValueError(
                "PaddingMask(output_mode='cross') needs the target and the source "
                f"in batches of the same size. Received: {target_batch} and "
                f"{source_batch}"
            )
        return []
    if not (op_set.is_tensorflow_value(target_padding) and op_set.is_tensorflow_value(source_padding)):
        return []
    return validation.require(
        tf.equal(tf.shape(target_padding)[0], tf.shape(source_padding)[0]),
        "PaddingMask(output_mode='cross') needs the target and the source in "
        "batches of the same size",
        target_batch=tf.shape(target_padding)[0],
        source_batch=tf.shape(source_padding)[0],
    )


def _rank(tensor):
    """Static rank of a tensor or `KerasTensor`, None when unknown."""
    shape = tensor.shape
    if isinstance(shape, tf.TensorShape):
        return shape.rank
    return len(shape)
