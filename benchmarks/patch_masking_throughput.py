"""Images/s of MAE random patch masking: PatchMasking vs NumPy argsort per batch.

The peer is MAE's reference recipe in NumPy, run per batch: uniform noise
`[B, N]`, `argsort` to shuffle, keep the first `K`, `ids_restore` the
argsort of the shuffle, the kept patches gathered with `take_along_axis`,
the mask put back in order. Every candidate masks the same batch (by
default 128 images of 196 patches of 768 floats: ViT-B/16 at 224 px,
MAE's 75 %) in one process, in interleaved rounds (the median is taken):

- NumPy on the host, a plain loop over batches;
- NumPy inside `tf.data` (`tf.numpy_function`, how it would join a
  pipeline), `PatchMasking("random")` as `ds.map(layer)`, and a `map(x +
  1)` ceiling, each `map(num_parallel_calls=AUTOTUNE).prefetch`;
- the layer jitted under the active Keras backend (TensorFlow:
  `tf.function(jit_compile=True)`; JAX: `jax.jit`; PyTorch: eager), on
  tensors already on the device.

    .venv/bin/python benchmarks/patch_masking_throughput.py [--batches 40] [--rounds 3]

`--smoke` runs each candidate once on 4 images of 16 patches, in seconds
(the test suite's check that the script still runs); its figures mean
nothing.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dynmask import PatchMasking  # noqa: E402
from keras_dynmask.kernels import patch_selection  # noqa: E402

MASK_RATIO = 0.75
PEER = "peer: NumPy argsort per batch, host loop"


def numpy_mae_masking(patches, rng, num_kept):
    """MAE's reference random masking of one batch, in NumPy."""
    batch, num_patches, _ = patches.shape
    noise = rng.random((batch, num_patches), dtype=np.float32)
    ids_shuffle = np.argsort(noise, axis=1)
    ids_restore = np.argsort(ids_shuffle, axis=1)
    kept = np.take_along_axis(patches, ids_shuffle[:, :num_kept, None], axis=1)
    mask = np.ones((batch, num_patches), bool)
    mask[:, :num_kept] = False
    mask = np.take_along_axis(mask, ids_restore, axis=1)
    return kept, mask, ids_restore.astype(np.int32)


def host_loop(patches, batches, num_kept):
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(batches):
        numpy_mae_masking(patches, rng, num_kept)
    return time.perf_counter() - start


def through_tf_data(fn, patches, batches):
    ds = (
        tf.data.Dataset.from_tensors(patches)
        .repeat(batches + 2)
        .map(fn, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    iterator = iter(ds)
    next(iterator), next(iterator)  # warm up: tracing, thread pools
    start = time.perf_counter()
    count = sum(1 for _ in iterator)
    assert count == batches
    return time.perf_counter() - start


def numpy_in_tf_data(num_kept):
    rng = np.random.default_rng(0)

    def mask(patches):
        return numpy_mae_masking(patches, rng, num_kept)

    def fn(patches):
        kept, dropped, ids_restore = tf.numpy_function(
            mask, [patches], [patches.dtype, tf.bool, tf.int32], stateful=True
        )
        return {"kept": kept, "mask": dropped, "ids_restore": ids_restore}

    return fn


def jitted_layer(layer):
    """`(call, synchronise)` for the layer, jitted under the active backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        call = tf.function(lambda x: layer(x, training=True), jit_compile=True)
        return call, lambda out: out["mask"].numpy()
    if backend == "jax":
        import jax

        key = [0]

        def call_with_seed(x, seed):
            return layer(x, training=True, seed=seed)

        jitted = jax.jit(call_with_seed)

        def call(x):
            key[0] += 1
            return jitted(x, jax.numpy.array([key[0], 7], "int32"))

        return call, jax.block_until_ready
    return (lambda x: layer(x, training=True)), lambda out: keras.ops.convert_to_numpy(out["mask"])


def jitted_seconds(call, synchronise, patches, batches):
    synchronise(call(patches))  # compile
    start = time.perf_counter()
    for _ in range(batches):
        out = call(patches)
    synchronise(out)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="images a batch")
    parser.add_argument("--patches", type=int, default=196, help="patches an image")
    parser.add_argument("--depth", type=int, default=768, help="floats a patch")
    parser.add_argument("--batches", type=int, default=40, help="batches per timing")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.patches, args.depth, args.batches, args.rounds = 4, 16, 8, 2, 1
    num_kept = patch_selection.kept_count(args.patches, MASK_RATIO)
    patches = np.random.default_rng(0).random((args.batch, args.patches, args.depth), dtype=np.float32)
    tf_patches = tf.constant(patches)
    layer = PatchMasking("random", mask_ratio=MASK_RATIO)
    call, synchronise = jitted_layer(PatchMasking("random", mask_ratio=MASK_RATIO))
    device_patches = keras.ops.convert_to_tensor(patches)
    backend = keras.backend.backend()
    jit_name = {"tensorflow": "tf.function(jit_compile=True)", "jax": "jax.jit"}.get(backend, "eager")
    runs = {
        PEER: lambda n: host_loop(patches, n, num_kept),
        "peer: NumPy in tf.data (tf.numpy_function)": lambda n: through_tf_data(
            numpy_in_tf_data(num_kept), tf_patches, n
        ),
        "ours: PatchMasking in tf.data": lambda n: through_tf_data(layer, tf_patches, n),
        f"ours: PatchMasking, {backend} {jit_name}": lambda n: jitted_seconds(
            call, synchronise, device_patches, n
        ),
        "ceiling: tf.data map(x + 1)": lambda n: through_tf_data(lambda x: x + 1, tf_patches, n),
    }
    results = {name: [] for name in runs}
    total, done = args.rounds * len(runs), 0
    for round_index in range(args.rounds):
        for name, run in runs.items():
            seconds = run(args.batches)
            results[name].append(args.batches * args.batch / seconds)
            done += 1
            print(f"[{done}/{total}] round {round_index + 1}: {name}: "
                  f"{results[name][-1]:.0f} images/s", file=sys.stderr, flush=True)
    median = {name: statistics.median(values) for name, values in results.items()}
    peer = median[PEER]
    print(f"\n{args.batch} images x {args.patches} patches x {args.depth} float32, keep {num_kept} "
          f"(mask ratio {MASK_RATIO}), Keras backend {backend}, tf {tf.__version__}, "
          f"NumPy {np.__version__}, {os.cpu_count()} CPU cores, median of {args.rounds} rounds\n")
    print("| masking | images/s | x NumPy per batch | range over rounds |")
    print("|---|---:|---:|---:|")
    for name, value in median.items():
        ratios = [v / p for v, p in zip(results[name], results[PEER])]
        print(f"| {name} | {value:.0f} | {value / peer:.2f} | {min(ratios):.2f}-{max(ratios):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
