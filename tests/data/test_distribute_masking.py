"""`keras_dynmask.data.distribute_masking`: masking on tf.data service workers.

The pipeline the workers run (`masking_pipeline`) is checked in-process;
then through a local service (`keras_dynmask.tools.local_data_service`):
reproducible with a seed, fresh without, and what a dead worker costs.
Each test that starts servers stops them and checks no process is left.
"""

import collections
import os
import random
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from service_processes import assert_all_gone
from keras_dynmask import DynamicMLMMasking
from keras_dynmask.data import distribute_masking
from keras_dynmask.data import mask_dataset
from keras_dynmask.data import masking_pipeline
from keras_dynmask.tools.local_data_service import LocalDataService

VOCABULARY_SIZE = 2000
MASK_ID = 4
FIRST_MARKER = 500  # column 0 of row i holds FIRST_MARKER + i: a unique key


def marked_rows(num_rows, length=16, seed=0):
    """Rows of ids whose first id names the row and is never masked."""
    rows = np.random.RandomState(seed).randint(5, FIRST_MARKER, size=(num_rows, length))
    rows[:, 0] = FIRST_MARKER + np.arange(num_rows)
    return rows.astype("int32")


def make_layer(num_rows):
    markers = list(range(FIRST_MARKER, FIRST_MARKER + num_rows))
    return DynamicMLMMasking(
        vocabulary_size=VOCABULARY_SIZE,
        mask_token_id=MASK_ID,
        mask_rate=0.5,
        special_token_ids=markers,
        output_mode="dict",
    )


def pairs(dataset):
    """Multiset of (row, mask) pairs; each element may be a row or a batch."""
    found = collections.Counter()
    for out in dataset:
        labels = np.reshape(out["labels"].numpy(), (-1, out["labels"].shape[-1]))
        masks = np.reshape(out["mask"].numpy(), labels.shape)
        corrupted = np.reshape(out["token_ids"].numpy(), labels.shape)
        for row, mask in zip(corrupted, masks):
            found[(int(row[0]), tuple(row.tolist()), tuple(mask.tolist()))] += 1
    return found


@pytest.fixture(scope="module")
def cluster():
    """A dispatcher and two workers, shared by this module's tests.

    Its worker count never changes, so no test depends on the order tests run in.
    """
    with LocalDataService(num_workers=2, max_lifetime_s=900) as service:
        yield service
    assert_all_gone(service)


@pytest.fixture(scope="module")
def single_worker_cluster():
    with LocalDataService(num_workers=1, max_lifetime_s=900) as service:
        yield service
    assert_all_gone(service)


@pytest.fixture
def restore_global_seeds():
    yield
    tf.random.set_seed(None)
    random.seed()
    np.random.seed()


# The pipeline the workers run, checked in-process.


@pytest.mark.parametrize(
    "processing_mode, elements_per_split",
    [("parallel_epochs", 1), ("distributed_epoch", 1), ("distributed_epoch", 4)],
)
def test_seeded_pipeline_matches_mask_dataset(processing_mode, elements_per_split):
    rows = marked_rows(24)
    dataset = tf.data.Dataset.from_tensor_slices(rows).batch(4)
    layer = make_layer(24)
    pipeline = masking_pipeline(
        dataset, layer, processing_mode, seed=11, num_epochs=3,
        elements_per_split=elements_per_split,
    )
    reference = mask_dataset(dataset, layer, seed=11, num_epochs=3)
    for got, want in zip(pipeline, reference, strict=True):
        np.testing.assert_array_equal(got["mask"], want["mask"])
        np.testing.assert_array_equal(got["token_ids"], want["token_ids"])


