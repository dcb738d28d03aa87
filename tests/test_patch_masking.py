"""`PatchMasking` and `restore_patches`: MAE, BEiT and SimMIM masks.

Exact counts where the papers give exact counts (MAE's kept patches,
SimMIM's cells), the uniformity of the random subsets inside binomial and
chi-square bounds, BEiT's budget never exceeded and nearly met, blocks of
the allowed areas and aspect ratios placed uniformly, `restore_patches` the
exact inverse of the shuffle, the mask token exactly where the mask is, and
nothing masked when not training; in `tf.data`, under XLA, saved and
exported.
"""

import math
import os

import concurrent.futures
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from distribution_bounds import binomial_upper_critical
from distribution_bounds import chi2_critical
from distribution_bounds import chi_square
from keras_dynmask import PatchMasking
from keras_dynmask import restore_patches
from keras_dynmask.kernels import patch_selection


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def numbered_patches(batch, num_patches, depth=3):
    """Patch `n` of every image holds `n` in its first channel."""
    patches = np.random.default_rng(0).random((batch, num_patches, depth), dtype="float32")
    patches[:, :, 0] = np.arange(num_patches)
    return patches


def two_sided(n, p, alpha=1e-6):
    return n - binomial_upper_critical(n, 1 - p, alpha), binomial_upper_critical(n, p, alpha)


# "random" (MAE)


@pytest.mark.parametrize(
    "num_patches, mask_ratio, kept",
    [(196, 0.75, 49), (10, 0.9, 1), (30, 0.9, 3), (16, 0.7, 4), (7, 0.99, 1)],
)
def test_random_keeps_floor_of_the_exact_product(num_patches, mask_ratio, kept):
    # (30, 0.9): in floats 30 * (1 - 0.9) = 2.9999999999999996, which floors to 2.
    assert patch_selection.kept_count(num_patches, mask_ratio) == kept
    out = PatchMasking("random", mask_ratio=mask_ratio, seed=1)(numbered_patches(4, num_patches))
    assert tuple(out["kept"].shape) == (4, kept, 3)
    np.testing.assert_array_equal(numpy(out["mask"]).sum(axis=1), num_patches - kept)


def test_a_numpy_float32_ratio_counts_as_the_decimal_it_prints_as():
    # np.float32(0.6) holds 0.6000000238...: read as is, 15 patches would keep 5.
    layer = PatchMasking("random", mask_ratio=np.float32(0.6), seed=1)
    assert layer.get_config()["mask_ratio"] == 0.6
    assert tuple(layer(numbered_patches(2, 15))["kept"].shape) == (2, 6, 3)


def test_random_kept_patches_are_the_unmasked_ones_and_restore_inverts():
    patches = numbered_patches(64, 49)
    out = PatchMasking("random", mask_ratio=0.75, seed=2)(patches)
    kept, mask, ids_restore = numpy(out["kept"]), numpy(out["mask"]), numpy(out["ids_restore"])
    assert ids_restore.dtype == np.int32
    for b in range(64):
        np.testing.assert_array_equal(np.sort(kept[b, :, 0]), np.flatnonzero(~mask[b]))
        np.testing.assert_array_equal(np.sort(ids_restore[b]), np.arange(49))
    tokens = np.full((64, 49 - 12, 3), -7.0, "float32")
    expected = np.where(mask[..., None], -7.0, patches)
    restored = restore_patches(np.concatenate([kept, tokens], axis=1), ids_restore)
    np.testing.assert_array_equal(numpy(restored), expected)
    # The same with the token appended by restore_patches itself.
    restored = restore_patches(kept, ids_restore, mask_token=tf.constant([-7.0] * 3))
    np.testing.assert_array_equal(numpy(restored), expected)


def test_random_subsets_are_uniform():
    """Each patch kept with probability K/N, each pair with K(K-1)/(N(N-1))."""
    batch, num_patches, kept = 4000, 16, 4
    mask = numpy(PatchMasking("random", mask_ratio=0.75, seed=3)(numbered_patches(batch, num_patches))["mask"])
    kept_mask = (~mask).astype(np.int64)
    low, high = two_sided(batch, kept / num_patches)
    per_patch = kept_mask.sum(axis=0)
    assert ((per_patch >= low) & (per_patch <= high)).all(), per_patch
    pairs = kept_mask.T @ kept_mask
    p_pair = kept * (kept - 1) / (num_patches * (num_patches - 1))
    low, high = two_sided(batch, p_pair, alpha=1e-8)
    off_diagonal = pairs[~np.eye(num_patches, dtype=bool)]
    assert ((off_diagonal >= low) & (off_diagonal <= high)).all(), pairs
    # Drawn afresh per image: neighbours coincide as often as two independent
    # subsets of the C(16, 4) = 1820 would.
    same_as_next = int((mask[1:] == mask[:-1]).all(axis=1).sum())
    assert same_as_next <= binomial_upper_critical(batch - 1, 1 / math.comb(16, 4))


