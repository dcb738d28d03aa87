"""What UL2's `DenoiserMixture` costs beside one `SpanCorruption`, per backend.

Both layers corrupt the same batch of padded ids with fixed lengths (as
inside a model), jitted the way the active Keras backend runs a training
step: `jax.jit` on JAX, eager on PyTorch, `tf.function` on TensorFlow.
Calls alternate between the two layers, each with a new call-time seed;
the median call is printed as a Markdown table. On JAX and PyTorch the
mixture draws each row's denoiser and feeds its settings to the one span
kernel as per-row tensors, so it should cost about what one
`SpanCorruption` does, not the sum of its seven denoisers.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/mixture_cost.py     # seconds
    KERAS_BACKEND=torch .venv/bin/python benchmarks/mixture_cost.py
    .venv/bin/python benchmarks/mixture_cost.py --batch 64 --length 512 --calls 15
    .venv/bin/python benchmarks/mixture_cost.py --smoke               # checks it runs
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dynmask import DenoiserMixture, SpanCorruption  # noqa: E402

VOCAB, EOS_ID, PAD_ID = 32128, 1, 0


def padded_ids(batch, length, seed=0):
    """int32 `[batch, length]` ids, each row padded after a random length."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, VOCAB - 200, (batch, length)).astype("int32")
    lengths = rng.integers(length // 2, length + 1, batch)
    ids[np.arange(length)[None, :] >= lengths[:, None]] = PAD_ID
    return ids


def jitted(layer):
    """`fn(ids, seed)`, compiled as the active backend runs a step."""
    call = lambda ids, seed: layer(ids, seed=seed, training=True)  # noqa: E731
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(call)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(call)
    return call


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--calls", type=int, default=15, help="timed calls per layer")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, two calls")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.length, args.calls = 4, 32, 2
    lengths = dict(inputs_length=args.length + 2, targets_length=args.length + 2)
    layers = {
        "SpanCorruption (density 0.15, mean span 3)": SpanCorruption(
            vocabulary_size=VOCAB, eos_id=EOS_ID, **lengths
        ),
        "DenoiserMixture (UL2's 7 denoisers)": DenoiserMixture(
            vocabulary_size=VOCAB, eos_id=EOS_ID, **lengths
        ),
    }
    ids = keras.ops.convert_to_tensor(padded_ids(args.batch, args.length))
    fns = {name: jitted(layer) for name, layer in layers.items()}

    def run(fn, key):
        seed = keras.ops.convert_to_tensor(np.array([key, 1], "int32"))
        keras.ops.convert_to_numpy(fn(ids, seed)["inputs"])  # waits for the result

    for fn in fns.values():
        run(fn, 0)  # compiles
    seconds = {name: [] for name in fns}
    for call in range(args.calls):
        for name, fn in fns.items():
            start = time.perf_counter()
            run(fn, call + 1)
            seconds[name].append(time.perf_counter() - start)
    print(
        f"\n{keras.backend.backend()}: {args.batch} x {args.length} ids, "
        f"median of {args.calls} interleaved calls\n"
    )
    print("| layer | ms a batch | M tokens/s |")
    print("|---|---:|---:|")
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"| {name} | {median * 1e3:.1f} | {args.batch * args.length / median / 1e6:.2f} |")


if __name__ == "__main__":
    main()