@pytest.mark.parametrize("processing_mode", ["parallel_epochs", "distributed_epoch"])
@pytest.mark.parametrize("seed", [None, 4])
def test_preprocess_runs_before_the_masking(processing_mode, seed):
    texts = tf.data.Dataset.from_tensor_slices(
        [" ".join(str(FIRST_MARKER + i) for _ in range(3)) for i in range(12)]
    ).batch(4)

    def to_ids(batch):
        return tf.strings.to_number(tf.strings.split(batch), tf.int32).to_tensor()

    layer = make_layer(12)
    pipeline = masking_pipeline(
        texts, layer, processing_mode, seed=seed, num_epochs=2, preprocess=to_ids
    )
    outputs = list(pipeline)
    assert len(outputs) == 6
    assert all(out["token_ids"].shape == (4, 3) for out in outputs)
    if seed is not None:
        reference = mask_dataset(texts.map(to_ids), layer, seed=seed, num_epochs=2)
        for got, want in zip(outputs, reference, strict=True):
            np.testing.assert_array_equal(got["mask"], want["mask"])


def test_keyed_pipeline_over_a_map_dataset_survives_parallel_calls():
    """TensorFlow 2.21 segfaults on concurrent `at()` into a `map` dataset.

    Runs in a child process so that a regression fails this test only.
    """
    script = """
import numpy as np, tensorflow as tf
from keras_dynmask import DynamicMLMMasking
from keras_dynmask.data import mask_dataset, masking_pipeline
rows = np.arange(5, 5 + 64 * 8, dtype="int32").reshape(64, 8) % 90 + 5
dataset = tf.data.Dataset.from_tensor_slices(rows).batch(2).map(lambda x: x + 0)
layer = DynamicMLMMasking(vocabulary_size=100, mask_token_id=4, mask_rate=0.5)
for _ in range(3):
    got = [x.numpy() for x in masking_pipeline(
        dataset, layer, seed=1, num_epochs=4, num_parallel_calls=8)]
want = [x.numpy() for x in mask_dataset(dataset, layer, seed=1, num_epochs=4)]
assert len(got) == len(want) == 128
assert all(np.array_equal(a, b) for a, b in zip(got, want))
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0 and "ok" in result.stdout, (
        f"exit code {result.returncode}:\n{result.stderr[-3000:]}"
    )


def test_unseeded_pipeline_is_fresh_every_epoch_after_set_random_seed(restore_global_seeds):
    keras.utils.set_random_seed(0)
    rows = marked_rows(32)
    layer = make_layer(32)
    pipeline = masking_pipeline(
        tf.data.Dataset.from_tensor_slices(rows), layer, seed=None, num_epochs=2
    )
    first = [out["mask"].numpy() for out in pipeline]
    again = [out["mask"].numpy() for out in pipeline]
    epoch_0, epoch_1 = np.stack(first[:32]), np.stack(first[32:])
    assert np.any(epoch_0 != epoch_1)
    assert np.any(np.stack(first) != np.stack(again))


def test_ragged_and_dict_elements_go_through_the_keyed_pipeline():
    ragged = tf.ragged.constant([[9, 10, 11], [12, 13], [14, 15, 16, 17]], tf.int32)
    dataset = tf.data.Dataset.from_tensor_slices(
        {"token_ids": ragged, "segment": tf.constant([0, 1, 2])}
    ).batch(2)
    layer = DynamicMLMMasking(vocabulary_size=20, mask_token_id=3, mask_rate=0.5)
    pipeline = masking_pipeline(dataset, layer, "distributed_epoch", seed=3, num_epochs=2)
    reference = mask_dataset(dataset, layer, seed=3, num_epochs=2)
    for got, want in zip(pipeline, reference, strict=True):
        assert isinstance(got["token_ids"], tf.RaggedTensor)
        assert got["token_ids"].to_list() == want["token_ids"].to_list()
        np.testing.assert_array_equal(got["segment"], want["segment"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(processing_mode="dynamic"), "processing_mode='dynamic'"),
        (dict(num_epochs=0), "num_epochs=0"),
        (dict(num_epochs=None), "num_epochs=None"),
        (dict(seed=2.5), "seed=2.5"),
        (dict(seed=1, elements_per_split=0), "elements_per_split=0"),
    ],
)
def test_bad_arguments_quote_the_value(kwargs, message):
    dataset = tf.data.Dataset.from_tensor_slices(marked_rows(4))
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        masking_pipeline(dataset, make_layer(4), **kwargs)


def test_seeded_distributed_epoch_needs_known_cardinality_and_random_access():
    rows = tf.data.Dataset.from_tensor_slices(marked_rows(8))
    with pytest.raises(ValueError, match="unknown cardinality"):
        masking_pipeline(rows.filter(lambda r: r[1] > 0), make_layer(8), seed=1)
    with pytest.raises(ValueError, match="infinite cardinality"):
        masking_pipeline(rows.repeat(), make_layer(8), seed=1)
    not_random_access = tf.data.Dataset.from_generator(
        lambda: iter(marked_rows(8)), output_signature=tf.TensorSpec([16], tf.int32)
    ).apply(tf.data.experimental.assert_cardinality(8))
    with pytest.raises(ValueError, match="random access"):
        masking_pipeline(not_random_access, make_layer(8), seed=1)
    # Without a seed, or in parallel_epochs mode, any dataset will do.
    masking_pipeline(not_random_access, make_layer(8), seed=None)
    masking_pipeline(not_random_access, make_layer(8), "parallel_epochs", seed=1)


def test_distribute_masking_rejects_a_bad_service():
    dataset = tf.data.Dataset.from_tensor_slices(marked_rows(4))
    with pytest.raises(ValueError, match="service=None"):
        distribute_masking(dataset, make_layer(4), None)
    with pytest.raises(ValueError, match="job_name=''"):
        distribute_masking(dataset, make_layer(4), "grpc://127.0.0.1:1", job_name="")


# Through a tf.data service.


def masks_by_row(result):
    """{marker: [mask, ...]}, one entry per delivery, from `pairs`."""
    by_row = collections.defaultdict(list)
    for (marker, _, mask), count in result.items():
        by_row[marker].extend([mask] * count)
    return by_row


def test_seeded_pairs_are_identical_with_one_and_two_workers(single_worker_cluster, cluster):
    """The (element, mask) set depends on the seed only, not on the workers."""
    num_rows, num_epochs = 48, 2
    rows = marked_rows(num_rows)
    layer = make_layer(num_rows)
    dataset = tf.data.Dataset.from_tensor_slices(rows).batch(4)
    reference = pairs(mask_dataset(dataset, layer, seed=5, num_epochs=num_epochs))
    assert len(reference) == num_rows * num_epochs  # the epochs' masks differ

    def serve_all(service):
        def served(processing_mode, elements_per_split=1):
            return pairs(
                distribute_masking(
                    dataset,
                    layer,
                    service.service,
                    processing_mode,
                    seed=5,
                    num_epochs=num_epochs,
                    elements_per_split=elements_per_split,
                )
            )

        return {
            "distributed_epoch": served("distributed_epoch"),
            "distributed_epoch, 5 a split": served("distributed_epoch", 5),
            "parallel_epochs": served("parallel_epochs"),
        }

    assert len(single_worker_cluster.workers) == 1 and len(cluster.workers) == 2
    for num_workers, service in ((1, single_worker_cluster), (2, cluster)):
        result = serve_all(service)
        # distributed_epoch: every pair exactly once.
        assert result["distributed_epoch"] == reference
        assert result["distributed_epoch, 5 a split"] == reference
        # parallel_epochs: every worker makes every pair, with the same mask.
        assert set(result["parallel_epochs"]) == set(reference)
        assert result["parallel_epochs"] == collections.Counter(
            {key: num_workers for key in reference}
        )


def test_unseeded_masks_differ_between_epochs_and_jobs(cluster, restore_global_seeds):
    keras.utils.set_random_seed(0)
    num_rows = 64
    rows = marked_rows(num_rows)
    layer = make_layer(num_rows)
    dataset = tf.data.Dataset.from_tensor_slices(rows).batch(8)
    served = distribute_masking(dataset, layer, cluster.service, seed=None, num_epochs=2)
    job_1 = masks_by_row(pairs(served))
    job_2 = masks_by_row(pairs(served))  # iterating again starts a new job
    assert sorted(job_1) == list(range(FIRST_MARKER, FIRST_MARKER + num_rows))
    same_in_both_epochs = sum(len(set(masks)) == 1 for masks in job_1.values())
    # 15 maskable ids at rate 0.5: two independent masks agree w.p. 2**-15.
    assert same_in_both_epochs <= 2, same_in_both_epochs
    repeated_across_jobs = sum(set(job_1[m]) == set(job_2[m]) for m in job_1)
    assert repeated_across_jobs <= 2, repeated_across_jobs


def test_plain_unseeded_map_is_fresh_per_worker_and_per_job(cluster):
    num_rows = 32
    rows = marked_rows(num_rows)
    # Sequential map: each worker draws in element order.
    dataset = mask_dataset(
        tf.data.Dataset.from_tensor_slices(rows), make_layer(num_rows), num_parallel_calls=None
    )
    served = dataset.apply(
        tf.data.experimental.service.distribute("parallel_epochs", cluster.service)
    )
    first, second = masks_by_row(pairs(served)), masks_by_row(pairs(served))
    for job in (first, second):
        assert sorted(job) == list(range(FIRST_MARKER, FIRST_MARKER + num_rows))
        assert all(len(masks) == 2 for masks in job.values())  # one per worker
        # The two workers' copies of an element: two independent masks agree
        # with chance 2**-15.
        same_on_both_workers = sum(masks[0] == masks[1] for masks in job.values())
        assert same_on_both_workers <= 2, same_on_both_workers
    repeated_across_jobs = sum(set(first[m]) & set(second[m]) != set() for m in first)
    assert repeated_across_jobs <= 2, repeated_across_jobs


def test_a_constructor_seed_replays_its_sequence_on_every_worker(cluster):
    num_rows = 32
    rows = marked_rows(num_rows)
    markers = list(range(FIRST_MARKER, FIRST_MARKER + num_rows))
    layer = DynamicMLMMasking(
        vocabulary_size=VOCABULARY_SIZE, mask_token_id=MASK_ID, mask_rate=0.5,
        special_token_ids=markers, output_mode="dict", seed=21,
    )
    # A plain sequential map of the seeded layer: each worker replays the
    # layer's sequence, so its two copies of each element agree.
    plain = tf.data.Dataset.from_tensor_slices(rows).map(layer)
    by_row = masks_by_row(
        pairs(plain.apply(tf.data.experimental.service.distribute("parallel_epochs", cluster.service)))
    )
    assert sorted(by_row) == markers
    assert all(len(masks) == 2 and masks[0] == masks[1] for masks in by_row.values())
    # The masks are not all alike (the sequence moves from element to element).
    assert len({masks[0] for masks in by_row.values()}) == num_rows
    # distribute_masking without a seed keys the masks by the layer's seed.
    dataset = tf.data.Dataset.from_tensor_slices(rows).batch(4)
    served = pairs(distribute_masking(dataset, layer, cluster.service, seed=None))
    assert served == pairs(mask_dataset(dataset, layer, seed=21))


class FingerprintModel(keras.Model):
    """A model whose training step reports a fingerprint of the batch's masks."""

    def __init__(self):
        super().__init__()
        self.scale = keras.Variable(1.0)

    def train_step(self, data):
        x, y, weights = data
        positions = tf.cast(tf.range(tf.shape(weights)[1]), tf.float32)[None, :]
        fingerprint = tf.reduce_sum(weights * (positions + 1.0) * tf.cast(x, tf.float32))
        return {"fingerprint": fingerprint * self.scale}


