"""DynamicMLMMasking under tf.distribute.MirroredStrategy on 2 logical CPUs.

TensorFlow fixes its logical devices when it initialises, so the scenario
runs in a fresh Python that splits the CPU into two logical devices before
anything else, and prints its findings as JSON. Every replica gets the same
ids, so a mask copied from one replica to the other would show as two equal
masks; masks drawn per replica differ.
"""

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

SCENARIO = textwrap.dedent(
    """
    import json
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import numpy as np
    from keras_dynmask import DynamicMLMMasking, MaskedLMModel

    keras.utils.set_random_seed(0)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    V, T = 64, 32
    row = np.random.RandomState(0).randint(5, V, size=(1, T)).astype("int32")
    same_rows = np.tile(row, (64, 1))
    results = {"replicas": strategy.num_replicas_in_sync}


    def masking(seed=None):
        return DynamicMLMMasking(vocabulary_size=V, mask_token_id=4,
                                 mask_rate=0.5, seed=seed)


    def run_per_replica(layer):
        # One row per replica; the layer runs in replica context.
        batch = next(iter(strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices(same_rows[:2]).batch(2))))
        inputs = keras.Input((T,), dtype="int32")
        probe = keras.Model(inputs, layer(inputs))

        @tf.function
        def step(x):
            return strategy.run(lambda ids: probe(ids, training=True), args=(x,))

        first = [v.numpy().tolist() for v in
                 strategy.experimental_local_results(step(batch))]
        second = [v.numpy().tolist() for v in
                  strategy.experimental_local_results(step(batch))]
        return first, second


    with strategy.scope():
        inside = masking()
    results["created_in_scope"] = run_per_replica(inside)
    results["created_outside_scope"] = run_per_replica(masking())
    with strategy.scope():
        seeded_a = masking(seed=7)
    with strategy.scope():
        seeded_b = masking(seed=7)
    results["seeded_a"] = run_per_replica(seeded_a)
    results["seeded_b"] = run_per_replica(seeded_b)


    class RecordInput(keras.layers.Layer):
        # Keeps the ids each replica saw last, in a per-replica variable.
        def __init__(self, store, **kwargs):
            super().__init__(**kwargs)
            self._store = store

        def compute_output_shape(self, shape):
            return shape

        def call(self, ids):
            self._store[0].assign(tf.cast(ids, tf.int32))
            return ids


    def per_replica_store():
        return [tf.Variable(
            tf.zeros([1, T], tf.int32), trainable=False,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.SUM)]


    def recorded(store):
        return [v.numpy().tolist()
                for v in strategy.experimental_local_results(store[0])]


    # 1. model.add(DynamicMLMMasking(...)): a denoising model trained with fit.
    with strategy.scope():
        store = per_replica_store()
        model = keras.Sequential([
            keras.Input((T,), dtype="int32"),
            masking(),
            RecordInput(store),
            keras.layers.Embedding(V, 32),
            keras.layers.Dense(V),
        ])
        model.compile(
            optimizer=keras.optimizers.Adam(0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(same_rows, same_rows, batch_size=2, epochs=3, verbose=0)
    results["sequential_loss"] = history.history["loss"]
    results["sequential_seen"] = recorded(store)
    logits = model.predict(same_rows[:4], batch_size=2, verbose=0)
    results["sequential_predict_shape"] = list(logits.shape)
    results["sequential_predict_seen"] = recorded(store)

    # 2. MaskedLMModel: masking in the train step, loss on masked positions.
    with strategy.scope():
        store = per_replica_store()
        backbone = keras.Sequential([
            keras.Input((T,), dtype="int32"),
            RecordInput(store),
            keras.layers.Embedding(V, 32),
            keras.layers.Dense(V),
        ])
        mlm = MaskedLMModel(backbone, DynamicMLMMasking(
            vocabulary_size=V, mask_token_id=4, mask_rate=0.5, output_mode="fit"))
        mlm.compile(optimizer=keras.optimizers.Adam(0.01))
    try:
        history = mlm.fit(same_rows, batch_size=2, epochs=3, verbose=0)
        results["mlm_loss"] = history.history["loss"]
        results["mlm_seen"] = recorded(store)
    except Exception as error:  # reported by the test, see there
        results["mlm_error"] = f"{type(error).__name__}: {error}"
    results["row"] = row[0].tolist()
    print("RESULTS " + json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def mirrored():
    result = subprocess.run(
        [sys.executable, "-c", SCENARIO],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
    assert result.returncode == 0 and lines, (
        f"scenario failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
        f"{result.stderr[-6000:]}"
    )
    return json.loads(lines[-1][len("RESULTS ") :])


def masked_positions(ids, row):
    return sum(a != b for a, b in zip(ids, row))


def test_two_replicas(mirrored):
    assert mirrored["replicas"] == 2


@pytest.mark.parametrize("case", ["created_in_scope", "created_outside_scope"])
def test_each_replica_draws_its_own_mask(mirrored, case):
    row = mirrored["row"]
    for step in mirrored[case]:
        replica_0, replica_1 = step[0][0], step[1][0]
        assert masked_positions(replica_0, row) > 0
        assert masked_positions(replica_1, row) > 0
        assert replica_0 != replica_1, f"{case}: the replicas got one mask"
    first, second = mirrored[case]
    assert first != second, f"{case}: the second step repeated the first"


def test_constructor_seed_reproduces_per_replica_masks(mirrored):
    # Same seed, same per-replica masks, step after step; replicas differ.
    assert mirrored["seeded_a"] == mirrored["seeded_b"]
    first_step = mirrored["seeded_a"][0]
    assert first_step[0] != first_step[1]


def check_fit(mirrored, model):
    row = mirrored["row"]
    replica_0, replica_1 = (seen[0] for seen in mirrored[f"{model}_seen"])
    assert masked_positions(replica_0, row) > 0
    assert masked_positions(replica_1, row) > 0
    assert replica_0 != replica_1, f"{model}: fit gave both replicas one mask"
    losses = mirrored[f"{model}_loss"]
    assert all(math.isfinite(loss) for loss in losses), losses  # not NaN, not inf
    assert losses[-1] < losses[0], losses


def test_fit_draws_different_masks_per_replica_and_trains(mirrored):
    check_fit(mirrored, "sequential")


def test_masked_lm_model_fit_under_mirrored_strategy(mirrored):
    assert "mlm_error" not in mirrored, mirrored.get("mlm_error")
    check_fit(mirrored, "mlm")


def test_predict_under_the_strategy_is_unmasked(mirrored):
    assert mirrored["sequential_predict_shape"] == [4, 32, 64]
    for seen in mirrored["sequential_predict_seen"]:
        assert seen[0] == mirrored["row"]
