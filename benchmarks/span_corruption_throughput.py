"""Tokens/s of T5 span corruption through tf.data: ours vs our token-level MLM.

All candidates run in one process on the same batches (256 x 512 int32 ids,
vocabulary 32128 as T5's, a quarter of the rows padded), each as
`ds.map(fn, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)`. Rounds are
interleaved and the median taken. The reference row is our
`DynamicMLMMasking` (token level, Bernoulli, `"ids"`); the target is
SpanCorruption at >= 0.3x of it. t5's own preprocessor is timed when t5
imports (`--t5-path`: t5 pulls in the JAX stack and an old tfds-nightly,
so it is kept out of the project's environment; see the README).

    .venv/bin/python benchmarks/span_corruption_throughput.py [--batches 150] [--rounds 3]
        [--t5-path /tmp/t5pkgs]

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

from keras_dynmask import DenoiserMixture  # noqa: E402
from keras_dynmask import DynamicMLMMasking  # noqa: E402
from keras_dynmask import SpanCorruption  # noqa: E402

BATCH, LENGTH, VOCAB = 256, 512, 32128
REFERENCE = "reference: DynamicMLMMasking (token, bernoulli, ids)"
PEER = "peer: t5's denoise + random_spans_noise_mask, per example"


def t5_peer(t5_path=None):
    """t5's own span corruption (`t5.data.preprocessors.denoise` with
    `random_spans_noise_mask`, the core of its `span_corruption`), one
    example at a time as t5 runs it; `None` when t5 does not import.

    Returns:
        A function `dataset of [B, T] batches -> dataset of {"inputs",
        "targets"} batches`.
    """
    if t5_path:
        sys.path.append(t5_path)  # after the venv: its packages win
    try:
        import functools

        import seqio
        from t5.data import preprocessors
    except ImportError as error:
        print(f"t5 does not import here ({error}): no t5 row", file=sys.stderr)
        return None
    vocabulary = seqio.PassThroughVocabulary(size=VOCAB)
    features = {
        key: seqio.Feature(vocabulary=vocabulary, add_eos=True) for key in ("inputs", "targets")
    }

    def corrupt(batches):
        examples = batches.unbatch().map(lambda row: {"targets": row})
        corrupted = preprocessors.denoise(
            examples,
            features,
            noise_density=0.15,
            noise_mask_fn=functools.partial(
                preprocessors.random_spans_noise_mask, mean_noise_span_length=3.0
            ),
            inputs_fn=preprocessors.noise_span_to_unique_sentinel,
            targets_fn=preprocessors.nonnoise_span_to_unique_sentinel,
        )
        return corrupted.padded_batch(BATCH)

    return corrupt


def candidates(t5_path=None):
    found = {
        "ceiling: map(x + 1)": lambda x: x + 1,
        REFERENCE: DynamicMLMMasking(vocabulary_size=VOCAB, mask_token_id=103),
        "ours: DynamicMLMMasking (token, exact, ids)": DynamicMLMMasking(
            vocabulary_size=VOCAB, mask_token_id=103, selection="exact"
        ),
        "ours: SpanCorruption (0.15, 3), batch-padded": SpanCorruption(VOCAB, eos_id=1),
        "ours: SpanCorruption (0.15, 3), fixed 512/114": SpanCorruption(
            VOCAB, eos_id=1, inputs_length=LENGTH, targets_length=LENGTH * 114 // 512
        ),
        "ours: DenoiserMixture (UL2's 7)": DenoiserMixture(VOCAB, eos_id=1),
    }
    peer = t5_peer(t5_path)
    if peer is not None:
        found[PEER] = peer
    return found


def tokens_per_second(fn, ids, batches, transform=False):
    ds = tf.data.Dataset.from_tensors(ids).repeat(batches + 2)
    if transform:
        ds = fn(ds)
    else:
        ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
    iterator = iter(ds.prefetch(tf.data.AUTOTUNE))
    next(iterator), next(iterator)  # warm up: tracing, thread pools
    start = time.perf_counter()
    count = sum(1 for _ in iterator)
    return count * BATCH * LENGTH / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=150, help="batches per timing (a second or more each)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--t5-path", default=None,
        help="a folder holding t5 and its dependencies (pip install --target), "
        "appended to sys.path",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    args = parser.parse_args(argv)
    if args.smoke:
        global BATCH, LENGTH
        BATCH, LENGTH = 8, 64
        args.batches, args.rounds = 2, 1
    rng = np.random.default_rng(0)
    ids = rng.integers(104, VOCAB - 100, size=(BATCH, LENGTH), dtype=np.int32)
    ids[: BATCH // 4, -LENGTH // 8 :] = 0  # some padding
    ids = tf.constant(ids)
    runs = candidates(args.t5_path)
    results = {name: [] for name in runs}
    total = args.rounds * len(runs)
    done = 0
    for round_index in range(args.rounds):
        for name, fn in runs.items():
            peer = name == PEER
            batches = max(2, args.batches // 8) if peer else args.batches
            results[name].append(tokens_per_second(fn, ids, batches, transform=peer))
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
