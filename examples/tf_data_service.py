"""Train a small masked LM on masks made by tf.data service workers.

When one machine's CPUs cannot keep the accelerators fed, the input pipeline
moves onto tf.data service workers. This script runs the whole arrangement
on one machine:

1. starts a tf.data service: a dispatcher and `--workers` worker processes,
   each its own Python process serving on 127.0.0.1
   (`keras_dynmask.data.LocalDataService`);
2. learns a WordPiece vocabulary from a corpus (default: the Python standard
   library's docstrings, no download; or `--text-files GLOB`);
3. sends the pipeline to the workers (`keras_dynmask.data.distribute_masking`):
   they tokenize each batch of passages in-graph and mask it with
   `DynamicMLMMasking`, keyed by (seed, epoch, batch index), so the masks
   do not depend on which worker made them or how many there are;
4. trains `MaskedLMModel` with `model.fit` on the `(x, y, sample_weight)`
   batches the workers send, then scores the held-out passages;
5. stops every server process and checks that none is left.

Run: `python examples/tf_data_service.py [--workers 2] [--epochs 2]
[--mode distributed_epoch|parallel_epochs] [--seed 0] [--text-files GLOB]`.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dynmask import DynamicMLMMasking  # noqa: E402
from keras_dynmask import MaskedLMModel  # noqa: E402
from keras_dynmask.data import distribute_masking  # noqa: E402
from keras_dynmask.text import WordPieceTokenizer  # noqa: E402
from keras_dynmask.tools.local_data_service import LocalDataService  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpora import load_corpus  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--mode",
        choices=("distributed_epoch", "parallel_epochs"),
        default="distributed_epoch",
        help="distributed_epoch: each batch once per epoch, split across "
        "workers; parallel_epochs: every worker makes every batch",
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="mask seed; -1 for none")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--vocabulary-size", type=int, default=2000)
    parser.add_argument("--max-passages", type=int, default=4000)
    parser.add_argument("--text-files", help="glob of UTF-8 text files to train on")
    args = parser.parse_args(argv)
    for name in ("workers", "epochs", "batch_size", "max_passages"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def build_model(vocabulary_size, masking):
    """A small token-level model: embeddings, one MLP block, logits."""
    backbone = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(vocabulary_size, 64),
            keras.layers.Dense(128, activation="gelu"),
            keras.layers.LayerNormalization(),
            keras.layers.Dense(vocabulary_size),
        ],
        name="backbone",
    )
    model = MaskedLMModel(backbone, masking)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    return model


def main(argv=None):
    args = parse_args(argv)
    seed = None if args.seed < 0 else args.seed
    keras.utils.set_random_seed(args.seed if seed is not None else 0)
    started = time.perf_counter()

    corpus = load_corpus(text_files=args.text_files, max_passages=args.max_passages)
    print(corpus)
    tokenizer = WordPieceTokenizer.learn(
        corpus.train,
        vocabulary_size=args.vocabulary_size,
        sequence_length=args.sequence_length,
    )
    print(f"vocabulary: {tokenizer.vocabulary_size} wordpieces")
    masking = DynamicMLMMasking(
        vocabulary_size=tokenizer.vocabulary_size,
        mask_token_id=tokenizer.mask_id,
        special_token_ids=tokenizer.special_token_ids,
        pad_token_id=tokenizer.pad_id,
        output_mode="fit",
    )
    # What the workers run: a batch of passages -> wordpiece ids (the
    # `preprocess` step) -> the masked batch.
    train_batches = corpus.dataset("train").batch(args.batch_size)
    num_batches = int(train_batches.cardinality())
    copies = args.workers if args.mode == "parallel_epochs" else 1
    steps_per_epoch = num_batches * copies

    cluster = LocalDataService(
        num_workers=args.workers,
        import_modules=["tensorflow_text"],  # the workers run its ops
        max_lifetime_s=3600,
    )
    servers = [cluster.dispatcher, *cluster.workers]
    try:
        print(f"tf.data service: dispatcher {cluster.service}, workers "
              f"{[w.address for w in cluster.workers]} "
              f"(pids {[s.pid for s in servers]})")
        masked = distribute_masking(
            train_batches,
            masking,
            cluster.service,
            processing_mode=args.mode,
            seed=seed,
            num_epochs=args.epochs,
            preprocess=tokenizer,
        ).prefetch(tf.data.AUTOTUNE)
        model = build_model(tokenizer.vocabulary_size, masking)
        # The job holds every epoch back to back: fit reads it once, epoch
        # after epoch, `steps_per_epoch` batches each.
        fit_started = time.perf_counter()
        history = model.fit(
            masked,
            epochs=args.epochs,
            steps_per_epoch=steps_per_epoch,
            shuffle=False,  # a tf.data pipeline is not shuffled by fit
            verbose=2,
        )
        fit_seconds = time.perf_counter() - fit_started
    finally:
        cluster.stop()
    left = [s for s in servers if s.is_running()]
    print(f"stopped: {len(servers) - len(left)} of {len(servers)} server processes exited")
    if left:
        raise SystemExit(f"server processes still running: {left}")

    tokens = args.epochs * steps_per_epoch * args.batch_size * args.sequence_length
    print(f"trained {args.epochs} epochs x {steps_per_epoch} batches on worker masks "
          f"({args.mode}, {args.workers} workers) in {fit_seconds:.1f}s, "
          f"~{tokens / fit_seconds:,.0f} tokens/s (upper bound: last batch may be short)")
    losses = [round(loss, 3) for loss in history.history["loss"]]
    print(f"training loss per epoch: {losses}")
    if corpus.validation:
        held_out = corpus.dataset("validation").batch(args.batch_size).map(tokenizer)
        scores = model.evaluate(held_out, verbose=0, return_dict=True)
        print(f"held-out masked-token loss {scores['loss']:.3f}, "
              f"accuracy {scores['accuracy']:.3f}")
    print(f"done in {time.perf_counter() - started:.1f}s")
    return history


if __name__ == "__main__":
    main(sys.argv[1:])