def test_random_not_training_keeps_everything_in_order():
    patches = numbered_patches(3, 16)
    out = PatchMasking("random")(patches, training=False)
    np.testing.assert_array_equal(numpy(out["kept"]), patches)
    assert not numpy(out["mask"]).any()
    np.testing.assert_array_equal(numpy(out["ids_restore"]), np.tile(np.arange(16), (3, 1)))
    np.testing.assert_array_equal(numpy(restore_patches(out["kept"], out["ids_restore"])), patches)


# "block" (BEiT)


def rectangle(mask_2d):
    """`(top, left, h, w)` of a mask that is one filled rectangle, else None."""
    rows, cols = np.nonzero(mask_2d)
    top, left = rows.min(), cols.min()
    h, w = rows.max() - top + 1, cols.max() - left + 1
    return (top, left, h, w) if h * w == mask_2d.sum() else None


def test_block_budget_is_never_exceeded_and_nearly_met():
    """BEiT's setting: 14 x 14 patches, 75 masked, blocks of 16 or more."""
    layer = PatchMasking("block", num_masked=75, min_block_patches=16, mask_token=None, seed=4)
    counts = numpy(layer(numbered_patches(1000, 196))["mask"]).sum(axis=1)
    assert counts.max() <= 75
    assert counts.mean() >= 0.85 * 75, counts.mean()
    assert counts.min() >= 16


def test_blocks_are_placed_uniformly():
    """Budget 16, aspect >= 0.3: the only block is 4 x 4; its corner is uniform
    over the 11 x 11 places it fits."""
    layer = PatchMasking("block", num_masked=16, min_block_patches=16, mask_token=None, seed=7)
    masks = numpy(layer(numbered_patches(2000, 196))["mask"]).reshape(2000, 14, 14)
    corners = np.zeros((11, 11), np.int64)
    for mask in masks[masks.reshape(2000, -1).any(axis=1)]:
        top, left, h, w = rectangle(mask)
        assert (h, w) == (4, 4)
        corners[top, left] += 1
    placed = corners.sum()
    assert placed >= 1500  # a 4 x 4 candidate in 20 tries for 92 % of images
    statistic = chi_square(corners.ravel(), np.full(121, placed / 121))
    assert statistic < chi2_critical(120), statistic


# "simmim"


def test_simmim_masks_exact_cells_uniformly():
    # 12 x 12 patches of 4 px, cells of 16 px: 3 x 3 cells of 4 x 4 patches.
    layer = PatchMasking("simmim", mask_ratio=0.6, mask_patch_size=16, model_patch_size=4, seed=8)
    masks = numpy(layer(numbered_patches(2000, 144))["mask"]).reshape(2000, 3, 4, 3, 4)
    cells = masks[:, :, 0, :, 0]  # each cell's first patch
    # Every patch of a cell follows its cell.
    np.testing.assert_array_equal(masks, np.broadcast_to(cells[:, :, None, :, None], masks.shape))
    np.testing.assert_array_equal(cells.reshape(2000, 9).sum(axis=1), 5)  # round(0.6 * 9)
    low, high = two_sided(2000, 5 / 9)
    per_cell = cells.reshape(2000, 9).sum(axis=0)
    assert ((per_cell >= low) & (per_cell <= high)).all(), per_cell


def test_simmim_rounds_the_exact_product_half_to_even():
    # 0.35 * 10 is 3.4999999999999996 in floats; exactly 3.5, which rounds to 4.
    assert patch_selection.masked_cell_count(10, 0.35) == 4
    assert patch_selection.masked_cell_count(4, 0.625) == 2
    layer = PatchMasking("simmim", mask_ratio=0.35, mask_patch_size=8, model_patch_size=4, grid=(4, 10), seed=1)
    np.testing.assert_array_equal(numpy(layer(numbered_patches(8, 40))["mask"]).sum(axis=1), 16)


# The mask token, training, seeds.


