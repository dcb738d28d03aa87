"""The one kernel form against the TensorFlow fast path, in `tf.data`.

`DynamicMLMMasking` and `SpanCorruption` compute with TensorFlow-only
kernels in `tf.data` and under the TensorFlow backend, and with kernels
written once against the op set inside JAX and PyTorch models:
`kernels.token_masking` (token masking), `kernels.word_masking` (whole
words, SpanBERT spans) and `kernels.span_noise` (T5 span corruption at
fixed lengths). This runs both forms of each in `tf.data` on CPU, the
op-set form bound to TensorFlow, beside keras-hub's
`MaskedLMMaskGenerator` (the floors: Bernoulli "fit" >= 8x keras-hub, exact
>= 3x) and a no-op ceiling, interleaved in one process; it prints medians in
a Markdown table, with each one form's throughput as a share of its fast
path's. It is the measurement behind keeping the fast paths.

Word and span masking use a WordPiece-like word-start table (25%
continuation pieces, as `benchmarks/word_masking_throughput.py`); span
corruption T5's defaults (noise density 0.15, mean span 3, eos) with fixed
output lengths 512 and 128, as inside a jitted model.

    .venv/bin/python benchmarks/one_kernel_form.py [--batches 200] [--rounds 3]
    .venv/bin/python benchmarks/one_kernel_form.py --strategies word,span,span_corruption
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
from keras_dynmask import SpanCorruption  # noqa: E402
from keras_dynmask.kernels import op_set  # noqa: E402
from keras_dynmask.kernels import seeds  # noqa: E402
from keras_dynmask.kernels import span_noise  # noqa: E402
from keras_dynmask.kernels import token_masking  # noqa: E402
from keras_dynmask.kernels import word_masking  # noqa: E402

VOCAB, MASK_ID, SPECIALS = 30522, 103, [0, 101, 102, 103]
STRATEGIES = ("token", "word", "span", "span_corruption")
# Span corruption: T5's settings, fixed output widths (as under jit).
NUM_SENTINELS, EOS_ID, INPUTS_LENGTH, TARGETS_LENGTH = 100, 1, 512, 128
MASKING = dict(mask_rate=0.15, mask_token_id=MASK_ID, mask_token_rate=0.8, random_token_rate=0.1)


def word_start_table():
    """A WordPiece-like table: 25% of ids continue a word."""
    table = np.random.default_rng(1).random(VOCAB) >= 0.25
    table[SPECIALS] = True
    return table


def one_form(selection, granularity="token"):
    """The op-set kernels bound to TensorFlow, as a `(x, y, sample_weight)` map."""
    ops = op_set.tensorflow_ops()
    options = dict(excluded_ids=SPECIALS, vocabulary_size=VOCAB, selection=selection,
                   max_predictions=None, **MASKING)
    if granularity != "token":
        options.update(granularity=granularity, word_starts=word_start_table())
    kernel = token_masking if granularity == "token" else word_masking

    def mask(ids):
        corrupted, selected = kernel.select_and_corrupt(ops, ids, seeds.fresh_seed(), **options)
        return corrupted, ids, tf.cast(selected, tf.float32)

    return mask


def fast_path(selection, granularity="token"):
    """The layer in `tf.data`: its TensorFlow-only kernels."""
    table = None if granularity == "token" else word_start_table()
    return DynamicMLMMasking(VOCAB, MASK_ID, special_token_ids=SPECIALS, selection=selection,
                             granularity=granularity, word_starts=table, output_mode="fit")


def span_corruption_layer():
    return SpanCorruption(VOCAB, num_sentinels=NUM_SENTINELS, eos_id=EOS_ID,
                          inputs_length=INPUTS_LENGTH, targets_length=TARGETS_LENGTH)


def span_corruption_one_form():
    """`kernels.span_noise` bound to TensorFlow, the layer's settings."""
    ops, layer = op_set.tensorflow_ops(), span_corruption_layer()

    def corrupt(ids):
        inputs, targets = span_noise.corrupt_spans(
            ops, ids, seeds.fresh_seed(), noise_density=layer.noise_density,
            mean_noise_span_length=layer.mean_noise_span_length,
            sentinel_ids=layer.sentinel_ids, eos_id=EOS_ID, pad_token_id=layer.pad_token_id,
            inputs_length=INPUTS_LENGTH, targets_length=TARGETS_LENGTH,
        )
        return {"inputs": inputs, "targets": targets}

    return corrupt


def candidates(strategies=STRATEGIES):
    """`{name: map function}`; one form rows follow their fast path's."""
    found = {"ceiling: map(x + 1)": lambda x: x + 1}
    if "token" in strategies:
        try:
            import keras_hub

            found["peer: keras-hub MaskedLMMaskGenerator"] = keras_hub.layers.MaskedLMMaskGenerator(
                vocabulary_size=VOCAB, mask_selection_rate=0.15, mask_token_id=MASK_ID,
                mask_selection_length=96, unselectable_token_ids=SPECIALS,
            )
        except ImportError:
            print("keras-hub is not installed: no peer column (pip install -e .[bench])")
        for selection in ("bernoulli", "exact"):
            found[f"fast path: {selection} fit"] = fast_path(selection)
            found[f"one form: {selection} fit"] = one_form(selection)
    for granularity in ("word", "span"):
        if granularity in strategies:
            for selection in ("bernoulli", "exact"):
                found[f"fast path: {granularity} {selection} fit"] = fast_path(selection, granularity)
                found[f"one form: {granularity} {selection} fit"] = one_form(selection, granularity)
    if "span_corruption" in strategies:
        found["fast path: T5 span corruption"] = span_corruption_layer()
        found["one form: T5 span corruption"] = span_corruption_one_form()
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="batches per timing")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--strategies", default=",".join(STRATEGIES),
                        help=f"comma-separated, of {', '.join(STRATEGIES)}")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    args = parser.parse_args(argv)
    strategies = args.strategies.split(",")
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"--strategies: unknown {unknown}; choose from {', '.join(STRATEGIES)}")
    shape = (8, 64) if args.smoke else (256, 512)
    if args.smoke:
        args.batches, args.rounds = 2, 1
    # Below the sentinels (the vocabulary's top 100 ids), above the specials.
    ids = np.random.default_rng(0).integers(104, VOCAB - NUM_SENTINELS, shape).astype(np.int32)
    found = candidates(strategies)
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
    print("| pipeline | M tokens/s | x keras-hub | one form / fast path |")
    print("|---|---:|---:|---:|")
    for name, value in median.items():
        ratio = f"{value / peer:.2f}" if peer else "n/a"
        fast = median.get(name.replace("one form:", "fast path:"))
        share = f"{value / fast:.2f}" if name.startswith("one form") and fast else ""
        print(f"| {name} | {value / 1e6:.1f} | {ratio} | {share} |")


if __name__ == "__main__":
    main()
