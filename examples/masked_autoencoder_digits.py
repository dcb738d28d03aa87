"""A masked autoencoder (MAE) on scikit-learn's bundled 8x8 digits.

Each digit is cut into 16 patches of 2x2 pixels. Inside the model,
`PatchMasking("random", mask_ratio=0.75)` keeps 4 random patches per image
(fresh at every training step), a one-block Transformer encoder sees only those,
and a decoder puts them back in order with a learned mask token for each
dropped patch (`restore_patches`) and reconstructs every patch's pixels
with a small MLP.
The loss counts the masked patches only (the visible ones are copied
through, so they add neither error nor gradient), as in MAE. The script
prints the masked-patch error on held-out digits before and after training
beside the error of predicting each pixel's training mean, and saves a
picture of inputs, masks and reconstructions.

Run: `python examples/masked_autoencoder_digits.py [--quick] [--output PATH]`
(default output `results/masked_autoencoder_digits.png`). The digits ship
with scikit-learn (`sklearn.datasets.load_digits`): nothing is downloaded.
Uses Keras only, so it runs under `KERAS_BACKEND=tensorflow`, `jax` or
`torch` (all three tried, 2026-12-07). `--quick` (6 epochs, what CI runs)
took 7 s of training under TensorFlow on a shared 2-core CPU, about 30 s
under JAX and 80 s under PyTorch (eager); the held-out masked-patch error
ends near 0.055 (0.045 after the default 40 epochs), against 0.074 for the
best guess that ignores the visible patches (each pixel's mean).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dynmask import PatchMasking  # noqa: E402
from keras_dynmask import restore_patches  # noqa: E402

REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(REPOSITORY_ROOT, "results", "masked_autoencoder_digits.png")
IMAGE_SIDE = 8
PATCH_SIDE = 2
GRID_SIDE = IMAGE_SIDE // PATCH_SIDE  # 4 x 4 patches
NUM_PATCHES = GRID_SIDE * GRID_SIDE
PATCH_PIXELS = PATCH_SIDE * PATCH_SIDE


def load_digits_patches():
    """`(train, test)` patches `[n, 16, 4]` in [0, 1], a fixed split."""
    from sklearn.datasets import load_digits

    images = load_digits().images.astype("float32") / 16.0
    order = np.random.default_rng(0).permutation(len(images))
    patches = patchify(images[order])
    split = int(0.8 * len(patches))
    return patches[:split], patches[split:]


def patchify(images):
    """`[n, 8, 8]` images to `[n, 16, 4]` row-major 2x2 patches."""
    n = images.shape[0]
    grid = images.reshape(n, GRID_SIDE, PATCH_SIDE, GRID_SIDE, PATCH_SIDE)
    return grid.transpose(0, 1, 3, 2, 4).reshape(n, NUM_PATCHES, PATCH_PIXELS)


def unpatchify(patches):
    """The inverse of `patchify`."""
    n = patches.shape[0]
    grid = patches.reshape(n, GRID_SIDE, GRID_SIDE, PATCH_SIDE, PATCH_SIDE)
    return grid.transpose(0, 1, 3, 2, 4).reshape(n, IMAGE_SIDE, IMAGE_SIDE)


class AddPositions(keras.layers.Layer):
    """Adds a learned embedding per patch position."""

    def build(self, input_shape):
        self.positions = self.add_weight(
            shape=tuple(input_shape[1:]),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="positions",
        )

    def call(self, x):
        return x + self.positions


class MaskTokenDecoderInput(keras.layers.Layer):
    """MAE's decoder input: the encoded kept patches followed by a learned
    mask token for each dropped one, put back in the original order."""

    def build(self, kept_shape, ids_restore_shape):
        self.mask_token = self.add_weight(
            shape=(kept_shape[-1],),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="mask_token",
        )

    def call(self, kept, ids_restore):
        return restore_patches(kept, ids_restore, mask_token=self.mask_token)

    def compute_output_shape(self, kept_shape, ids_restore_shape):
        return tuple(ids_restore_shape) + (kept_shape[-1],)


def transformer_block(x, width, heads=4):
    attended = keras.layers.LayerNormalization()(x)
    attended = keras.layers.MultiHeadAttention(heads, width // heads)(attended, attended)
    x = x + attended
    hidden = keras.layers.LayerNormalization()(x)
    hidden = keras.layers.Dense(2 * width, activation="gelu")(hidden)
    return x + keras.layers.Dense(width)(hidden)


def build_models(mask_ratio=0.75, width=64, decoder_width=32, seed=0):
    """`(trainer, viewer)`: two views of one MAE.

    The encoder is a Transformer block over the kept patches only; the
    decoder restores the original order with a learned mask token at every
    dropped patch and reads the whole sequence with a small MLP (on 16
    patches an MLP learns in seconds what attention takes minutes to).
    `trainer` outputs every patch's pixels with the visible patches copied
    from the input, so a plain MSE against the input counts the masked
    patches only; `viewer` outputs the raw reconstruction and the mask.
    """
    patches = keras.Input((NUM_PATCHES, PATCH_PIXELS), name="patches")
    tokens = AddPositions()(keras.layers.Dense(width)(patches))
    masked = PatchMasking("random", mask_ratio=mask_ratio, seed=seed)(tokens)
    encoded = keras.layers.LayerNormalization()(transformer_block(masked["kept"], width))
    decoded = keras.layers.Dense(decoder_width)(encoded)
    decoded = AddPositions()(MaskTokenDecoderInput()(decoded, masked["ids_restore"]))
    hidden = keras.layers.Reshape((NUM_PATCHES * decoder_width,))(decoded)
    hidden = keras.layers.Dense(256, activation="gelu")(hidden)
    pixels = keras.layers.Dense(NUM_PATCHES * PATCH_PIXELS)(hidden)
    reconstruction = keras.layers.Reshape((NUM_PATCHES, PATCH_PIXELS))(pixels)
    dropped = keras.ops.expand_dims(masked["mask"], -1)
    trainer = keras.Model(patches, keras.ops.where(dropped, reconstruction, patches))
    viewer = keras.Model(patches, {"reconstruction": reconstruction, "mask": masked["mask"]})
    return trainer, viewer


def masked_patch_error(viewer, patches, batch_size=256):
    """Mean squared error over the masked patches' pixels, masking as in
    training (`training=True`)."""
    total, count = 0.0, 0
    for start in range(0, len(patches), batch_size):
        batch = patches[start : start + batch_size]
        out = viewer(keras.ops.convert_to_tensor(batch), training=True)
        mask = np.asarray(keras.ops.convert_to_numpy(out["mask"]))
        error = (np.asarray(keras.ops.convert_to_numpy(out["reconstruction"])) - batch) ** 2
        total += float(error[mask].sum())
        count += int(mask.sum()) * PATCH_PIXELS
    return total / count


def save_picture(viewer, patches, path, mask_ratio, count=8):
    """Inputs, masked inputs and reconstructions (visible patches pasted
    back) of `count` held-out digits, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = patches[:count]
    out = viewer(keras.ops.convert_to_tensor(batch), training=True)
    mask = np.asarray(keras.ops.convert_to_numpy(out["mask"]))[..., None]
    reconstruction = np.asarray(keras.ops.convert_to_numpy(out["reconstruction"]))
    rows = {
        "input": unpatchify(batch),
        "mask (grey: dropped)": unpatchify(np.where(mask, 0.5, batch)),
        "reconstruction": unpatchify(np.clip(np.where(mask, reconstruction, batch), 0, 1)),
    }
    figure, axes = plt.subplots(len(rows), count, figsize=(1.2 * count, 1.3 * len(rows)))
    for row, (title, images) in enumerate(rows.items()):
        for column in range(count):
            axis = axes[row, column]
            axis.imshow(images[column], cmap="gray_r", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_ylabel(title, fontsize=7)
    figure.suptitle(f"MAE on 8x8 digits: 2x2 patches, {mask_ratio:.0%} masked (PatchMasking)", fontsize=9)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    """Trains the MAE, prints its masked-patch error and saves the picture;
    returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs (CI)")
    parser.add_argument("--epochs", type=int, default=None, help="default 40, 6 with --quick")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="the picture's path (PNG)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    epochs = args.epochs if args.epochs is not None else (6 if args.quick else 40)
    if epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be >= 1")
    keras.utils.set_random_seed(args.seed)
    train, test = load_digits_patches()
    trainer, viewer = build_models(args.mask_ratio, seed=args.seed)
    trainer.compile(keras.optimizers.Adam(2e-3), "mse")
    baseline = float(((test - train.mean(axis=0)) ** 2).mean())
    before = masked_patch_error(viewer, test)
    print(f"backend {keras.backend.backend()}: {len(train)} training and {len(test)} held-out digits, "
          f"{NUM_PATCHES} patches of {PATCH_SIDE}x{PATCH_SIDE}, mask ratio {args.mask_ratio}")
    print(f"masked-patch MSE on held-out digits before training: {before:.4f}")
    history = trainer.fit(train, train, epochs=epochs, batch_size=args.batch_size, verbose=0)
    for epoch, loss in enumerate(history.history["loss"], 1):
        print(f"epoch {epoch:3d}: training loss {loss:.4f}")
    after = masked_patch_error(viewer, test)
    print(f"masked-patch MSE on held-out digits after training: {after:.4f} "
          f"(predicting each pixel's training mean: {baseline:.4f})")
    save_picture(viewer, test, args.output, args.mask_ratio)
    print(f"picture of inputs, masks and reconstructions: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
