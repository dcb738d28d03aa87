"""Masking rates that change over training: a float or a Keras schedule.

`DynamicMLMMasking(mask_rate=...)` and `SpanCorruption(noise_density=...)`
take either a float or a `keras.optimizers.schedules.LearningRateSchedule`
mapping a step (the number of batches masked before) to a rate, e.g.
`PolynomialDecay(0.3, decay_steps, 0.15)` for the 30 % -> 15 % linear
decay of Ankner et al. The functions here validate, evaluate and
serialise such rates, in one place for every layer; `MaskRateLogger`
shows the current rate in `fit`'s progress bar and history.
"""

import keras
from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask import validation

Schedule = keras.optimizers.schedules.LearningRateSchedule


def is_schedule(rate):
    """True when `rate` is a Keras `LearningRateSchedule` (not a float)."""
    return isinstance(rate, Schedule)


def as_rate(name, value, low=0.0, high=1.0, low_open=True, high_open=False):
    """A float in the interval, or a `LearningRateSchedule`, else `ValueError`.

    A schedule's values are checked when it is evaluated (`rate_at` clips
    them into the interval and asserts they are finite); a config dict from
    `serialize_rate` is turned back into its schedule.
    """
    if isinstance(value, dict) and "class_name" in value:
        value = keras.saving.deserialize_keras_object(value)
    if is_schedule(value):
        return value
    if callable(value):
        raise ValueError(
            f"`{name}` must be a float or a "
            "keras.optimizers.schedules.LearningRateSchedule (a plain "
            f"function cannot be saved). Received: {name}={value!r}"
        )
    return validation.as_float(name, value, low, high, low_open=low_open, high_open=high_open)


def rate_at(rate, step, low=0.0, high=1.0):
    """The rate at `step` as a float64 scalar tensor.

    Args:
        rate: a Python float or a `LearningRateSchedule`.
        step: int scalar (Python or tensor), the number of batches masked
            before; ignored for a float.
        low, high: the valid interval; a schedule's value is clipped into
            it (a rate of exactly 0 masks nothing).
    """
    if not is_schedule(rate):
        return tf.constant(rate, tf.float64)
    value = tf.cast(rate(tf.cast(step, tf.int64)), tf.float64)
    return tf.clip_by_value(value, low, high)


def serialize_rate(rate):
    """A float as itself, a schedule as its Keras config (for `get_config`)."""
    if is_schedule(rate):
        return keras.saving.serialize_keras_object(rate)
    return rate


def layer_is_scheduled(layer):
    """True when a masking layer's rate (`mask_rate`, `noise_density`) is a schedule."""
    return any(is_schedule(getattr(layer, name, None)) for name in ("mask_rate", "noise_density"))


def schedule_steps(layer, dataset):
    """`N`, the elements per pass that make element `i` of epoch `e` step `e * N + i`.

    `None` for an unscheduled layer. A scheduled one needs a dataset of
    known, finite length.
    """
    if not layer_is_scheduled(layer):
        return None
    num_elements = int(dataset.cardinality())
    if num_elements < 0:
        raise ValueError(
            "A scheduled masking rate keys each element's step as "
            "epoch * N + index, so the dataset needs a known, finite "
            "length N (use `dataset.apply(tf.data.experimental."
            "assert_cardinality(N))`). Received: a dataset of cardinality "
            f"{num_elements}"
        )
    return num_elements


def step_counter(layer, rate, name):
    """The layer's count of masked batches, for a scheduled `rate`; else `None`.

    A non-trainable int64 weight of `layer`, so `.keras` files save and
    restore it with the model.
    """
    if not is_schedule(rate):
        return None
    return layer.add_weight(
        name=name, shape=(), dtype="int64", initializer="zeros", trainable=False
    )


def rate_for_call(rate, counter, step=None, low=0.0, high=1.0):
    """The rate one masking call uses: a float, or the schedule's value now.

    With a `step` (e.g. `mask_dataset`'s `epoch * N + index`) the rate is a
    pure function of it. Without one, the layer's `counter` gives the step,
    and is advanced by one: once per masked batch (inside a model, only in
    training steps, since only they mask).

    Returns:
        A Python float for a fixed rate, else a float64 scalar tensor.
    """
    if not is_schedule(rate):
        return rate
    if step is not None:
        return rate_at(rate, validation.call_step(step), low, high)
    current = tf.identity(counter.value if hasattr(counter, "value") else counter)
    with tf.control_dependencies([counter.assign_add(tf.constant(1, tf.int64))]):
        return tf.identity(rate_at(rate, current, low, high))


def backend_rate_for_call(rate, counter, step=None, low=0.0, high=1.0):
    """`rate_for_call` on JAX and PyTorch (`keras.ops`, jit-friendly).

    Returns a Python float for a fixed rate, else a float32 scalar tensor
    (the schedule at `step`, or at the layer's `counter`, which advances by
    one; a negative step counts as 0).
    """
    if not is_schedule(rate):
        return rate
    if step is None:
        step = keras.ops.convert_to_tensor(counter.value)
        counter.assign_add(keras.ops.ones((), counter.dtype))
    else:
        if isinstance(step, bool) or not (validation.is_integer(step) or hasattr(step, "dtype")):
            raise ValueError(f"A call-time `step` must be an integer scalar. Received: step={step!r}")
        step = keras.ops.convert_to_tensor(step)
    step = keras.ops.maximum(keras.ops.cast(step, "int32"), 0)
    value = keras.ops.cast(rate(step), "float32")
    return keras.ops.clip(value, low, high)


def current_rate(rate, counter, low=0.0, high=1.0):
    """A Python float: the rate the next call without a `step` uses."""
    if not is_schedule(rate):
        return float(rate)
    return float(rate_at(rate, tf.convert_to_tensor(counter), low, high))


class MaskRateLogger(keras.callbacks.Callback):
    """Logs a masking layer's current rate into `fit`'s logs.

    The rate appears in the progress bar and in `History.history` under
    `name` (default `"mask_rate"`), read from `layer.current_mask_rate()`
    (or a `SpanCorruption`'s `current_noise_density()`) at the end of every
    batch and epoch.

    Args:
        layer: a `DynamicMLMMasking` or `SpanCorruption`.
        name: the key in the logs.

    Example:

    >>> import keras
    >>> from keras_dynmask import DynamicMLMMasking
    >>> masking = DynamicMLMMasking(
    ...     vocabulary_size=100, mask_token_id=3,
    ...     mask_rate=keras.optimizers.schedules.PolynomialDecay(0.3, 100, 0.15))
    >>> logger = MaskRateLogger(masking)
    >>> logs = {}
    >>> logger.on_epoch_end(0, logs)
    >>> round(logs["mask_rate"], 3)
    0.3
    """

    def __init__(self, layer: "keras.layers.Layer", name: str = "mask_rate") -> None:
        super().__init__()
        reader = getattr(layer, "current_mask_rate", None) or getattr(
            layer, "current_noise_density", None
        )
        if reader is None:
            raise ValueError(
                "`layer` must have a `current_mask_rate()` method (e.g. a "
                "DynamicMLMMasking) or `current_noise_density()` (a "
                f"SpanCorruption). Received: layer={layer!r}"
            )
        self._read_rate = reader
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty str. Received: name={name!r}")
        self.layer = layer
        self.name = name

    def _log(self, logs):
        if logs is not None:
            logs[self.name] = float(self._read_rate())

    def on_train_batch_end(self, batch, logs=None):
        self._log(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._log(logs)
