"""`kernels.patch_selection`: the counts in exact arithmetic, BEiT's
candidate blocks, MAE's shuffle and its inverse, and the loop op both
bindings of the op set give."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask.kernels import op_set
from keras_dynmask.kernels import patch_selection


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def rectangle(mask_2d):
    """`(top, left, h, w)` of a mask that is one filled rectangle, else None."""
    rows, cols = np.nonzero(mask_2d)
    top, left = rows.min(), cols.min()
    h, w = rows.max() - top + 1, cols.max() - left + 1
    return (top, left, h, w) if h * w == mask_2d.sum() else None


def test_counts_are_exact():
    # In floats: 10 * (1 - 0.9) = 0.9999999999999998 and 30 * (1 - 0.9) = 2.9999999999999996.
    assert patch_selection.kept_count(10, 0.9) == 1
    assert patch_selection.kept_count(30, 0.9) == 3
    assert patch_selection.kept_count(196, 0.75) == 49
    assert patch_selection.kept_count(5, 0.99) == 1  # at least one
    assert patch_selection.masked_cell_count(10, 0.35) == 4  # exactly 3.5, half to even
    assert patch_selection.masked_cell_count(4, 0.625) == 2  # 2.5 -> 2
    assert patch_selection.default_num_masked(196) == 78


def test_the_shuffle_and_its_inverse():
    # The keras.ops binding draws with JAX's or PyTorch's ops: checked in
    # tests/backends/test_patch_masking_on_backends.py.
    ops = op_set.tensorflow_ops()
    patches = np.random.default_rng(0).random((8, 12, 2), dtype="float32")
    seed = ops.convert(np.array([3, 4], "int32"))
    kept, mask, ids_restore = patch_selection.random_patch_masking(ops, ops.convert(patches), seed, 5)
    kept, mask, ids_restore = numpy(kept), numpy(mask), numpy(ids_restore)
    assert kept.shape == (8, 5, 2) and (mask.sum(axis=1) == 7).all()
    sequence = np.concatenate([kept, np.full((8, 7, 2), -1.0, "float32")], axis=1)
    restored = numpy(patch_selection.restore_order(ops, ops.convert(sequence), ops.convert(ids_restore)))
    np.testing.assert_array_equal(restored, np.where(mask[..., None], -1.0, patches))


@pytest.mark.parametrize("binding", ["tensorflow", "keras"])
def test_fori_loop_binds_alike(binding):
    ops = op_set.tensorflow_ops() if binding == "tensorflow" else op_set.KERAS
    total, product = ops.fori_loop(
        1, 5, lambda i, state: (state[0] + i, state[1] * i),
        (ops.convert(np.int32(0)), ops.convert(np.int32(1))),
    )
    assert (int(numpy(total)), int(numpy(product))) == (10, 24)


def test_a_block_candidate_is_a_rectangle_of_allowed_area_and_aspect():
    ops = op_set.tensorflow_ops()
    masks = numpy(patch_selection.block_patch_mask(
        ops, 2000, (14, 14), tf.constant([5, 6], tf.int64), num_masked=75,
        min_block_patches=16, block_aspect=0.3, num_candidates=1,
    )).reshape(2000, 14, 14)
    shapes = set()
    for mask in masks[masks.reshape(2000, -1).any(axis=1)]:
        found = rectangle(mask)
        assert found is not None
        _, _, h, w = found
        assert 16 <= h * w <= 75 and 0.3 <= h / w <= 1 / 0.3, (h, w)
        shapes.add((h, w))
    assert len(shapes) >= 10, shapes


