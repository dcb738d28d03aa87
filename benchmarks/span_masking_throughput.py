"""Frames/s of wav2vec 2.0 span masking: SpanMasking vs Hugging Face's, one run.

The peer is Hugging Face transformers' `_compute_mask_indices`
(`transformers.models.wav2vec2.modeling_wav2vec2`, NumPy, a Python loop
over the rows), the function its wav2vec 2.0, HuBERT and WavLM models call
in training, followed, for the rows that mask features too, by what their
`_mask_hidden_states` does with the result (`hidden[mask] = vector`, in
place on a torch tensor: only the masked frames are written). Ours: `SpanMasking` in a `tf.data` map, called one batch at
a time in a `tf.function`, and XLA-compiled (`jit_compile=True`); and its
kernel alone (`frame_spans.span_mask`, the mask without the features), per
batch and in `tf.data`. Our layer returns new features (`tf.where` over
the whole batch: every frame is read and written), where the peer
overwrites the masked frames of its tensor in place.

Same inputs for all, in one process: batches of 16 x 500 frames (10 s of
audio at wav2vec 2.0's 50 frames/s) of 768 features (its hidden size),
real lengths uniform in [250, 500] with padding at the end, wav2vec 2.0
base's settings (mask_prob 0.05, mask_length 10, min_masks 2, overlapping
spans). Rounds are interleaved and the median taken. Frames/s counts every
frame of a batch, padding included.

The masked shares are checked on the same settings: the mean share of real
frames masked, ours and theirs, over `--share-batches` batches, with the
standard error of each mean (they draw `u` once per batch, we once per
row: the same expectation).

    .venv/bin/python benchmarks/span_masking_throughput.py [--batches 60] [--rounds 3]

`--smoke` runs every candidate but the XLA one on 4 x 64 frames, in seconds (the test
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

from keras_dynmask import SpanMasking  # noqa: E402
from keras_dynmask.kernels import frame_spans  # noqa: E402
from keras_dynmask.kernels import op_set  # noqa: E402

BATCH, FRAMES, DEPTH = 16, 500, 768
RULE = dict(mask_prob=0.05, mask_length=10, min_masks=2)
PEER = "peer: HF _compute_mask_indices + hidden[mask] = vector (torch, in place)"
PEER_MASK = "peer: HF _compute_mask_indices (mask only)"


def peer_functions():
    """HF's mask function and the masking of its models; `None` without transformers."""
    try:
        import torch
        from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices
    except ImportError as error:
        print(f"transformers does not import here ({error}): no peer rows", file=sys.stderr)
        return None
    vector = torch.rand(DEPTH)

    def mask_only(features, padding):
        return _compute_mask_indices(
            (len(padding), padding.shape[1]), attention_mask=torch.from_numpy(padding).long(), **RULE
        )

    def mask_features(hidden, padding):
        # In place, as the model does with its fresh hidden states: only the
        # masked frames are written.
        mask = mask_only(hidden, padding)
        hidden[torch.from_numpy(mask)] = vector
        return hidden, mask

    return {PEER_MASK: mask_only, PEER: mask_features}


def numpy_frames_per_second(fn, features, padding, batches):
    import torch

    features = torch.from_numpy(features.copy())
    fn(features, padding)  # warm up
    start = time.perf_counter()
    for _ in range(batches):
        fn(features, padding)
    return batches * features.shape[0] * features.shape[1] / (time.perf_counter() - start)


def ours(smoke=False):
    layer = SpanMasking(mask_value=0.0, **RULE)
    jitted = tf.function(lambda f, p: layer(f, padding_mask=p), jit_compile=True)
    graph = tf.function(lambda f, p: layer(f, padding_mask=p))

    def kernel_mask(features, padding):
        ops = op_set.tensorflow_ops()
        lengths = tf.reduce_sum(tf.cast(padding, tf.int32), axis=1)
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
        return frame_spans.span_mask(ops, lengths, tf.shape(padding)[1], seed, allow_overlap=True, **RULE)

    runs = {
        "ours: SpanMasking in tf.data (map, AUTOTUNE)": ("data", lambda f, p: layer(f, padding_mask=p)),
        "ours: SpanMasking, tf.function per batch": ("call", graph),
        "ours: SpanMasking, XLA (jit_compile=True) per batch": ("call", jitted),
        "ours: kernel frame_spans.span_mask (mask only), tf.function": ("call", tf.function(kernel_mask)),
        "ours: kernel frame_spans.span_mask (mask only) in tf.data": ("data", kernel_mask),
    }
    if smoke:  # seconds of XLA compilation: not in the smoke run
        del runs["ours: SpanMasking, XLA (jit_compile=True) per batch"]
    return runs, layer