def test_fit_with_steps_per_epoch_keeps_one_job_across_epochs(cluster):
    """Each epoch of `fit` gets the next seeded pass, not pass 0 again."""
    num_epochs = 3
    rows = marked_rows(8)
    layer = DynamicMLMMasking(
        vocabulary_size=VOCABULARY_SIZE, mask_token_id=MASK_ID, mask_rate=0.5,
        output_mode="fit",
    )
    dataset = tf.data.Dataset.from_tensor_slices(rows).batch(8)  # one batch a pass
    reference = []
    for x, _, weights in mask_dataset(dataset, layer, seed=8, num_epochs=num_epochs):
        positions = np.arange(weights.shape[1], dtype=np.float64)[None, :]
        reference.append(float((weights.numpy() * (positions + 1) * x.numpy()).sum()))
    assert len(set(reference)) == num_epochs
    served = distribute_masking(
        dataset, layer, cluster.service, seed=8, num_epochs=num_epochs
    )
    model = FingerprintModel()
    model.compile(optimizer="sgd")
    history = model.fit(served, epochs=num_epochs, steps_per_epoch=1, verbose=0)
    np.testing.assert_allclose(sorted(history.history["fingerprint"]), sorted(reference),
                               rtol=1e-6)


# At most this many of the 600 elements are lost when one of two workers is
# killed (measured: 0 to 7); more means the dead worker held far more than
# its in-flight share.
MAX_LOST = 16


