"""mask_dataset: seeded masks keyed by (seed, epoch, element index)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask import DynamicMLMMasking
from keras_dynmask.data import mask_dataset


def ids_dataset(batch=4):
    ids = np.random.RandomState(0).randint(5, 300, size=(24, 16)).astype("int32")
    return tf.data.Dataset.from_tensor_slices(ids).batch(batch)


def masks(dataset):
    return np.concatenate([out["mask"].numpy() for out in dataset])


def make_layer():
    return DynamicMLMMasking(vocabulary_size=300, mask_token_id=4, output_mode="dict")


def test_seeded_masks_reproduce_run_to_run_and_differ_between_epochs():
    first = mask_dataset(ids_dataset(), make_layer(), seed=5)
    epochs_a = [masks(first) for _ in range(3)]
    second = mask_dataset(ids_dataset(), make_layer(), seed=5)
    epochs_b = [masks(second) for _ in range(3)]
    for a, b in zip(epochs_a, epochs_b):
        np.testing.assert_array_equal(a, b)
    assert np.any(epochs_a[0] != epochs_a[1]) and np.any(epochs_a[1] != epochs_a[2])
    other_seed = masks(mask_dataset(ids_dataset(), make_layer(), seed=6))
    assert np.any(other_seed != epochs_a[0])


@pytest.mark.parametrize("num_parallel_calls", [1, 3, tf.data.AUTOTUNE])
def test_masks_do_not_depend_on_parallelism(num_parallel_calls):
    reference = masks(mask_dataset(ids_dataset(), make_layer(), seed=9, num_parallel_calls=1))
    other = masks(
        mask_dataset(ids_dataset(), make_layer(), seed=9, num_parallel_calls=num_parallel_calls)
    )
    np.testing.assert_array_equal(reference, other)


# The documented key of element `index` in pass `epoch` under seed `s`, stated
# here independently of the package: the pair (s mod 2**63, 0x6D61736B)
# with the epoch, then the index, folded in by TF's stateless fold-in.
ELEMENT_SALT = 0x6D61736B


def expected_element_seed(base_seed, epoch, index):
    key = tf.constant([base_seed % 2**63, ELEMENT_SALT], tf.int64)
    key = tf.random.experimental.stateless_fold_in(key, tf.constant(epoch, tf.int64))
    return tf.random.experimental.stateless_fold_in(key, tf.constant(index, tf.int64))


def test_each_element_is_keyed_by_seed_epoch_and_index():
    layer = make_layer()
    dataset = mask_dataset(ids_dataset(), layer, seed=3)
    masks(dataset)  # epoch 0
    second_epoch = list(dataset)
    batches = list(ids_dataset())
    for index in (0, 4):
        expected = layer(batches[index], seed=expected_element_seed(3, 1, index))
        np.testing.assert_array_equal(second_epoch[index]["mask"], expected["mask"])


def test_num_epochs_holds_the_same_passes_without_state():
    stateful = mask_dataset(ids_dataset(), make_layer(), seed=4)
    passes = np.concatenate([masks(stateful), masks(stateful)])
    inline = masks(mask_dataset(ids_dataset(), make_layer(), seed=4, num_epochs=2))
    np.testing.assert_array_equal(passes, inline)


def test_unseeded_masks_differ_between_epochs():
    dataset = mask_dataset(ids_dataset(), make_layer())
    assert np.any(masks(dataset) != masks(dataset))


@pytest.mark.parametrize(
    "kwargs, text",
    [(dict(seed=1.5), "seed=1.5"), (dict(seed=1, num_epochs=0), "num_epochs=0")],
)
def test_bad_arguments(kwargs, text):
    with pytest.raises(ValueError, match=text.replace(".", r"\.")):
        mask_dataset(ids_dataset(), make_layer(), **kwargs)