def tensorflow_frames_per_second(kind, fn, features, padding, batches):
    if kind == "data":
        ds = tf.data.Dataset.from_tensors((features, padding)).repeat(batches + 2)
        iterator = iter(ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
        next(iterator), next(iterator)  # warm up: tracing, thread pools
        start = time.perf_counter()
        for _ in iterator:
            pass
    else:
        features, padding = tf.constant(features), tf.constant(padding)
        fn(features, padding)
        start = time.perf_counter()
        for _ in range(batches):
            out = fn(features, padding)
        (out[0] if isinstance(out, tuple) else out).numpy()  # wait for the last one
    return batches * BATCH * FRAMES / (time.perf_counter() - start)


def masked_shares(layer, peers, lengths_rng, batches):
    """Mean share of real frames masked per batch: ours and theirs, with standard errors."""
    shares = {"ours": [], "HF": []}
    features = np.zeros((BATCH, FRAMES, 1), np.float32)
    for _ in range(batches):
        padding = padding_mask(lengths_rng)
        _, mask = layer(features, padding_mask=padding)
        shares["ours"].append(mask.numpy()[padding].mean())
        if peers:
            shares["HF"].append(peers[PEER_MASK](None, padding)[padding].mean())
    return {k: (np.mean(v), np.std(v) / np.sqrt(len(v))) for k, v in shares.items() if v}


def padding_mask(rng):
    lengths = rng.integers(FRAMES // 2, FRAMES + 1, BATCH)
    return np.arange(FRAMES)[None, :] < lengths[:, None]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60, help="batches per timing")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--share-batches", type=int, default=400, help="batches for the shares")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    args = parser.parse_args(argv)
    global BATCH, FRAMES, DEPTH
    if args.smoke:
        BATCH, FRAMES, DEPTH = 4, 64, 8
        args.batches, args.rounds, args.share_batches = 2, 1, 4
    rng = np.random.default_rng(0)
    features = rng.normal(size=(BATCH, FRAMES, DEPTH)).astype(np.float32)
    padding = padding_mask(rng)
    runs, layer = ours(args.smoke)
    peers = peer_functions() or {}
    results = {name: [] for name in list(peers)[::-1] + list(runs)}
    total, done = args.rounds * len(results), 0
    for round_index in range(args.rounds):
        for name in results:
            if name in peers:
                value = numpy_frames_per_second(peers[name], features, padding, args.batches)
            else:
                kind, fn = runs[name]
                value = tensorflow_frames_per_second(kind, fn, features, padding, args.batches)
            results[name].append(value)
            done += 1
            print(f"[{done}/{total}] round {round_index + 1}: {name}: {value / 1e6:.2f} M frames/s",
                  file=sys.stderr, flush=True)
    median = {name: statistics.median(values) for name, values in results.items()}
    # Without transformers the ratios are to our first row instead.
    reference_name = PEER if PEER in median else next(iter(runs))
    reference = median[reference_name]
    version = sys.modules["transformers"].__version__ if "transformers" in sys.modules else "absent"

    print(f"\n{BATCH}x{FRAMES} frames of {DEPTH} float32 features, lengths uniform in "
          f"[{FRAMES // 2}, {FRAMES}], mask_prob {RULE['mask_prob']}, mask_length "
          f"{RULE['mask_length']}, min_masks {RULE['min_masks']}; tf {tf.__version__}, "
          f"transformers {version}, {os.cpu_count()} CPU cores, "
          f"median of {args.rounds} rounds\n")
    column = "x HF (+ hidden[mask])" if reference_name == PEER else "x " + reference_name
    print(f"| masking | M frames/s | {column} |")
    print("|---|---:|---:|")
    for name, value in median.items():
        print(f"| {name} | {value / 1e6:.3f} | {value / reference:.2f} |")
    shares = masked_shares(layer, peers, np.random.default_rng(1), args.share_batches)
    print(f"\nMasked share of real frames over {args.share_batches} batches (mean +- standard error):")
    for name, (mean, error) in shares.items():
        print(f"  {name}: {mean:.4f} +- {error:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
