"""Masking rates that change over training: a float or a Keras schedule.

`DynamicMLMMasking(mask_rate=...)` and `SpanCorruption(noise_density=...)`
take either a float or a `keras.optimizers.schedules.LearningRateSchedule`
mapping a step (the number of batches masked before) to a rate, e.g.
`PolynomialDecay(0.3, decay_steps, 0.15)` for the 30 % -> 15 % linear
decay of Ankner et al. The functions here validate, evaluate and
serialise such rates, in one place for every layer; `MaskRateLogger`
shows the rate each trained batch was masked with in `fit`'s progress bar
and history.
"""

import weakref

import keras
import numpy as np

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
    one). A negative Python `step` raises a `ValueError`; a negative step
    tensor counts as 0 (values are not checked under jit).
    """
    if not is_schedule(rate):
        return rate
    if step is None:
        step = keras.ops.convert_to_tensor(counter.value)
        counter.assign_add(keras.ops.ones((), counter.dtype))
    else:
        if isinstance(step, bool) or not (validation.is_integer(step) or hasattr(step, "dtype")):
            raise ValueError(f"A call-time `step` must be an integer scalar. Received: step={step!r}")
        if validation.is_integer(step) and int(step) < 0:
            raise ValueError(
                "A call-time `step` counts the batches masked before, so it "
                f"must be >= 0. Received: step={step!r}"
            )
        step = keras.ops.convert_to_tensor(step)
    step = keras.ops.maximum(keras.ops.cast(step, "int32"), 0)
    value = keras.ops.cast(rate(step), "float32")
    return keras.ops.clip(value, low, high)


def current_rate(rate, counter, low=0.0, high=1.0):
    """A Python float: the rate the next call without a `step` uses."""
    if not is_schedule(rate):
        return float(rate)
    return float(rate_at(rate, tf.convert_to_tensor(counter), low, high))


def layer_rate(layer):
    """A masking layer's rate: its `mask_rate` or `noise_density` (a float or a schedule).

    `None` when it has neither, as a `DenoiserMixture`, whose examples each
    draw their own density.
    """
    if hasattr(layer, "current_mask_rate"):
        return getattr(layer, "mask_rate", None)
    return getattr(layer, "noise_density", None)


# Datasets whose steps are keyed by element position (`mask_dataset` with a
# seed, the tf.data service pipeline), each with its layer and a function
# giving the step of the first element its next iteration masks.
_KEYED_DATASETS = weakref.WeakKeyDictionary()


def record_keyed_steps(dataset, layer, first_step):
    """Notes that `dataset` masks with `layer` at steps keyed by position.

    Args:
        dataset: the masked `tf.data.Dataset` returned to the user.
        layer: the scheduled masking layer.
        first_step: a function of no arguments, the step of the first
            element the dataset's next iteration masks (its next pass's
            `epoch * N`).
    """
    _KEYED_DATASETS[dataset] = (weakref.ref(layer), first_step)


def keyed_datasets(layer):
    """`{dataset: first_step}` of the living keyed datasets masked by `layer`."""
    return {
        dataset: first_step
        for dataset, (owner, first_step) in list(_KEYED_DATASETS.items())
        if owner() is layer
    }


class MaskRateLogger(keras.callbacks.Callback):
    """Logs the rate each trained batch was masked with into `fit`'s logs.

    The rate appears in the progress bar and in `History.history` under
    `name` (default `"mask_rate"`): at the end of a batch, the rate of the
    step that masked the batch just trained; at the end of an epoch, the
    mean over the epoch's batches (as Keras reports its metrics). The
    `k`-th batch a `fit` trains (from 0) was masked at step `start + k`,
    `start` being, wherever the layer masks:

    - inside the model or in a plain `ds.map(layer)`: the layer's count of
      masked batches (`schedule_step`) when training begins (a pipeline
      that masks ahead of training, e.g. with `prefetch`, is followed as
      well, since its masks are consumed in order);
    - in `keras_dynmask.data.mask_dataset(..., seed=...)` (and the tf.data
      service pipeline), whose steps are `epoch * N + index`: the first
      step of the pass that training iterates. The dataset tells the logger
      where its next pass starts; when several such datasets of the layer
      are alive (say training and validation data), pass the training one
      as `dataset`.

    A fixed rate is logged as it is. A `DenoiserMixture` has no single rate
    (each example draws its own density) and is refused.

    Args:
        layer: a `DynamicMLMMasking` or `SpanCorruption`.
        name: the key in the logs.
        dataset: `None`, or the dataset `mask_dataset` returned that `fit`
            trains on (needed only when the layer masks several).

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

    def __init__(
        self, layer: "keras.layers.Layer", name: str = "mask_rate", dataset: "tf.data.Dataset | None" = None
    ) -> None:
        super().__init__()
        if not (hasattr(layer, "current_mask_rate") or hasattr(layer, "current_noise_density")):
            raise ValueError(
                "`layer` must have a `current_mask_rate()` method (e.g. a "
                "DynamicMLMMasking) or `current_noise_density()` (a "
                f"SpanCorruption). Received: layer={layer!r}"
            )
        rate = layer_rate(layer)
        if rate is None:
            raise ValueError(
                "`layer` has no single masking rate to log: each example of a "
                f"{type(layer).__name__} draws its own noise density from its "
                "`denoisers`. Log a DynamicMLMMasking or a SpanCorruption. "
                f"Received: layer={layer!r}"
            )
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty str. Received: name={name!r}")
        if dataset is not None and dataset not in keyed_datasets(layer):
            raise ValueError(
                "`dataset` must be a dataset that keras_dynmask.data.mask_dataset "
                "(with a seed) made with this `layer` and its scheduled rate. "
                f"Received: dataset={dataset!r}"
            )
        self.layer = layer
        self.name = name
        self._rate = rate
        self._dataset = dataset
        # Outside `fit` (no `on_train_begin`): the rate of the next call.
        self._keyed_count = 0
        self._start_counting(dataset_start=None)

    def _masked_count(self):
        counter = getattr(self.layer, "schedule_step", None)
        return 0 if counter is None else int(np.asarray(counter))

    def _start_counting(self, dataset_start):
        self._counter_start = self._masked_count()
        self._dataset_start = dataset_start
        self._trained = 0
        self._epoch_start = 0
        self._epoch_rates = []

    def _keyed_start(self):
        """The first step of the keyed dataset training iterates next, or `None`."""
        self._keyed_count = 0
        if not is_schedule(self._rate):
            return None
        keyed = keyed_datasets(self.layer)
        if self._dataset is not None:
            keyed = {self._dataset: keyed[self._dataset]} if self._dataset in keyed else {}
        self._keyed_count = len(keyed)
        # With several, which one trains is known only from `dataset`.
        return int(next(iter(keyed.values()))()) if len(keyed) == 1 else None

    def _step(self, trained_before):
        """The step that masked the batch trained after `trained_before` others."""
        # The layer's own count moves when it masks in the model or in a
        # plain map; a keyed dataset leaves it alone.
        if self._masked_count() != self._counter_start or not self._keyed_count:
            return self._counter_start + trained_before
        if self._dataset_start is None:
            raise ValueError(
                f"The layer masks {self._keyed_count} datasets made by "
                "mask_dataset with a seed, each keyed by its own epoch and index: "
                "pass the one `fit` trains on as MaskRateLogger's `dataset`."
            )
        return self._dataset_start + trained_before

    def _rate_at(self, step):
        return float(rate_at(self._rate, step)) if is_schedule(self._rate) else float(self._rate)

    def on_train_begin(self, logs=None):
        self._start_counting(self._keyed_start())

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._trained
        self._epoch_rates = []

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the last step the call ran (several with `steps_per_execution`).
        trained = max(self._epoch_start + batch + 1, self._trained + 1)
        rates = [self._rate_at(self._step(k)) for k in range(self._trained, trained)]
        self._trained = trained
        self._epoch_rates += rates
        if logs is not None:
            logs[self.name] = rates[-1]

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self._epoch_rates:
            logs[self.name] = float(np.mean(self._epoch_rates))
        else:  # no batch trained: the rate the next one would be masked with
            logs[self.name] = self._rate_at(self._step(self._trained))
