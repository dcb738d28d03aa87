"""The small base every keras_dynmask layer shares.

One code path runs in three places: inside a `tf.data` map, inside a Keras
model, and inside an exported SavedModel. The base lets a layer take plain
`tf.Tensor`s, `tf.RaggedTensor`s, dicts and NumPy arrays without Keras
converting or rejecting them, and tells a layer whether it was called on its
own (directly or in `tf.data`) or from inside another layer (a model).
"""

import functools
import inspect
import threading

import keras
import numpy as np
from keras_dynmask.lazy_tensorflow import tf
from keras.src.backend.common import global_state

from keras_dynmask.kernels import op_set


def is_symbolic(value):
    """True for a `keras.KerasTensor` (functional model construction)."""
    return isinstance(value, keras.KerasTensor)


def called_from_another_layer():
    """True while an outer Keras layer or model is running its `call`, or
    while Keras runs a model statelessly (JAX's jitted steps call the
    model's `call` directly, under a stateless scope)."""
    return (
        global_state.get_global_attribute("current_call_ctx") is not None
        or global_state.get_global_attribute("stateless_scope") is not None
    )


_BUILD_LOCK = threading.RLock()


def build_once(layer, build):
    """Runs `build()` unless `layer` is built, one thread at a time.

    A thread-pool map (grain's `MapDataset`, a `ThreadPoolExecutor`) makes
    a new layer's first calls at the same time: each would see the layer
    unbuilt and create its weights, and every thread but the first would
    fail on Keras's lock of a built layer's state.
    """
    with _BUILD_LOCK:
        if not layer.built:
            build()


@functools.lru_cache(maxsize=None)
def _call_signature(layer_class):
    """The signature of `layer_class.call` (with `self`), read once a class:
    `MaskingLayer.__call__` binds every call's arguments to it."""
    return inspect.signature(layer_class.call)


def to_tensor(value):
    """Converts NumPy arrays and Python lists (to TF tensors in `tf.data` and
    under the TensorFlow backend, else to the backend's); tensors pass
    unchanged."""
    if isinstance(value, (tf.Tensor, tf.RaggedTensor, tf.Variable)):
        return value
    if isinstance(value, keras.KerasTensor):
        return value
    if isinstance(value, (np.ndarray, list, tuple, int, np.integer)):
        if op_set.for_values(value) is op_set.KERAS:
            return keras.ops.convert_to_tensor(value)  # a JAX or PyTorch tensor
        return tf.convert_to_tensor(value)
    return value


def cast_float_ids_in_models(value, inside_model):
    """Float ids inside a model become int32, as `keras.layers.Embedding`
    casts them (a `Sequential` without an `Input` makes a float32 input).

    Called on its own (directly or in `tf.data`), a layer keeps refusing
    float ids with a clear error. `inside_model`: the layer's
    `called_inside_model`.
    """
    dtype = getattr(value, "dtype", None)
    if dtype is None or "float" not in str(getattr(dtype, "name", dtype)):
        return value
    if is_symbolic(value):
        return keras.ops.cast(value, "int32")
    if not inside_model:
        return value
    if op_set.is_tensorflow_value(value):
        return tf.cast(value, tf.int32)
    return keras.ops.cast(value, "int32")


def backend_values(value):
    """`(ops, value)`: the op set for `value`, and `value` converted for it.

    TensorFlow's op set (in `tf.data`, under the TensorFlow backend, on TF
    tensors) keeps `to_tensor`'s conversions (ragged stays ragged); the
    `keras.ops` one (JAX and PyTorch tensors, NumPy under those backends)
    converts to a tensor of the active backend.
    """
    ops = op_set.for_values(value)
    if ops is op_set.KERAS:
        return ops, keras.ops.convert_to_tensor(value)
    return ops, to_tensor(value)


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

    # True for layers that mask (`training` in their `call`): called on its
    # own (eagerly or in `tf.data`) with `training=None`, such a layer
    # masks; inside a model it follows Keras's training flag, as `Dropout`.
    masks_when_called_alone = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.called_inside_model = False
        if type(self).build is MaskingLayer.build:
            # Nothing to build: built from the start (so an uncalled layer
            # exports). A subclass with a `build` of its own starts unbuilt,
            # and Keras calls its `build` before the first call.
            self.built = True

    def __call__(self, *args, **kwargs):
        # Read here, before Keras opens this layer's own call context.
        self.called_inside_model = called_from_another_layer()
        if self.masks_when_called_alone and not self.called_inside_model:
            kwargs = self._masking_by_default(args, kwargs)
        if not self.built and type(self).build is MaskingLayer.build:
            # Nothing to build: skip Keras's shape-based build, which cannot
            # read a ragged, dict or unknown-rank input's shape. A subclass
            # with a `build` of its own gets it called by Keras as usual.
            self.built = True
        return super().__call__(*args, **kwargs)

    def _masking_by_default(self, args, kwargs):
        """`kwargs` with `training=True` when the layer was called on its own
        (eagerly or in `tf.data`) on values, not `keras.Input`s, and no
        `training` was given, by keyword or by position."""
        try:
            given = _call_signature(type(self)).bind_partial(self, *args, **kwargs).arguments
        except TypeError:
            return kwargs  # Keras reports the bad call
        if given.get("training") is not None or (
            "training" in given and "training" not in kwargs
        ):
            return kwargs  # given (a positional `None` is left to Keras)
        inputs = list(given.values())[1] if len(given) > 1 else None  # after `self`
        if any(is_symbolic(x) for x in keras.tree.flatten(inputs)):
            return kwargs
        return {**kwargs, "training": True}

    def build(self, input_shape=None):
        """Nothing to make by default (see `__call__`)."""
        self.built = True
