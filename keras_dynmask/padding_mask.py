"""`PaddingMask`: padding masks computed from each batch of token ids."""

import keras
from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask import validation
from keras_dynmask.kernels import attention_masks
from keras_dynmask.kernels import op_set
from keras_dynmask.masking_layer import MaskingLayer
from keras_dynmask.masking_layer import backend_values
from keras_dynmask.masking_layer import cast_float_ids_in_models

OUTPUT_MODES = ("mask", "attention")


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

    The layer holds no weights and runs the same in a `tf.data` pipeline, in
    a Keras model, and in an exported SavedModel.

    Args:
        pad_token_id: int, the padding id; or `None` when no id is padding
            (useful for ragged batches, whose padding is past each row's
            end).
        output_mode: `"mask"` for `[B, T]` or `"attention"` for `[B, T, T]`.
        **kwargs: base layer arguments, such as `name`.

    Call arguments:
        token_ids: int32 or int64 ids, a dense `[B, T]` (or `[T]`) tensor or
            NumPy array, or a `tf.RaggedTensor` `[B, (T)]`.

    Returns:
        A bool tensor: `[B, T]` (mode `"mask"`) or `[B, T, T]` (mode
        `"attention"`); `[T]` / `[T, T]` for a single sequence `[T]`.

    Example:

    >>> import numpy as np
    >>> ids = np.array([[5, 6, 0], [7, 0, 0]], dtype="int32")
    >>> PaddingMask()(ids).numpy()
    array([[ True,  True, False],
           [ True, False, False]])
    >>> PaddingMask(output_mode="attention")(ids).numpy()[1].astype(int)
    array([[1, 0, 0],
           [0, 0, 0],
           [0, 0, 0]])
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

    def call(self, token_ids: "tf.Tensor | tf.RaggedTensor") -> "tf.Tensor":
        token_ids = cast_float_ids_in_models(token_ids, self.called_inside_model)
        ops, token_ids = backend_values(token_ids)
        self._check_token_ids(token_ids)
        if ops is op_set.KERAS:  # every backend tensor has a static rank
            padding_mask = attention_masks.token_padding_mask(
                token_ids, self.pad_token_id, ops
            )
        else:
            checks = validation.rank_checks("PaddingMask", "token_ids", token_ids, (1, 2))
            with tf.control_dependencies(checks):
                padding_mask = attention_masks.token_padding_mask(
                    token_ids, self.pad_token_id, ops
                )
        if self.output_mode == "attention":
            return attention_masks.attention_mask_from_padding(padding_mask)
        return padding_mask

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if self.output_mode == "attention":
            return shape + shape[-1:]
        return shape

    def compute_output_spec(self, token_ids):
        token_ids = cast_float_ids_in_models(token_ids, True)
        self._check_token_ids(token_ids)
        shape = self.compute_output_shape(token_ids.shape)
        return keras.KerasTensor(shape, dtype="bool")

    def _check_token_ids(self, token_ids):
        if not hasattr(token_ids, "dtype"):
            raise ValueError(
                "PaddingMask takes a tensor of token ids [B, T]. Received: "
                f"token_ids={token_ids!r}"
            )
        dtype = keras.backend.standardize_dtype(token_ids.dtype)
        if dtype not in ("int32", "int64"):
            raise ValueError(
                "PaddingMask needs int32 or int64 token ids. Received "
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


def _rank(tensor):
    """Static rank of a tensor or `KerasTensor`, None when unknown."""
    shape = tensor.shape
    if isinstance(shape, tf.TensorShape):
        return shape.rank
    return len(shape)
