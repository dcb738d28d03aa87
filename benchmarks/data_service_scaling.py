"""Tokens/s of the masking pipeline: in-process vs 1 and 2 tf.data service workers.

Two pipelines, each seeded and keyed by (seed, epoch, batch index) exactly as
`keras_dynmask.data.distribute_masking` runs them:

- "mask": pre-tokenized ids, 128 x 512 int32 per batch (vocabulary 30522),
  masked by `DynamicMLMMasking(output_mode="fit")`: cheap per token, so it
  measures the price of shipping `(x, y, sample_weight)` (12 bytes a token)
  over RPC;
- "tokenize + mask": raw passages (the Python standard library's
  docstrings), 64 a batch, WordPiece-tokenized in-graph to 128 ids (the
  `preprocess` step) and masked: the kind of CPU-heavy pipeline one moves
  to workers.

Each runs in-process (`masking_pipeline(...)` iterated locally), and through
a local tf.data service (`distributed_epoch`, `compression=None`,
`--elements-per-split` batches a split) with 1 and with 2 worker processes
on 127.0.0.1. A second set of rows caps every
pipeline at one thread (`tf.data.Options`: private thread pool of 1, no
intra-op parallelism), so a "worker" stands for a fixed slice of CPU, as a
worker machine does: that is what shows how throughput grows with workers.
The trainer side (this process) only reads batches and counts tokens
(non-padding ids). Rounds are interleaved and the median kept. Prints a
Markdown table.

    .venv/bin/python benchmarks/data_service_scaling.py [--rounds 3] [--batches 96]
        [--elements-per-split 8]

`--smoke` runs each pipeline once, on all cores only, on a few small
batches and a 1-worker service only, in seconds (the test suite's check
that the script still runs); its figures mean nothing.
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
from keras_dynmask.data import masking_pipeline  # noqa: E402
from keras_dynmask.text import WordPieceTokenizer  # noqa: E402
from keras_dynmask.tools.local_data_service import LocalDataService  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
from corpora import load_corpus  # noqa: E402

SEED = 0
WARMUP_BATCHES = 16


def mask_ids_source(num_batches, batch=128, length=512):
    """Pre-tokenized batches and the layer that masks them."""
    vocabulary_size = 30522
    ids = np.random.RandomState(0).randint(
        104, vocabulary_size, size=(num_batches * batch, length)
    ).astype("int32")
    layer = DynamicMLMMasking(
        vocabulary_size=vocabulary_size,
        mask_token_id=103,
        special_token_ids=[0, 101, 102, 103],
        output_mode="fit",
    )
    return tf.data.Dataset.from_tensor_slices(ids).batch(batch), layer, 0, None


def tokenize_and_mask_source(num_batches, vocabulary_size=8000, learn_from=4000, **learn_kwargs):
    """Batches of raw passages, tokenized in-graph, and the masking layer."""
    corpus = load_corpus(max_passages=num_batches * 64 + 500)
    tokenizer = WordPieceTokenizer.learn(
        corpus.train[:learn_from],
        vocabulary_size=vocabulary_size,
        sequence_length=128,
        **learn_kwargs,
    )
    passages = list(corpus.train[: num_batches * 64])
    layer = DynamicMLMMasking(
        vocabulary_size=tokenizer.vocabulary_size,
        mask_token_id=tokenizer.mask_id,
        special_token_ids=tokenizer.special_token_ids,
        pad_token_id=tokenizer.pad_id,
        output_mode="fit",
    )
    batches = tf.data.Dataset.from_tensor_slices(passages).batch(64)
    return batches, layer, tokenizer.pad_id, tokenizer


def one_thread():
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    return options


def tokens_per_second(dataset, timed_batches, pad_id, warmup_batches=WARMUP_BATCHES):
    """Reads `warmup_batches`, then times `timed_batches`; non-padding ids/s."""
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    tokens = 0
    started = time.perf_counter()
    for _ in range(timed_batches):
        _, original, _ = next(iterator)
        tokens += int(np.count_nonzero(original.numpy() != pad_id))
    seconds = time.perf_counter() - started
    for _ in iterator:  # finish the job so the workers go idle
        pass
    return tokens / seconds


def pipeline_for(source, layer, preprocess, num_epochs, options, service, elements_per_split):
    pipeline = masking_pipeline(
        source,
        layer,
        "distributed_epoch",
        seed=SEED,
        num_epochs=num_epochs,
        elements_per_split=elements_per_split,
        preprocess=preprocess,
    )
    if options is not None:
        pipeline = pipeline.with_options(options)
    if service is not None:
        pipeline = pipeline.apply(
            tf.data.experimental.service.distribute(
                "distributed_epoch", service, compression=None
            )
        )
    return pipeline.prefetch(4)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=96, help="timed batches a run")
    parser.add_argument(
        "--elements-per-split", type=int, default=8, help="batches a worker asks for at a time"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one round, 1 worker: checks it runs"
    )
    args = parser.parse_args(argv)
    for name in ("rounds", "batches", "elements_per_split"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    source_batches, warmup_batches, worker_counts = 32, WARMUP_BATCHES, (1, 2)
    if args.smoke:
        args.rounds, args.batches = 1, 2
        source_batches, warmup_batches, worker_counts = 4, 1, (1,)
    total = warmup_batches + args.batches
    num_epochs = -(-total // source_batches)
    print(
        f"CPU cores: {os.cpu_count()}; TensorFlow {tf.__version__}; load average "
        f"{os.getloadavg()[0]:.1f}; {args.elements_per_split} batches a split"
    )
    print("preparing sources (corpus, WordPiece vocabulary) ...", flush=True)
    if args.smoke:
        sources = {
            "mask": mask_ids_source(source_batches, batch=8, length=64),
            "tokenize + mask": tokenize_and_mask_source(
                source_batches, vocabulary_size=300, learn_from=300, num_iterations=1
            ),
        }
    else:
        sources = {
            "mask": mask_ids_source(source_batches),
            "tokenize + mask": tokenize_and_mask_source(source_batches),
        }
    clusters = {}
    try:
        # Two clusters side by side (idle ones cost next to nothing), so the
        # rounds can interleave every configuration.
        for num_workers in worker_counts:
            clusters[num_workers] = LocalDataService(
                num_workers=num_workers, import_modules=["tensorflow_text"]
            )
        configs = [("in-process", None)] + [
            (f"{n} worker{'s' if n > 1 else ''}", clusters[n]) for n in worker_counts
        ]
        # The smoke run skips the one-thread rows: the same code with other
        # options.
        thread_rows = ("all cores",) if args.smoke else ("all cores", "1 thread each")
        rows = [(name, threads) for name in sources for threads in thread_rows]
        results = {(row, config): [] for row in rows for config, _ in configs}
        for round_index in range(args.rounds):
            for name, threads in rows:
                source, layer, pad_id, preprocess = sources[name]
                options = one_thread() if threads == "1 thread each" else None
                for config, cluster in configs:
                    service = None if cluster is None else cluster.service
                    dataset = pipeline_for(
                        source,
                        layer,
                        preprocess,
                        num_epochs,
                        options,
                        service,
                        args.elements_per_split,
                    )
                    rate = tokens_per_second(dataset, args.batches, pad_id, warmup_batches)
                    results[((name, threads), config)].append(rate)
                    print(
                        f"round {round_index + 1}: {name:16s} {threads:14s} "
                        f"{config:10s} {rate / 1e6:8.2f} M tokens/s",
                        flush=True,
                    )
    finally:
        for cluster in clusters.values():
            cluster.stop()

    print()
    print(
        "| pipeline | pipeline threads | in-process | 1 worker | 2 workers "
        "| 2 workers / 1 worker |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        medians = [statistics.median(results[(row, config)]) for config, _ in configs]
        medians += [float("nan")] * (3 - len(medians))
        cells = " | ".join(f"{m / 1e6:.2f} M" for m in medians)
        print(f"| {row[0]} | {row[1]} | {cells} | {medians[2] / medians[1]:.2f}x |")
    print(
        f"\nmedian of {args.rounds} rounds, {args.batches} timed batches each; tokens/s = "
        "non-padding ids received by the trainer process; load average at the end "
        f"{os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
