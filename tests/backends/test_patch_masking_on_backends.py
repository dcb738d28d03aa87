"""`PatchMasking` and `restore_patches` on the active Keras backend.

Eager calls on backend tensors give backend tensors with exact counts; a
functional MAE-like model (encoder on the kept patches, decoder restoring
the order with mask tokens) trains with and without jit, predicts without
masking and survives `.keras` save/load; call-time seeds are pure.
"""

import os

import keras
import numpy as np
import pytest

from keras_dynmask import PatchMasking
from keras_dynmask import restore_patches

BACKEND = keras.backend.backend()
PATCHES = np.random.default_rng(0).random((16, 16, 4), dtype="float32")
PATCHES[:, :, 0] = np.arange(16)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def test_eager_calls_give_backend_tensors_with_exact_counts():
    patches = keras.ops.convert_to_tensor(PATCHES)
    out = PatchMasking("random", mask_ratio=0.75)(patches)
    assert type(out["kept"]) is type(patches)
    assert tuple(out["kept"].shape) == (16, 4, 4)
    mask = numpy(out["mask"])
    np.testing.assert_array_equal(mask.sum(axis=1), 12)
    kept = numpy(out["kept"])
    for b in range(16):
        np.testing.assert_array_equal(np.sort(kept[b, :, 0]), np.flatnonzero(~mask[b]))
    restored = restore_patches(out["kept"], out["ids_restore"], mask_token=keras.ops.zeros((4,)))
    np.testing.assert_array_equal(numpy(restored), np.where(mask[..., None], 0.0, PATCHES))
    simmim = PatchMasking("simmim", mask_ratio=0.5, mask_patch_size=8, model_patch_size=4)
    masked = simmim(patches)
    mask = numpy(masked["mask"])
    np.testing.assert_array_equal(mask.sum(axis=1), 8)
    np.testing.assert_array_equal(
        numpy(masked["patches"]), np.where(mask[..., None], numpy(simmim.mask_embedding), PATCHES)
    )
    block = numpy(PatchMasking("block", min_block_patches=4, mask_token=None)(patches)["mask"])
    assert block.sum(axis=1).max() <= 6  # round(0.4 * 16)
    assert not numpy(PatchMasking("block", min_block_patches=4)(patches, training=False)["mask"]).any()


def test_call_seed_is_a_pure_function():
    patches = keras.ops.convert_to_tensor(PATCHES)
    for mode in ("random", "block", "simmim"):
        layer = PatchMasking(mode, min_block_patches=4, mask_patch_size=8, model_patch_size=4)
        first = numpy(layer(patches, seed=[5, 6])["mask"])
        np.testing.assert_array_equal(first, numpy(layer(patches, seed=[5, 6])["mask"]))
        assert not np.array_equal(first, numpy(layer(patches, seed=[5, 7])["mask"]))


class MaskTokenDecoder(keras.layers.Layer):
    """Appends a learned mask token for every dropped patch and restores
    the patches' order (MAE's decoder input)."""

    def build(self, kept_shape, ids_restore_shape):
        self.mask_token = self.add_weight(shape=(kept_shape[-1],), initializer="zeros")

    def call(self, kept, ids_restore):
        return restore_patches(kept, ids_restore, mask_token=self.mask_token)

    def compute_output_shape(self, kept_shape, ids_restore_shape):
        return tuple(ids_restore_shape) + (kept_shape[-1],)


def mae_like_model():
    patches = keras.Input((16, 4))
    masked = PatchMasking("random", mask_ratio=0.75, seed=1)(patches)
    encoded = keras.layers.Dense(8, activation="relu")(masked["kept"])
    decoded = MaskTokenDecoder()(encoded, masked["ids_restore"])
    return keras.Model(patches, keras.layers.Dense(4)(decoded))


@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_a_functional_mae_trains_predicts_and_saves(tmp_path, jit_compile):
    if BACKEND == "torch" and jit_compile is True:
        pytest.skip("torch.compile of a fit takes a minute; the eager and 'auto' fits cover PyTorch")
    keras.utils.set_random_seed(2)
    model = mae_like_model()
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    # Zero learning rate, same batch: only fresh masks change the loss.
    losses = [float(model.train_on_batch(PATCHES, PATCHES)) for _ in range(4)]
    assert len(set(losses)) >= 3, losses
    # predict never masks: the decoder sees every patch in order.
    predicted = model.predict(PATCHES, verbose=0)
    hidden = model.layers[2](keras.ops.convert_to_tensor(PATCHES))
    np.testing.assert_allclose(predicted, numpy(model.layers[-1](hidden)), rtol=1e-5, atol=1e-6)
    path = os.path.join(tmp_path, "mae.keras")
    model.save(path)
    restored = keras.saving.load_model(path, custom_objects={"MaskTokenDecoder": MaskTokenDecoder})
    assert restored.layers[1].get_config() == model.layers[1].get_config()
    np.testing.assert_allclose(restored.predict(PATCHES, verbose=0), predicted, rtol=1e-5, atol=1e-6)


def test_block_mask_token_in_a_model_is_trained_and_saved(tmp_path):
    patches = keras.Input((16, 4))
    masked = PatchMasking("block", min_block_patches=4, seed=3)(patches)
    model = keras.Model(patches, keras.layers.Dense(4)(masked["patches"]))
    model.compile(keras.optimizers.SGD(0.5), "mse")
    before = numpy(model.layers[1].mask_embedding).copy()
    model.fit(PATCHES, PATCHES, epochs=2, verbose=0)
    assert not np.array_equal(before, numpy(model.layers[1].mask_embedding))
    path = os.path.join(tmp_path, "block.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        numpy(restored.layers[1].mask_embedding), numpy(model.layers[1].mask_embedding)
    )


def test_in_tf_data_whatever_the_backend():
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(PATCHES).batch(8).map(PatchMasking("random"))
    out = next(iter(ds))
    assert isinstance(out["kept"], tf.Tensor) and tuple(out["kept"].shape) == (8, 4, 4)
    np.testing.assert_array_equal(out["mask"].numpy().sum(axis=1), 12)


def test_in_a_grain_pipeline_with_a_new_layer():
    # grain maps on a thread pool: the new layer's first calls come at once.
    grain = pytest.importorskip("grain")
    layer = PatchMasking("block", num_masked=6, min_block_patches=4, grid=(4, 4))
    masks = [numpy(out["mask"]) for out in grain.MapDataset.source(list(PATCHES[:8, None])).map(layer)]
    assert len(masks) == 8 and len(layer.weights) == 1
    assert all(mask.shape == (1, 16) and mask.sum() <= 6 for mask in masks)
    assert sum(mask.sum() for mask in masks) >= 4
