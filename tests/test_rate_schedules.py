"""Masking-rate schedules: `keras_dynmask.rate_schedules` and the layers using it.

Realised rates are checked against the schedule within binomial bounds at
the start, middle and end of a run; the step is the count of masked
batches (layer), `epoch * N + index` (`mask_dataset`) or the global position
(the tf.data service pipeline).
"""

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask import DynamicMLMMasking
from keras_dynmask import MaskedLMModel
from keras_dynmask import rate_schedules
from keras_dynmask.data import mask_dataset
from keras_dynmask.data import masking_pipeline
from distribution_bounds import normal_upper_quantile

VOCABULARY = 1000
BATCH, LENGTH = 32, 128
DECAY_STEPS = 20


def linear_decay():
    return keras.optimizers.schedules.PolynomialDecay(0.3, DECAY_STEPS, 0.15)


def expected_rate(step):
    """PolynomialDecay(0.3, 20, 0.15) written out: linear, then flat."""
    return 0.3 + (0.15 - 0.3) * min(step, DECAY_STEPS) / DECAY_STEPS


def ids(seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.integers(5, VOCABULARY, (BATCH, LENGTH)), tf.int32)


def assert_rate_close(weights, rate, tokens=BATCH * LENGTH):
    realised = float(tf.reduce_sum(weights))
    sigma = math.sqrt(tokens * rate * (1 - rate))
    assert abs(realised - tokens * rate) <= 5 * sigma + 1, (realised / tokens, rate)


@keras.saving.register_keras_serializable(package="test_rate_schedules")
class HalvingRate(keras.optimizers.schedules.LearningRateSchedule):
    """A custom registered schedule: 0.4, then 0.2 from step 5 on."""

    def __call__(self, step):
        return tf.where(tf.cast(step, tf.int64) < 5, 0.4, 0.2)

    def get_config(self):
        return {}


