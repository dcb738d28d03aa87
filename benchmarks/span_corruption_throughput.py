"""Tokens/s of T5 span corruption through tf.data: ours vs our token-level MLM.

All candidates run in one process on the same batches (256 x 512 int32 ids,
vocabulary 32128 as T5's, a quarter of the rows padded), each as
`ds.map(fn, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)`. Rounds are
interleaved and the median taken. The reference row is our
`DynamicMLMMasking` (token level, Bernoulli, `"ids"`); the target is
SpanCorruption at >= 0.3x of it. t5's and seqio's own preprocessors are
timed when they import beside this TensorFlow (they do not install beside
TensorFlow 2.21: see the README).

    .venv/bin/python benchmarks/span_corruption_throughput.py [--batches 40] [--rounds 3]
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dynmask import DenoiserMixture  # noqa: E402
from keras_dynmask import DynamicMLMMasking  # noqa: E402
from keras_dynmask import SpanCorruption  # noqa: E402

BATCH, LENGTH, VOCAB = 256, 512, 32128
REFERENCE = "reference: DynamicMLMMasking (token, bernoulli, ids)"


def t5_peer():
    """t5's span_corruption on one example at a time, if t5 imports."""
    try:
        from t5.data import preprocessors  # noqa: F401
    except ImportError:
        return None

    def corrupt(ids):
        def one(row):
            return preprocessors.span_corruption(
                tf.data.Dataset.from_tensors({"targets": row}),
                sequence_length={"inputs": LENGTH, "targets": LENGTH},
                output_features=None,
            )

        return tf.data.Dataset.from_tensor_slices(ids).flat_map(one)

    return corrupt


def candidates():
    found = {
        "ceiling: map(x + 1)": lambda x: x + 1,
        REFERENCE: DynamicMLMMasking(vocabulary_size=VOCAB, mask_token_id=103),
        "ours: SpanCorruption (0.15, 3), batch-padded": SpanCorruption(VOCAB, eos_id=1),
        "ours: SpanCorruption (0.15, 3), fixed 512/114": SpanCorruption(
            VOCAB, eos_id=1, inputs_length=LENGTH, targets_length=114
        ),
        "ours: DenoiserMixture (UL2's 7)": DenoiserMixture(VOCAB, eos_id=1),
    }
    if t5_peer() is None:
        print("t5 / seqio do not import here: no t5 row", file=sys.stderr)
    return found


def tokens_per_second(fn, ids, batches):
    ds = (
        tf.data.Dataset.from_tensors(ids)
        .repeat(batches + 2)
        .map(fn, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    iterator = iter(ds)
    next(iterator), next(iterator)  # warm up: tracing, thread pools
    start = time.perf_counter()
    count = sum(1 for _ in iterator)
    return count * BATCH * LENGTH / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="batches per timing")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    ids = rng.integers(104, VOCAB - 100, size=(BATCH, LENGTH), dtype=np.int32)
    ids[: BATCH // 4, -LENGTH // 8 :] = 0  # some padding
    ids = tf.constant(ids)
    runs = candidates()
    results = {name: [] for name in runs}
    total = args.rounds * len(runs)
    done = 0
    for round_index in range(args.rounds):
        for name, fn in runs.items():
            results[name].append(tokens_per_second(fn, ids, args.batches))
            done += 1
            print(f"[{done}/{total}] round {round_index + 1}: {name}: "
                  f"{results[name][-1] / 1e6:.1f} M tokens/s", file=sys.stderr, flush=True)
    median = {name: statistics.median(values) for name, values in results.items()}
    ceiling = median["ceiling: map(x + 1)"]
    reference = median[REFERENCE]
    print(f"\n{BATCH}x{LENGTH} int32 ids, vocabulary {VOCAB}, tf {tf.__version__}, "
          f"{os.cpu_count()} CPU cores, median of {args.rounds} rounds\n")
    print("| pipeline | M tokens/s | x token-level MLM | x ceiling |")
    print("|---|---:|---:|---:|")
    for name, value in median.items():
        print(f"| {name} | {value / 1e6:.1f} | {value / reference:.2f} | "
              f"{value / ceiling:.3f} |")


if __name__ == "__main__":
    main()
