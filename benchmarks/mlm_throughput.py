"""Tokens/s of MLM masking through tf.data: ours vs keras-hub vs a no-op.

All candidates run in one process on the same batches (256 x 512 int32 ids,
vocabulary 30522, special ids {0, 101, 102, 103}), each as
`ds.map(fn, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)`. Rounds are
interleaved and the median taken, so machine noise hits all alike. Prints a
Markdown table with ratios to the peer (keras-hub's MaskedLMMaskGenerator)
and to the ceiling (a `lambda x: x + 1` map).

    .venv/bin/python benchmarks/mlm_throughput.py [--batches 400] [--rounds 3]

`--smoke` runs every candidate once on 8 x 64 ids, in seconds (the test
suite's check that the script still runs); its figures mean nothing.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dynmask import DynamicMLMMasking  # noqa: E402

BATCH, LENGTH, VOCAB = 256, 512, 30522
SPECIALS = [0, 101, 102, 103]
MASK_ID = 103


def candidates():
    def ours(**kwargs):
        return DynamicMLMMasking(
            vocabulary_size=VOCAB,
            mask_token_id=MASK_ID,
            special_token_ids=SPECIALS,
            pad_token_id=0,
            **kwargs,
        )

    found = {"ceiling: map(x + 1)": lambda x: x + 1}
    try:
        import keras_hub

        found["peer: keras-hub MaskedLMMaskGenerator"] = (
            keras_hub.layers.MaskedLMMaskGenerator(
                vocabulary_size=VOCAB,
                mask_selection_rate=0.15,
                mask_token_id=MASK_ID,
                mask_selection_length=96,
                unselectable_token_ids=SPECIALS,
            )
        )
    except ImportError:
        print("keras-hub is not installed: no peer row (pip install -e .[bench])")
    for selection in ("bernoulli", "exact"):
        for mode in ("ids", "fit", "dict"):
            found[f"ours: {selection}, {mode}"] = ours(selection=selection, output_mode=mode)
    found["ours: bernoulli, dict, max_predictions=96"] = ours(
        output_mode="dict", max_predictions=96
    )
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
    parser.add_argument("--batches", type=int, default=400, help="batches per timing (a second or more each)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--only", default="", help="run only the ours rows naming this")
    args = parser.parse_args(argv)
    if args.smoke:
        global BATCH, LENGTH
        BATCH, LENGTH = 8, 64
        args.batches, args.rounds = 2, 1
    rng = np.random.default_rng(0)
    ids = rng.integers(104, VOCAB, size=(BATCH, LENGTH), dtype=np.int32)
    ids[:, 0], ids[:, -1] = 101, 102
    ids[: BATCH // 4, -LENGTH // 8 :] = 0  # some padding
    ids = tf.constant(ids)
    runs = {name: fn for name, fn in candidates().items()
            if not name.startswith("ours") or args.only in name}
    results = {name: [] for name in runs}
    total = args.rounds * len(runs)
    done = 0
    for round_index in range(args.rounds):
        for name, fn in runs.items():
            batches = args.batches if "peer" not in name else max(4, args.batches // 8)
            results[name].append(tokens_per_second(fn, ids, batches))
            done += 1
            print(f"[{done}/{total}] round {round_index + 1}: {name}: "
                  f"{results[name][-1] / 1e6:.1f} M tokens/s", file=sys.stderr, flush=True)
    median = {name: statistics.median(values) for name, values in results.items()}
    ceiling = median["ceiling: map(x + 1)"]
    peer = median.get("peer: keras-hub MaskedLMMaskGenerator")
    print(f"\n{BATCH}x{LENGTH} int32 ids, vocabulary {VOCAB}, tf {tf.__version__}, "
          f"{os.cpu_count()} CPU cores, median of {args.rounds} rounds\n")
    print("| pipeline | M tokens/s | x peer | x peer, range over rounds | x ceiling |")
    print("|---|---:|---:|---:|---:|")
    for name, value in median.items():
        vs_peer = f"{value / peer:.1f}" if peer else "-"
        ratios = [v / p for v, p in zip(results[name], results.get(
            "peer: keras-hub MaskedLMMaskGenerator", results[name]))]
        spread = f"{min(ratios):.1f}-{max(ratios):.1f}" if peer else "-"
        print(f"| {name} | {value / 1e6:.1f} | {vs_peer} | {spread} | {value / ceiling:.3f} |")


if __name__ == "__main__":
    main()
