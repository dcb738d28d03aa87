"""Tokens/s of whole-word and span masking: ours vs token masking vs Hugging Face.

All candidates run in one process on the same 256 x 512 int32 batch
(vocabulary 30522, special ids {0, 101, 102, 103}, mask rate 0.15, a
WordPiece-like word-start table with 25% continuation pieces). Ours run as
`ds.map(layer, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)`, rounds
interleaved, median taken. The peer is Hugging Face's
`DataCollatorForLanguageModeling(whole_word_mask=True)` called on the same
ids, with offsets that give it the same word boundaries (it is a Python
collator, called once per batch as a `DataLoader` does); its row is marked
unavailable when `transformers` and `torch` are not installed
(`pip install -e .[bench]`).

    .venv/bin/python benchmarks/word_masking_throughput.py [--batches 100] [--rounds 3]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dynmask import DynamicMLMMasking  # noqa: E402

BATCH, LENGTH, VOCAB = 256, 512, 30522
SPECIALS = [0, 101, 102, 103]
MASK_ID = 103
CONTINUATION_SHARE = 0.25


def word_start_table():
    table = np.random.default_rng(1).random(VOCAB) >= CONTINUATION_SHARE
    table[SPECIALS] = True
    return table


def batch_ids():
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, VOCAB, size=(BATCH, LENGTH)).astype(np.int32)
    ids[:, 0] = 101
    ids[:, -1] = 102
    return ids


def ours(**kwargs):
    return DynamicMLMMasking(
        vocabulary_size=VOCAB,
        mask_token_id=MASK_ID,
        special_token_ids=SPECIALS,
        word_starts=word_start_table(),
        **kwargs,
    )


def candidates():
    return {
        "ours: token, bernoulli": ours(),
        "ours: token, exact": ours(selection="exact"),
        "ours: word, bernoulli": ours(granularity="word"),
        "ours: word, exact": ours(granularity="word", selection="exact"),
        "ours: span (SpanBERT)": ours(granularity="span"),
        "ours: word, masked_lm, max_predictions=96": ours(
            granularity="word", output_mode="masked_lm", max_predictions=96
        ),
    }


def tokens_per_second(fn, ids, batches):
    ds = (
        tf.data.Dataset.from_tensors(ids)
        .repeat(batches + 2)
        .map(fn, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    iterator = iter(ds)
    next(iterator), next(iterator)
    start = time.perf_counter()
    count = sum(1 for _ in iterator)
    return count * BATCH * LENGTH / (time.perf_counter() - start)


def hugging_face_peer(ids, table):
    """A callable masking `ids` with HF's whole-word collator, or a reason why not."""
    try:
        import transformers
    except ImportError as error:
        return None, f"transformers/torch not installed ({error.name})"
    vocab = [f"[unused{i}]" for i in range(VOCAB)]
    vocab[0], vocab[100], vocab[101], vocab[102], vocab[103] = (
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    )
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "vocab.txt")
    with open(path, "w") as file:
        file.write("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=path)
    special = np.isin(ids, SPECIALS)
    starts = table[ids] | special
    # Offsets: a piece continuing a word begins where the previous one ends.
    begin = np.cumsum(1 + starts, axis=1)
    offsets = np.stack([begin, begin + 1], axis=-1)
    offsets[:, 1:, 0] = np.where(starts[:, 1:], offsets[:, 1:, 0], offsets[:, :-1, 1])
    features = [
        {
            "input_ids": ids[b].tolist(),
            "special_tokens_mask": special[b].astype(int).tolist(),
            "offset_mapping": offsets[b].tolist(),
        }
        for b in range(ids.shape[0])
    ]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collator = transformers.DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=0.15, whole_word_mask=True, return_tensors="pt"
        )
    return (lambda: collator(features)), None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer-batches", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="8 x 64 ids, one round: checks it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        global BATCH, LENGTH
        BATCH, LENGTH = 8, 64
        args.batches, args.rounds, args.peer_batches = 2, 1, 1
    ids = batch_ids()
    found = candidates()
    peer, reason = hugging_face_peer(ids, word_start_table())
    rates = {name: [] for name in found}
    peer_rates = []
    for _ in range(args.rounds):
        for name, fn in found.items():
            rates[name].append(tokens_per_second(fn, tf.constant(ids), args.batches))
        if peer is not None:
            peer()
            start = time.perf_counter()
            for _ in range(args.peer_batches):
                peer()
            peer_rates.append(args.peer_batches * BATCH * LENGTH / (time.perf_counter() - start))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    token = medians["ours: token, bernoulli"]
    peer_rate = statistics.median(peer_rates) if peer_rates else None
    print(f"| pipeline ({BATCH} x {LENGTH}) | M tokens/s | x token bernoulli | x HF whole-word |")
    print("|---|---:|---:|---:|")
    for name, rate in medians.items():
        versus = f"{rate / peer_rate:.0f}" if peer_rate else "n/a"
        print(f"| {name} | {rate / 1e6:.1f} | {rate / token:.2f} | {versus} |")
    if peer_rate:
        print(
            f"| peer: HF DataCollatorForLanguageModeling(whole_word_mask=True) | "
            f"{peer_rate / 1e6:.2f} | {peer_rate / token:.4f} | 1 |"
        )
    else:
        print(f"| peer: HF whole-word collator | unavailable: {reason} | | |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