@pytest.mark.parametrize("mode", ["block", "simmim"])
def test_the_learned_token_replaces_exactly_the_masked_patches(mode):
    patches = numbered_patches(16, 64, depth=5)
    layer = PatchMasking(mode, min_block_patches=4, mask_patch_size=8, model_patch_size=4, seed=9)
    out = layer(patches)
    mask = numpy(out["mask"])
    assert mask.any() and not mask.all()
    token = numpy(layer.mask_embedding)
    assert token.shape == (5,) and [w.name for w in layer.trainable_weights] == ["mask_embedding"]
    np.testing.assert_array_equal(numpy(out["patches"]), np.where(mask[..., None], token, patches))
    untouched = PatchMasking(mode, min_block_patches=4, mask_patch_size=8, model_patch_size=4, mask_token=None)
    assert not untouched.trainable_weights
    np.testing.assert_array_equal(numpy(untouched(patches)["patches"]), patches)
    quiet = layer(patches, training=False)
    np.testing.assert_array_equal(numpy(quiet["patches"]), patches)
    assert not numpy(quiet["mask"]).any()


@pytest.mark.parametrize("mode", ["random", "block", "simmim"])
def test_seeds(mode):
    patches = numbered_patches(32, 64)
    options = dict(min_block_patches=4, mask_patch_size=8, model_patch_size=4)
    layer = PatchMasking(mode, **options)
    first = numpy(layer(patches, seed=[3, 4])["mask"])
    np.testing.assert_array_equal(first, numpy(layer(patches, seed=tf.constant([3, 4]))["mask"]))
    assert not np.array_equal(first, numpy(layer(patches, seed=[3, 5])["mask"]))
    assert not np.array_equal(numpy(layer(patches)["mask"]), numpy(layer(patches)["mask"]))
    seeded = [PatchMasking(mode, seed=11, **options) for _ in range(2)]
    runs = [[numpy(s(patches)["mask"]) for _ in range(2)] for s in seeded]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0][0], runs[0][1])


def test_in_tf_data_fresh_masks_every_epoch():
    keras.utils.set_random_seed(1)
    patches = numbered_patches(8, 16)
    layer = PatchMasking("random")
    ds = tf.data.Dataset.from_tensor_slices(patches).batch(8).map(layer)
    epochs = [next(iter(ds)) for _ in range(2)]
    for out in epochs:
        assert tuple(out["kept"].shape) == (8, 4, 3)
        np.testing.assert_array_equal(out["mask"].numpy().sum(axis=1), 12)
    assert not np.array_equal(epochs[0]["mask"].numpy(), epochs[1]["mask"].numpy())
    # A dataset with an unknown batch size.
    block = PatchMasking("block", min_block_patches=4, seed=2)
    block.build((None, 16, 3))
    out = next(iter(tf.data.Dataset.from_tensor_slices(patches).batch(3).map(block)))
    mask = out["mask"].numpy()
    np.testing.assert_array_equal(
        out["patches"].numpy(), np.where(mask[..., None], numpy(block.mask_embedding), patches[:3])
    )


def test_under_xla_the_counts_and_budget_hold():
    patches = tf.constant(numbered_patches(64, 196))
    layers = {
        "random": PatchMasking("random", mask_ratio=0.75),
        "block": PatchMasking("block", num_masked=75, mask_token=None),
        "simmim": PatchMasking("simmim", mask_ratio=0.5, mask_patch_size=8, model_patch_size=4),
    }
    for mode, layer in layers.items():
        out = tf.function(lambda p, layer=layer: layer(p, training=True), jit_compile=True)(patches)
        counts = out["mask"].numpy().sum(axis=1)
        if mode == "random":
            assert tuple(out["kept"].shape) == (64, 49, 3) and (counts == 147).all()
        elif mode == "block":
            assert counts.max() <= 75 and counts.mean() >= 0.85 * 75
        else:
            assert (counts == 96).all()  # 7 x 7 cells: round(24.5) = 24 cells of 4 patches


# Keras: config, specs, saving, export.


def test_config_round_trip():
    layer = PatchMasking("block", num_masked=40, min_block_patches=9, block_aspect=0.5, grid=(7, 14),
                         mask_token=None, seed=5)
    clone = PatchMasking.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    patches = numbered_patches(4, 98)
    np.testing.assert_array_equal(numpy(layer(patches, seed=[1, 1])["mask"]), numpy(clone(patches, seed=[1, 1])["mask"]))


