"""What building attention masks costs next to the attention that uses them.

In one run, for a batch of B sequences at each length T, this times every
mask option of `PaddingMask` and `CausalMask`, built from the token ids
inside a `tf.function` (as in a model or a `tf.data` map), against one
forward pass of `keras.layers.MultiHeadAttention(num_heads=8, key_dim=64)`
(model width 512) on `[B, T, 512]` hidden states with a precomputed mask. It
reports each mask's time, that time as a percentage of the attention time,
and the mask's memory (a bool is one byte), beside the memory of the
attention's own `[B, heads, T, T]` float32 scores. The masks are traced
with `None` batch and length, as in an exported model, so none is folded
into a constant at trace time.

Usage:
    python benchmarks/attention_mask_cost.py
    python benchmarks/attention_mask_cost.py --lengths 128 512 --json out.json

Times are medians of several timed blocks, each a loop of calls long enough
to be measured; the machine, its core count and TF's version are printed
with the table.
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dynmask import CausalMask  # noqa: E402
from keras_dynmask import PaddingMask  # noqa: E402

NUM_HEADS = 8
KEY_DIM = 64
MODEL_DIM = NUM_HEADS * KEY_DIM
VOCABULARY_SIZE = 30_000
TARGET_LENGTH = 512
TARGET_OPTION = "causal + padding + segments"
TARGET_PERCENT = 5.0


def make_batch(batch_size, length, seed=0):
    """Ids padded with 0 past each row's real length, packed segment ids
    (segments of 16 to `length / 2` tokens) and per-row prefix lengths."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCABULARY_SIZE, size=(batch_size, length))
    real_lengths = rng.integers(length // 2, length + 1, size=batch_size)
    ids[np.arange(length)[None, :] >= real_lengths[:, None]] = 0
    segment_starts = rng.random((batch_size, length)) < 2.0 / max(length // 4, 16)
    segment_starts[:, 0] = False
    segment_ids = np.cumsum(segment_starts, axis=1)
    prefix_length = rng.integers(0, length // 4 + 1, size=batch_size)
    return (
        tf.constant(ids, tf.int32),
        tf.constant(segment_ids, tf.int32),
        tf.constant(prefix_length, tf.int32),
    )


def mask_options(window):
    """name -> function of (ids, segment_ids, prefix_length) building a mask."""
    padding = PaddingMask()
    padding_pairs = PaddingMask(output_mode="attention")
    causal = CausalMask()
    windowed = CausalMask(window=window)
    return {
        "padding (mask, [B, T])": lambda ids, seg, prefix: padding(ids),
        "padding (attention)": lambda ids, seg, prefix: padding_pairs(ids),
        "causal": lambda ids, seg, prefix: causal(ids),
        f"causal + window {window}": lambda ids, seg, prefix: windowed(ids),
        "causal + prefix": lambda ids, seg, prefix: causal(ids, prefix_length=prefix),
        "causal + padding": lambda ids, seg, prefix: causal(
            ids, padding_mask=padding(ids)
        ),
        TARGET_OPTION: lambda ids, seg, prefix: causal(
            ids, padding_mask=padding(ids), segment_ids=seg
        ),
        "all (window, prefix, segments, padding)": lambda ids, seg, prefix: windowed(
            ids, padding_mask=padding(ids), segment_ids=seg, prefix_length=prefix
        ),
    }


def seconds_per_call(function, args, repeats, min_block_seconds):
    """Median seconds per call over `repeats` timed blocks of calls."""
    function(*args)  # trace and warm up
    start = time.perf_counter()
    function(*args)
    one_call = max(time.perf_counter() - start, 1e-6)
    calls_per_block = max(1, int(min_block_seconds / one_call))
    blocks = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls_per_block):
            result = function(*args)
        # Eager TF on CPU returns finished tensors; touch one to be sure.
        tf.nest.flatten(result)[0].numpy()
        blocks.append((time.perf_counter() - start) / calls_per_block)
    return float(np.median(blocks))


MASK_SIGNATURE = [
    tf.TensorSpec([None, None], tf.int32, name="token_ids"),
    tf.TensorSpec([None, None], tf.int32, name="segment_ids"),
    tf.TensorSpec([None], tf.int32, name="prefix_length"),
]


def num_bytes(tensor):
    return tensor.shape.num_elements() * tensor.dtype.size


def human_bytes(count):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:g} {unit}"
        count /= 1024


def run(batch_size, lengths, window, repeats):
    results = []
    for length in lengths:
        ids, segment_ids, prefix_length = make_batch(batch_size, length, seed=length)
        hidden = tf.random.stateless_normal((batch_size, length, MODEL_DIM), seed=[1, length])
        attention_layer = keras.layers.MultiHeadAttention(NUM_HEADS, KEY_DIM, seed=0)
        mask = CausalMask()(ids, padding_mask=PaddingMask()(ids), segment_ids=segment_ids)
        attention = tf.function(
            lambda x, m: attention_layer(x, x, attention_mask=m)
        )
        attention_repeats = repeats if length <= 512 else max(3, repeats // 2)
        attention_seconds = seconds_per_call(
            attention, (hidden, mask), attention_repeats, min_block_seconds=0.5
        )
        row = {
            "length": length,
            "attention_ms": attention_seconds * 1e3,
            "attention_scores_bytes": batch_size * NUM_HEADS * length * length * 4,
            "masks": {},
        }
        print(
            f"T={length}: MultiHeadAttention forward {attention_seconds * 1e3:.2f} ms",
            flush=True,
        )
        for name, build in mask_options(window).items():
            # `None` batch and length, as in an exported model: the mask
            # cannot be folded into a constant at trace time.
            function = tf.function(build, input_signature=MASK_SIGNATURE)
            seconds = seconds_per_call(
                function, (ids, segment_ids, prefix_length), repeats, min_block_seconds=0.2
            )
            output = function(ids, segment_ids, prefix_length)
            row["masks"][name] = {
                "ms": seconds * 1e3,
                "percent_of_attention": 100 * seconds / attention_seconds,
                "bytes": num_bytes(output),
            }
            print(
                f"  {name:42s} {seconds * 1e3:8.3f} ms  "
                f"{100 * seconds / attention_seconds:6.2f} %  "
                f"{human_bytes(num_bytes(output))}",
                flush=True,
            )
        results.append(row)
    return results


def markdown_table(results, batch_size):
    lengths = [row["length"] for row in results]
    header = (
        f"| B={batch_size} | "
        + " | ".join(f"T={t}: ms (% of attention)" for t in lengths)
        + " | memory, T="
        + " / ".join(str(t) for t in lengths)
        + " |"
    )
    lines = [header, "|" + "---|" * (len(lengths) + 2)]
    attention_cells = [f"{row['attention_ms']:.1f} (100%)" for row in results]
    scores = " / ".join(human_bytes(row["attention_scores_bytes"]) for row in results)
    lines.append(
        "| MultiHeadAttention forward (8 heads, 512 dims) | "
        + " | ".join(attention_cells)
        + f" | scores: {scores} |"
    )
    for name in results[0]["masks"]:
        cells = []
        for row in results:
            cell = row["masks"][name]
            cells.append(f"{cell['ms']:.3f} ({cell['percent_of_attention']:.2f}%)")
        memory = " / ".join(human_bytes(row["masks"][name]["bytes"]) for row in results)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {memory} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--smoke", action="store_true", help="B=2, T=32, one repeat: checks the script runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.batch_size, args.lengths, args.window, args.repeats = 2, [32], 8, 1

    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"{os.cpu_count()} CPU cores, {platform.machine()}, "
        f"GPUs: {len(tf.config.list_physical_devices('GPU'))}",
        flush=True,
    )
    results = run(args.batch_size, args.lengths, args.window, args.repeats)
    print()
    print(markdown_table(results, args.batch_size))
    for row in results:
        if row["length"] == TARGET_LENGTH:
            percent = row["masks"][TARGET_OPTION]["percent_of_attention"]
            verdict = "meets" if percent <= TARGET_PERCENT else "MISSES"
            print(
                f"\n{TARGET_OPTION} at T={TARGET_LENGTH}: {percent:.2f}% of attention "
                f"({verdict} the {TARGET_PERCENT:g}% target)"
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"batch_size": args.batch_size, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