def test_distributed_epoch_when_a_worker_dies_mid_epoch(cluster):
    """What `distributed_epoch` guarantees when a worker is killed mid-epoch.

    TensorFlow 2.21: the dispatcher hands each position to one worker and
    never hands it out again. When a worker dies, the positions it held and
    had not delivered are lost; the surviving worker carries on with the
    rest; and the reader keeps waiting for the dead worker's task, so the
    job finishes only once a worker serves that address again (here a
    restart, as a supervisor would do). Delivered: at most once each, with
    the mask their key gives; lost: the dead worker's undelivered share, a
    few elements.

    The module's cluster is used (three fewer TensorFlow start-ups); the
    killed worker is restarted on its address before the test ends, so the
    cluster keeps its two workers.
    """
    num_rows = 600
    rows = marked_rows(num_rows, length=32)
    layer = make_layer(num_rows)
    dataset = tf.data.Dataset.from_tensor_slices(rows)
    reference = pairs(mask_dataset(dataset, layer, seed=9, num_epochs=1))
    delivered = []
    arrived = threading.Condition()
    served = distribute_masking(dataset, layer, cluster.service, seed=9)
    iterator = iter(served)
    for _ in range(100):
        delivered.append(next(iterator))
    victim = cluster.workers[1]
    victim.kill()
    try:
        delivered_at_kill = len(delivered)

        def read_rest():
            for element in iterator:
                with arrived:
                    delivered.append(element)
                    arrived.notify_all()

        reader = threading.Thread(target=read_rest, daemon=True)
        reader.start()
        # The surviving worker delivers everything but the dead worker's
        # share: wait for that (bounded; it does not depend on timing).
        with arrived:
            arrived.wait_for(lambda: len(delivered) >= num_rows - MAX_LOST, timeout=180)
            assert len(delivered) >= num_rows - MAX_LOST, (
                f"only {len(delivered)} of {num_rows} delivered by the surviving worker"
            )
            # Then until it falls quiet (3 s without an element; however
            # slow the machine, this cannot fail a correct job).
            while arrived.wait_for(lambda n=len(delivered): len(delivered) > n, timeout=3):
                pass
            at_restart = len(delivered)
        # The job does not end while the dead worker's task is unserved.
        assert reader.is_alive(), "the job ended while a worker's task was unserved"
        cluster.restart_worker(victim)
        reader.join(timeout=120)
        assert not reader.is_alive(), "the job did not finish after the restart"
    finally:  # The cluster keeps two workers for whatever runs next.
        if victim in cluster.workers:
            cluster.restart_worker(victim)

    got = pairs(delivered)
    duplicates = {key: n for key, n in got.items() if n > 1}
    lost = sorted(key[0] - FIRST_MARKER for key in set(reference) - set(got))
    print(
        f"\ndistributed_epoch, worker killed after {delivered_at_kill} of {num_rows}: "
        f"{sum(got.values())} delivered ({at_restart - delivered_at_kill} by the "
        f"survivor before the restart), {len(duplicates)} duplicated, {len(lost)} lost: {lost}"
    )
    assert not duplicates  # at most once
    assert set(got) <= set(reference)  # every delivered mask is its keyed mask
    assert len(lost) <= MAX_LOST, lost