@pytest.mark.parametrize("mode", ["random", "block", "simmim"])
@pytest.mark.parametrize("training", [True, False, None])
def test_output_spec_matches_the_outputs(mode, training):
    layer = PatchMasking(mode, min_block_patches=4, mask_patch_size=8, model_patch_size=4)
    spec = layer.compute_output_spec(keras.KerasTensor((2, 16, 3)), training=training)
    out = layer(numbered_patches(2, 16), training=training is not False)
    assert sorted(spec) == sorted(out)
    for key in out:
        expected = tuple(out[key].shape)
        if mode == "random" and key == "kept" and training is None:
            expected = (2, None, 3)  # K in training, N otherwise
        assert tuple(spec[key].shape) == expected, key
        assert spec[key].dtype == keras.backend.standardize_dtype(out[key].dtype)
    if training is None:
        shapes = layer.compute_output_shape((2, 16, 3))
        assert {k: tuple(v) for k, v in shapes.items()} == {k: tuple(v.shape) for k, v in spec.items()}


def test_keras_file_round_trip_and_export(tmp_path):
    patches = numbered_patches(4, 16)
    inputs = keras.Input((16, 3))
    masked = PatchMasking("simmim", mask_patch_size=8, model_patch_size=4, seed=1)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(masked["patches"]))
    model.compile("adam", "mse")
    model.fit(patches, np.zeros((4, 16, 2)), verbose=0)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(numpy(restored.layers[1].mask_embedding), numpy(model.layers[1].mask_embedding))
    np.testing.assert_allclose(restored.predict(patches, verbose=0), model.predict(patches, verbose=0))
    # Exported, plain TensorFlow serves it unmasked.
    export_path = os.path.join(tmp_path, "exported")
    model.export(export_path, verbose=False)
    loaded = tf.saved_model.load(export_path)  # kept: its variables live with it
    served = loaded.serve(tf.constant(patches)).numpy()
    np.testing.assert_allclose(served, model.predict(patches, verbose=0), rtol=1e-6)


# Errors.


@pytest.mark.parametrize(
    "kwargs, named",
    [
        (dict(mask_ratio=0.0), "mask_ratio"),
        (dict(mask_ratio=1.0), "mask_ratio"),
        (dict(mask_ratio=1.5), "mask_ratio"),
        (dict(mode="grid"), "mode"),
        (dict(block_aspect=0.0), "block_aspect"),
        (dict(mask_patch_size=30, model_patch_size=4), "mask_patch_size"),
        (dict(grid=(3,)), "grid"),
        (dict(mask_token="zeros"), "mask_token"),
        (dict(mode="block", grid=(3, 3), min_block_patches=10), "min_block_patches"),
        (dict(mode="block", grid=(14, 14), num_masked=8), "num_masked"),
        (dict(mode="block", grid=(1, 20), min_block_patches=2, block_aspect=0.6), "block_aspect"),
        (dict(mode="simmim", grid=(6, 6), mask_patch_size=16, model_patch_size=4), "mask_patch_size"),
    ],
)
def test_bad_arguments_are_named(kwargs, named):
    with pytest.raises(ValueError, match=named):
        PatchMasking(**kwargs)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="grid"):
        PatchMasking("block", grid=(4, 5), min_block_patches=4)(numbered_patches(2, 16))
    with pytest.raises(ValueError, match="grid"):
        PatchMasking("simmim", mask_patch_size=8)(numbered_patches(2, 15))
    with pytest.raises(ValueError, match="rank 3"):
        PatchMasking("random")(np.zeros((16, 3), "float32"))
    with pytest.raises(ValueError, match="rank 2"):
        restore_patches(numbered_patches(2, 4), np.zeros((2, 4, 1), "int32"))
    # A grid as a NumPy array, as the other arguments take NumPy values.
    grid = np.array([2, 8])
    assert PatchMasking("block", grid=grid, num_masked=6, min_block_patches=2).get_config()["grid"] == [2, 8]
    # Any N in "random" mode.
    assert tuple(PatchMasking("random", mask_ratio=0.5)(numbered_patches(2, 15))["kept"].shape) == (2, 7, 3)
    assert math.isqrt(15) ** 2 != 15


def test_first_calls_from_many_threads_build_the_layer_once(monkeypatch):
    # A thread-pool map (grain's MapDataset) makes a new layer's first calls at once.
    def slow_add_weight(self, *args, **kwargs):
        time.sleep(0.05)  # every thread reaches `build` before the first is done
        return keras.layers.Layer.add_weight(self, *args, **kwargs)

    monkeypatch.setattr(PatchMasking, "add_weight", slow_add_weight)
    layer = PatchMasking("block", num_masked=6, min_block_patches=2, grid=(3, 4), seed=1)
    call = lambda _: numpy(layer(numbered_patches(2, 12))["mask"])
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        masks = list(pool.map(call, range(4)))
    assert len(layer.weights) == 1 and all(mask.any() for mask in masks)
