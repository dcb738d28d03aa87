"""The one kernel form against the TensorFlow fast path, in `tf.data`.

`DynamicMLMMasking` computes with TensorFlow-only kernels in `tf.data` and
under the TensorFlow backend, and with the kernels of
`keras_dynmask.kernels.token_masking` (written once against the op set)
inside JAX and PyTorch models. This runs both in `tf.data` on CPU, the
op-set form bound to TensorFlow, beside keras-hub's
`MaskedLMMaskGenerator` (the floors: Bernoulli "fit" >= 8x keras-hub, exact
>= 3x) and a no-op ceiling, interleaved in one process; it prints medians in
a Markdown table. It is the measurement behind keeping the fast path.

    .venv/bin/python benchmarks/one_kernel_form.py [--batches 200] [--rounds 3]
    .venv/bin/python benchmarks/one_kernel_form.py --smoke   # seconds: checks it runs
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dynmask import DynamicMLMMasking  # noqa: E402
from keras_dynmask.kernels import op_set  # noqa: E402
from keras_dynmask.kernels import seeds  # noqa: E402
from keras_dynmask.kernels import token_masking  # noqa: E402

VOCAB, MASK_ID, SPECIALS = 30522, 103, [0, 101, 102, 103]


def one_form(selection):
    """The op-set kernels bound to TensorFlow, as a `(x, y, sample_weight)` map."""
    ops = op_set.tensorflow_ops()

    def mask(ids):
        corrupted, selected = token_masking.select_and_corrupt(
            ops, ids, seeds.fresh_seed(), excluded_ids=SPECIALS, vocabulary_size=VOCAB,
            mask_rate=0.15, selection=selection, max_predictions=None,
            mask_token_id=MASK_ID, mask_token_rate=0.8, random_token_rate=0.1,
        )
        return corrupted, ids, tf.cast(selected, tf.float32)

    return mask


def candidates():
    found = {"ceiling: map(x + 1)": lambda x: x + 1}
    try:
        import keras_hub

        found["peer: keras-hub MaskedLMMaskGenerator"] = keras_hub.layers.MaskedLMMaskGenerator(
            vocabulary_size=VOCAB, mask_selection_rate=0.15, mask_token_id=MASK_ID,
            mask_selection_length=96, unselectable_token_ids=SPECIALS,
        )
    except ImportError:
        print("keras-hub is not installed: no peer column (pip install -e .[bench])")
    for selection in ("bernoulli", "exact"):
        found[f"fast path: {selection} fit"] = DynamicMLMMasking(
            VOCAB, MASK_ID, special_token_ids=SPECIALS, selection=selection, output_mode="fit"
        )
        found[f"one form: {selection} fit"] = one_form(selection)
    return found


def tokens_per_second(fn, ids, batches):
    ds = tf.data.Dataset.from_tensors(ids).repeat()
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    iterator = iter(ds.take(batches + 1))
    next(iterator)  # warm-up: tracing, thread pools
    start = time.perf_counter()
    for _ in iterator:
        pass
    return batches * ids.size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="batches per timing")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    args = parser.parse_args()
    shape = (8, 64) if args.smoke else (256, 512)
    if args.smoke:
        args.batches, args.rounds = 2, 1
    ids = np.random.default_rng(0).integers(104, VOCAB, shape).astype(np.int32)
    found = candidates()
    rates = {name: [] for name in found}
    for _ in range(args.rounds):
        for name, fn in found.items():
            # keras-hub runs ~10x slower: fewer batches keep rounds short.
            peer = name.startswith("peer")
            rates[name].append(tokens_per_second(fn, ids, max(1, args.batches // (5 if peer else 1))))
    median = {name: statistics.median(values) for name, values in rates.items()}
    peer = next((v for k, v in median.items() if k.startswith("peer")), None)
    print(f"\n{shape[0]} x {shape[1]} int32 ids, vocabulary {VOCAB}; median of {args.rounds} "
          f"rounds, tf.data map on CPU\n")
    print("| pipeline | M tokens/s | x keras-hub |")
    print("|---|---:|---:|")
    for name, value in median.items():
        ratio = f"{value / peer:.2f}" if peer else "n/a"
        print(f"| {name} | {value / 1e6:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
