"""examples/static_masking.py: masks drawn once, then replayed."""

import numpy as np
import pytest

from keras_dynmask import DynamicMLMMasking
from static_masking import epoch_order
from static_masking import materialize_static_masks
from static_masking import static_masked_dataset

VOCABULARY = 60
MASK_ID = 4


@pytest.fixture
def ids():
    return np.random.default_rng(0).integers(5, VOCABULARY, size=(12, 16)).astype("int32")


@pytest.fixture
def masker():
    return DynamicMLMMasking(
        VOCABULARY, mask_token_id=MASK_ID, mask_rate=0.3, output_mode="fit"
    )


def test_copies_are_consistent_masks_of_the_data(ids, masker):
    static = materialize_static_masks(ids, masker, dupe_factor=3, seed=5, batch_size=5)
    assert static.token_ids.shape == (3, 12, 16)
    assert static.sample_weight.dtype == np.float32
    np.testing.assert_array_equal(static.labels, ids)
    selected = static.sample_weight > 0
    # Unselected positions keep their id; some selected ones became [MASK].
    unselected_ids = np.broadcast_to(ids, static.token_ids.shape)[~selected]
    np.testing.assert_array_equal(static.token_ids[~selected], unselected_ids)
    assert (static.token_ids[selected] == MASK_ID).any()
    # The copies differ from one another.
    assert not np.array_equal(static.sample_weight[0], static.sample_weight[1])


def test_materialising_is_a_pure_function_of_the_seed(ids, masker):
    first = materialize_static_masks(ids, masker, dupe_factor=2, seed=5)
    again = materialize_static_masks(ids, masker, dupe_factor=2, seed=5)
    other = materialize_static_masks(ids, masker, dupe_factor=2, seed=6)
    np.testing.assert_array_equal(first.token_ids, again.token_ids)
    assert not np.array_equal(first.sample_weight, other.sample_weight)


def test_epoch_order_is_a_fresh_permutation_per_epoch_and_reproducible():
    order = list(epoch_order(10, 3, epochs=4, seed=1).as_numpy_iterator())
    assert len(order) == 4 * 3
    assert [int(epoch) for epoch, _ in order] == [e for e in range(4) for _ in range(3)]
    per_epoch = [np.concatenate([i for e, i in order if e == k]) for k in range(4)]
    for indices in per_epoch:
        assert len(set(indices.tolist())) == 9  # 10 // 3 batches of 3, no repeats.
    assert not all(np.array_equal(per_epoch[0], p) for p in per_epoch[1:])
    again = list(epoch_order(10, 3, epochs=4, seed=1).as_numpy_iterator())
    for (e1, i1), (e2, i2) in zip(order, again):
        assert e1 == e2 and np.array_equal(i1, i2)


def test_static_dataset_replays_copy_epoch_mod_dupe_factor(ids, masker):
    static = materialize_static_masks(ids, masker, dupe_factor=2, seed=3)
    batches = list(static_masked_dataset(static, 4, epochs=5, seed=9).as_numpy_iterator())
    order = list(epoch_order(12, 4, epochs=5, seed=9).as_numpy_iterator())
    assert len(batches) == len(order) == 15
    for (x, y, w), (epoch, indices) in zip(batches, order):
        np.testing.assert_array_equal(x, static.token_ids[epoch % 2][indices])
        np.testing.assert_array_equal(y, ids[indices])
        np.testing.assert_array_equal(w, static.sample_weight[epoch % 2][indices])


def test_dupe_factor_one_shows_every_sequence_with_one_mask(ids, masker):
    static = materialize_static_masks(ids, masker, dupe_factor=1, seed=3)
    seen = {}
    for x, y, _ in static_masked_dataset(static, 3, epochs=4, seed=2).as_numpy_iterator():
        for row_x, row_y in zip(x, y):
            seen.setdefault(row_y.tobytes(), set()).add(row_x.tobytes())
    assert len(seen) == 12
    assert all(len(masks) == 1 for masks in seen.values())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dupe_factor=0), "dupe_factor=0"),
        (dict(batch_size=True), "batch_size=True"),
    ],
)
def test_bad_arguments_quote_the_value(ids, masker, kwargs, message):
    with pytest.raises(ValueError, match=message):
        materialize_static_masks(ids, masker, **kwargs)


def test_needs_fit_mode_and_int_matrix(ids):
    ids_mode = DynamicMLMMasking(VOCABULARY, mask_token_id=MASK_ID)
    with pytest.raises(ValueError, match="output_mode='fit'"):
        materialize_static_masks(ids, ids_mode)
    fit_mode = DynamicMLMMasking(VOCABULARY, mask_token_id=MASK_ID, output_mode="fit")
    with pytest.raises(ValueError, match=r"shape \(16,\)"):
        materialize_static_masks(ids[0], fit_mode)
    with pytest.raises(ValueError, match="dtype float32"):
        materialize_static_masks(ids.astype("float32"), fit_mode)
    with pytest.raises(ValueError, match="batch_size=20"):
        epoch_order(12, 20, epochs=1, seed=0)
