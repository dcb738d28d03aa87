"""The small base every keras_dynmask layer shares.

One code path runs in three places: inside a `tf.data` map, inside a Keras
model, and inside an exported SavedModel. The base lets a layer take plain
`tf.Tensor`s, `tf.RaggedTensor`s, dicts and NumPy arrays without Keras
converting or rejecting them, and tells a layer whether it was called on its
own (directly or in `tf.data`) or from inside another layer (a model).
"""

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.common import global_state


def is_symbolic(value):
    """True for a `keras.KerasTensor` (functional model construction)."""
    return isinstance(value, keras.KerasTensor)


def called_from_another_layer():
    """True while an outer Keras layer or model is running its `call`."""
    return global_state.get_global_attribute("current_call_ctx") is not None


def to_tensor(value):
    """Converts NumPy arrays and Python lists; tensors pass unchanged."""
    if isinstance(value, (tf.Tensor, tf.RaggedTensor, tf.Variable)):
        return value
    if isinstance(value, keras.KerasTensor):
        return value
    if isinstance(value, (np.ndarray, list, tuple, int, np.integer)):
        return tf.convert_to_tensor(value)
    return value


def map_values(fn, tensor):
    """Applies `fn` to a dense tensor or to a ragged tensor's flat values."""
    if isinstance(tensor, tf.RaggedTensor):
        return tensor.with_flat_values(fn(tensor.flat_values))
    return fn(tensor)


def split_token_ids(owner, inputs, output_keys=()):
    """`(token_ids, rest)`: a layer's ids, and a dict input's other entries.

    A dict must hold `"token_ids"`; its other entries (`rest`) pass through,
    and may not be named like an output the layer writes (`output_keys`),
    which would silently replace them. Tensors, arrays and lists give
    `rest=None`.
    """
    if isinstance(inputs, dict):
        if "token_ids" not in inputs:
            raise ValueError(
                f"A dict input to {owner} must hold 'token_ids'. "
                f"Received keys: {sorted(inputs)}"
            )
        clashing = sorted(set(inputs) & set(output_keys))
        if clashing:
            raise ValueError(
                f"A dict input to {owner} must not hold the output keys "
                f"{clashing} (the layer writes them, so they would be "
                f"replaced); rename them. Received keys: {sorted(inputs)}"
            )
        rest = {k: v for k, v in inputs.items() if k != "token_ids"}
        return to_tensor(inputs["token_ids"]), rest
    if isinstance(inputs, (tuple, set)):
        raise ValueError(
            f"{owner} takes a tensor of token ids or a dict with 'token_ids'. "
            f"Received a {type(inputs).__name__}: {inputs!r}"
        )
    return to_tensor(inputs), None


def passed_through_specs(rest):
    """A dict input's other entries as new `KerasTensor`s (`compute_output_spec`).

    Keras records every output of a layer as made by that layer; returning
    an input `KerasTensor` itself would overwrite its history, and a
    functional model could no longer reach it from its inputs. Fresh
    tensors of the same shape and kind are connected as the layer's
    outputs instead. `None` and non-symbolic entries pass as they are.
    """
    if rest is None:
        return None
    return {
        key: keras.KerasTensor(value.shape, value.dtype, sparse=value.sparse, ragged=value.ragged)
        if is_symbolic(value)
        else value
        for key, value in rest.items()
    }


class MaskingLayer(keras.layers.Layer):
    """Base for layers that compute masks from token ids or their shapes.

    The layers hold no weights. Inputs are taken as they come (dense,
    ragged, dicts, NumPy) so the same layer runs inside `tf.data`, in a
    model and in a SavedModel, as Keras's `TFDataLayer` does for the
    preprocessing layers.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.built = True

    def build(self, input_shape=None):
        self.built = True