@pytest.mark.parametrize("selection", ["bernoulli", "exact"])
@pytest.mark.parametrize("granularity", ["token", "word", "span"])
def test_each_call_masks_at_the_schedule_of_its_step(selection, granularity):
    word_starts = None
    if granularity != "token":
        word_starts = np.ones(VOCABULARY, bool)  # every id a one-piece word
    layer = DynamicMLMMasking(
        VOCABULARY, 3, mask_rate=linear_decay(), selection=selection,
        granularity=granularity, word_starts=word_starts, output_mode="fit", seed=1,
    )
    for step in range(DECAY_STEPS + 3):
        rate = layer.current_mask_rate()
        assert rate == pytest.approx(expected_rate(step), abs=1e-6)
        _, _, weights = layer(ids(step))
        if selection == "exact" and granularity == "token":
            counts = tf.reduce_sum(weights, axis=1).numpy()
            exact = np.round(np.float64(np.float32(expected_rate(step))) * LENGTH)
            assert set(counts.tolist()) == {exact}, (step, counts[:4])
        elif step in (0, DECAY_STEPS // 2, DECAY_STEPS + 2):
            assert_rate_close(weights, expected_rate(step))
    assert int(layer.schedule_step.numpy()) == DECAY_STEPS + 3


def test_a_float_rate_keeps_working_unchanged():
    layer = DynamicMLMMasking(VOCABULARY, 3, mask_rate=np.float32(0.25), output_mode="fit")
    assert layer.mask_rate == 0.25 and layer.schedule_step is None
    assert layer.current_mask_rate() == 0.25
    assert layer.get_config()["mask_rate"] == 0.25
    assert not layer.weights


def test_call_time_step_is_pure_and_does_not_advance_the_counter():
    layer = DynamicMLMMasking(VOCABULARY, 3, mask_rate=linear_decay(), output_mode="fit")
    seed = tf.constant([4, 2])
    first = layer(ids(), seed=seed, step=10)[2]
    again = layer(ids(), seed=seed, step=np.int64(10))[2]
    np.testing.assert_array_equal(first, again)
    assert_rate_close(first, expected_rate(10))
    assert int(layer.schedule_step.numpy()) == 0
    with pytest.raises(ValueError, match="step"):
        layer(ids(), step=1.5)


def test_custom_registered_schedule_round_trips_through_config():
    layer = DynamicMLMMasking(VOCABULARY, 3, mask_rate=HalvingRate(), output_mode="fit")
    restored = DynamicMLMMasking.from_config(layer.get_config())
    assert isinstance(restored.mask_rate, HalvingRate)
    assert_rate_close(restored(ids(), step=0)[2], 0.4)
    assert_rate_close(restored(ids(), step=9)[2], 0.2)


def test_plain_function_is_refused():
    with pytest.raises(ValueError, match="mask_rate"):
        DynamicMLMMasking(VOCABULARY, 3, mask_rate=lambda step: 0.2)


def test_mask_dataset_keys_the_step_by_epoch_and_index():
    layer = DynamicMLMMasking(VOCABULARY, 3, mask_rate=linear_decay(), output_mode="fit")
    batches = tf.data.Dataset.from_tensor_slices(ids()).batch(4)  # N = 8 per epoch
    masked = mask_dataset(batches, layer, seed=5, num_epochs=3, num_parallel_calls=4)
    weights = [w for _, _, w in masked]
    assert len(weights) == 24
    for position in (0, 11, 23):  # start, middle (epoch 1, index 3), end
        assert_rate_close(weights[position], expected_rate(position), tokens=4 * LENGTH)
    again = [w for _, _, w in mask_dataset(batches, layer, seed=5, num_epochs=3, num_parallel_calls=1)]
    for a, b in zip(weights, again):
        np.testing.assert_array_equal(a, b)
    # The rate follows the step, not the layer's own counter.
    assert int(layer.schedule_step.numpy()) == 0


def test_service_pipeline_matches_mask_dataset_with_a_schedule():
    layer = DynamicMLMMasking(VOCABULARY, 3, mask_rate=linear_decay(), output_mode="fit")
    batches = tf.data.Dataset.from_tensor_slices(ids()).batch(4)
    local = [w.numpy() for _, _, w in mask_dataset(batches, layer, seed=9, num_epochs=2)]
    served = [
        w.numpy()
        for _, _, w in masking_pipeline(batches, layer, "distributed_epoch", seed=9, num_epochs=2)
    ]
    assert len(local) == len(served) == 16
    for a, b in zip(local, served):
        np.testing.assert_array_equal(a, b)


def test_unknown_length_dataset_is_refused_with_a_schedule():
    layer = DynamicMLMMasking(VOCABULARY, 3, mask_rate=linear_decay())
    unknown = tf.data.Dataset.from_tensor_slices(ids()).filter(lambda row: True)
    with pytest.raises(ValueError, match="cardinality"):
        mask_dataset(unknown, layer, seed=1)


def test_plain_map_advances_the_counter_once_per_batch():
    layer = DynamicMLMMasking(VOCABULARY, 3, mask_rate=linear_decay(), output_mode="fit")
    batches = tf.data.Dataset.from_tensor_slices(ids()).batch(4).map(layer)
    for _ in range(2):
        list(batches)
    assert int(layer.schedule_step.numpy()) == 16
    assert layer.current_mask_rate() == pytest.approx(expected_rate(16), abs=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_in_a_model_only_training_steps_advance_and_keras_file_restores(tmp_path, jit_compile):
    masking = DynamicMLMMasking(100, 3, mask_rate=linear_decay(), output_mode="fit")
    backbone = keras.Sequential(
        [keras.Input((None,), dtype="int32"), keras.layers.Embedding(100, 8), keras.layers.Dense(100)]
    )
    model = MaskedLMModel(backbone, masking)
    model.compile(optimizer="adam", jit_compile=jit_compile)
    data = np.random.default_rng(0).integers(5, 100, (32, 16)).astype("int32")
    history = model.fit(
        data, epochs=2, batch_size=8, verbose=0,
        callbacks=[rate_schedules.MaskRateLogger(masking)],
    )
    assert int(masking.schedule_step.numpy()) == 8  # 2 epochs x 4 steps
    # Each epoch logs the mean rate its four batches were masked with.
    assert history.history["mask_rate"] == pytest.approx(
        [np.mean([expected_rate(s) for s in steps]) for steps in (range(4), range(4, 8))],
        abs=1e-6,
    )
    model.evaluate(data, verbose=0)
    model.predict(data, verbose=0)
    model(data)
    assert int(masking.schedule_step.numpy()) == 8
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert int(restored.masking.schedule_step.numpy()) == 8
    assert restored.masking.current_mask_rate() == pytest.approx(expected_rate(8), abs=1e-6)


def test_schedule_under_xla_follows_the_rate():
    layer = DynamicMLMMasking(VOCABULARY, 3, mask_rate=linear_decay(), output_mode="fit")
    masked = tf.function(lambda x: layer(x, training=True), jit_compile=True)
    for step in range(3):
        _, _, weights = masked(ids(step))
        assert_rate_close(weights, expected_rate(step))
    assert int(layer.schedule_step.numpy()) == 3


def test_rate_logger_needs_a_rate():
    with pytest.raises(ValueError, match="current_mask_rate"):
        rate_schedules.MaskRateLogger(object())


# The logged rate against the realised one, in every documented set-up. A
# steep schedule (0.0875 a step, 8 standard deviations of a batch's share)
# tells a rate one step off from the right one.
STEEP_STEPS, LOGGED_BATCH, LOGGED_EPOCHS, LOGGED_BATCHES = 8, (32, 64), 3, 6


def steep_decay():
    return keras.optimizers.schedules.PolynomialDecay(0.8, STEEP_STEPS, 0.1)


class RealisedRate(keras.Model):
    """Trains nothing; reports the share of tokens each batch selected.

    With a `masking` layer it masks inside the train step (in the model),
    else it takes `(x, y, sample_weight)` batches masked by the pipeline.
    """

    def __init__(self, masking=None):
        super().__init__()
        self.masking = masking
        self.unused = keras.layers.Dense(1)

    def call(self, x, training=None):
        return x

    def train_step(self, data):
        if self.masking is not None:
            data = self.masking(data, training=True)
        _, _, weights = data
        return {"realised": tf.reduce_mean(tf.cast(weights, tf.float32))}


class LogRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches, self.epochs = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append((float(logs["realised"]), float(logs["mask_rate"])))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(float(logs["mask_rate"]))


def id_batches(seed=7):
    rng = np.random.default_rng(seed)
    rows = rng.integers(5, VOCABULARY, (LOGGED_BATCHES * LOGGED_BATCH[0], LOGGED_BATCH[1]))
    return tf.data.Dataset.from_tensor_slices(rows.astype("int32")).batch(LOGGED_BATCH[0])


def steep_rate(step):
    return 0.8 + (0.1 - 0.8) * min(step, STEEP_STEPS) / STEEP_STEPS


def pipeline_for(setup, masking):
    """`(model, dataset, fit arguments)` for one documented set-up."""
    batches = id_batches()
    if setup == "in model":
        return RealisedRate(masking), batches, {}
    if setup == "map":
        return RealisedRate(), batches.map(masking), {}
    if setup == "map, prefetched":  # masks run ahead of training
        return RealisedRate(), batches.map(masking).prefetch(3), {}
    if setup == "mask_dataset":
        return RealisedRate(), mask_dataset(batches, masking, seed=3), {}
    masked = mask_dataset(batches, masking, seed=3, num_epochs=LOGGED_EPOCHS)
    return RealisedRate(), masked, {"steps_per_epoch": LOGGED_BATCHES}


@pytest.mark.parametrize(
    "setup", ["in model", "map", "map, prefetched", "mask_dataset", "mask_dataset, num_epochs"]
)
def test_logger_logs_the_rate_the_trained_masks_were_drawn_with(setup):
    masking = DynamicMLMMasking(VOCABULARY, 3, mask_rate=steep_decay(), output_mode="fit")
    model, dataset, fit_arguments = pipeline_for(setup, masking)
    model.compile(optimizer="sgd")
    recorder = LogRecorder()
    model.fit(
        dataset, epochs=LOGGED_EPOCHS, verbose=0,
        callbacks=[rate_schedules.MaskRateLogger(masking), recorder], **fit_arguments,
    )
    realised, logged = np.array(recorder.batches).T
    assert len(realised) == LOGGED_EPOCHS * LOGGED_BATCHES
    # Each batch within binomial bounds of the rate logged for it (one
    # family-wise error rate of 1e-6 over all of them).
    tokens = LOGGED_BATCH[0] * LOGGED_BATCH[1]
    z = normal_upper_quantile(1e-6 / (2 * len(realised)))
    spread = z * np.sqrt(logged * (1 - logged) / tokens)
    assert np.all(np.abs(realised - logged) <= spread), np.c_[realised, logged]
    # The logged rates are the schedule's at consecutive steps (from where
    # the set-up starts counting).
    runs = [[steep_rate(start + k) for k in range(len(logged))] for start in range(40)]
    assert any(np.allclose(logged, run, atol=1e-6) for run in runs), logged
    # Each epoch logs the mean of its batches' rates.
    per_epoch = logged.reshape(LOGGED_EPOCHS, LOGGED_BATCHES).mean(axis=1)
    np.testing.assert_allclose(recorder.epochs, per_epoch, atol=1e-6)


def test_logger_with_several_keyed_datasets_needs_the_training_one():
    masking = DynamicMLMMasking(VOCABULARY, 3, mask_rate=steep_decay(), output_mode="fit")
    model, training, _ = pipeline_for("mask_dataset", masking)
    validation = mask_dataset(id_batches(8), masking, seed=4)
    assert set(rate_schedules.keyed_datasets(masking)) == {training, validation}
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="dataset"):
        model.fit(training, verbose=0, callbacks=[rate_schedules.MaskRateLogger(masking)])
    recorder = LogRecorder()
    logger = rate_schedules.MaskRateLogger(masking, dataset=training)
    model.fit(training, epochs=2, verbose=0, callbacks=[logger, recorder])
    realised, logged = np.array(recorder.batches).T
    tokens = LOGGED_BATCH[0] * LOGGED_BATCH[1]
    z = normal_upper_quantile(1e-6 / (2 * len(realised)))
    assert np.all(np.abs(realised - logged) <= z * np.sqrt(logged * (1 - logged) / tokens))
    with pytest.raises(ValueError, match="dataset"):
        rate_schedules.MaskRateLogger(masking, dataset=training.take(2))


def test_negative_step_is_refused_not_extrapolated():
    # PolynomialDecay(0.3, 10, 0.15) at step -100 is 1.8, clipped to 1:
    # every token would be selected.
    schedule = keras.optimizers.schedules.PolynomialDecay(0.3, 10, 0.15)
    layer = DynamicMLMMasking(VOCABULARY, 3, mask_rate=schedule, selection="exact", output_mode="fit")
    row = tf.fill([1, 40], 7)
    with pytest.raises(ValueError, match="step=-100"):
        layer(row, step=-100)
    with pytest.raises(ValueError, match="step=.*-100"):
        layer(row, step=tf.constant(-100))
    in_graph = tf.function(lambda ids, step: layer(ids, step=step)[2])
    with pytest.raises(tf.errors.InvalidArgumentError, match="step"):
        in_graph(row, tf.constant(-100, tf.int64))
    # Under XLA, which drops assertions, a negative step counts as step 0.
    compiled = tf.function(lambda ids, step: layer(ids, step=step, training=True)[2], jit_compile=True)
    assert float(tf.reduce_sum(compiled(row, tf.constant(-100, tf.int64)))) == 12  # round(0.3 * 40)
    assert float(tf.reduce_sum(layer(row, step=0)[2])) == 12
