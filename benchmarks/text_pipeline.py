"""Raw text -> masked batch: M non-pad tokens/s of four pipelines, one process.

All four read the same passages (the Python standard library's docstrings by
default, `--text-files` for any other), 64 texts a batch, 128 tokens, with
the same WordPiece vocabulary (about 8,000 pieces, learned once by
`WordPieceTokenizer.learn`), and mask 15% with BERT's 80/10/10:

- keras-hub `WordPieceTokenizer` + `StartEndPacker` + `MaskedLMMaskGenerator`;
- ours: `keras_dynmask.text.WordPieceTokenizer` + `DynamicMLMMasking("fit")`;
- tensorflow-text `FastBertTokenizer` + our `DynamicMLMMasking("fit")`;
- Hugging Face `tokenizers` `BertWordPieceTokenizer` (the Rust tokenizer
  behind `BertTokenizerFast`) + a NumPy 80/10/10 collator of
  `DataCollatorForLanguageModeling`'s behaviour, batch by batch in Python.

The tf.data pipelines use AUTOTUNE; rounds are interleaved and the range
over rounds printed, as a Markdown table, then ours over each peer round
by round.

    .venv/bin/python benchmarks/text_pipeline.py [--rounds 3] [--batches 120]
        [--text-files 'GLOB'] [--smoke]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text as tf_text  # noqa: E402

from keras_dynmask import DynamicMLMMasking  # noqa: E402
from keras_dynmask.text import WordPieceTokenizer  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
from corpora import load_corpus  # noqa: E402

BATCH, LENGTH = 64, 128
HUB_SPECIAL_TOKENS = False


def ours_masking(tokenizer):
    return DynamicMLMMasking(
        vocabulary_size=tokenizer.vocabulary_size,
        mask_token_id=tokenizer.mask_id,
        special_token_ids=tokenizer.special_token_ids,
        pad_token_id=tokenizer.pad_id,
        output_mode="fit",
    )


def tf_pipelines(tokenizer, texts):
    """name -> a function of nothing returning the dataset of `x` batches."""
    source = tf.data.Dataset.from_tensor_slices(tf.constant(texts)).batch(BATCH).cache()
    masking = ours_masking(tokenizer)
    fast = tf_text.FastBertTokenizer(
        vocab=tokenizer.vocabulary, token_out_type=tf.int32,
        lower_case_nfd_strip_accents=True,
    )

    def fast_bert(batch):
        ids = fast.tokenize(batch)[:, : LENGTH - 2]
        rows = ids.nrows()
        ids = tf.concat([tf.fill([rows, 1], tokenizer.cls_id), ids,
                         tf.fill([rows, 1], tokenizer.sep_id)], axis=1)
        return masking(ids.to_tensor(tokenizer.pad_id, shape=[None, LENGTH]))[0]

    pipelines = {
        "ours: `WordPieceTokenizer` + `DynamicMLMMasking`":
            lambda batch: masking(tokenizer(batch))[0],
        "tensorflow-text `FastBertTokenizer` + our `DynamicMLMMasking`": fast_bert,
    }
    try:
        import keras_hub

        # keras-hub's defaults (as a new user runs it): `[MASK]` written in
        # text is not kept whole, which ours does; that costs keras-hub a
        # further split (`--keras-hub-special-tokens` measures it).
        hub_tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=tokenizer.vocabulary, lowercase=True, strip_accents=True,
            **({"special_tokens": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                "special_tokens_in_strings": True} if HUB_SPECIAL_TOKENS else {}),
        )
        packer = keras_hub.layers.StartEndPacker(
            sequence_length=LENGTH, start_value=tokenizer.cls_id,
            end_value=tokenizer.sep_id, pad_value=tokenizer.pad_id,
        )
        generator = keras_hub.layers.MaskedLMMaskGenerator(
            vocabulary_size=tokenizer.vocabulary_size, mask_selection_rate=0.15,
            mask_token_id=tokenizer.mask_id, mask_selection_length=24,
            unselectable_token_ids=tokenizer.special_token_ids,
        )
        pipelines["keras-hub `WordPieceTokenizer` + `StartEndPacker` + "
                  "`MaskedLMMaskGenerator`"] = (
            lambda batch: generator(packer(hub_tokenizer(batch)))["token_ids"])
    except ImportError:
        print("keras-hub not installed: its row is left out")
    datasets = {
        name: source.map(fn, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
            tf.data.AUTOTUNE)
        for name, fn in pipelines.items()
    }
    # Traced once; each round iterates the same dataset again.
    return {name: (lambda d=d: d) for name, d in datasets.items()}


def hugging_face_pipeline(tokenizer, texts):
    """A function of nothing returning an iterator of NumPy masked batches."""
    from tokenizers import BertWordPieceTokenizer

    hf = BertWordPieceTokenizer(
        {t: i for i, t in enumerate(tokenizer.vocabulary)}, lowercase=True,
        strip_accents=True,
    )
    hf.enable_truncation(LENGTH)
    hf.enable_padding(length=LENGTH, pad_id=tokenizer.pad_id)
    special = np.zeros(tokenizer.vocabulary_size, bool)
    special[tokenizer.special_token_ids] = True
    rng = np.random.default_rng(0)

    def batches():
        for start in range(0, len(texts), BATCH):
            ids = np.array([e.ids for e in hf.encode_batch(texts[start : start + BATCH])],
                           np.int64)
            selected = (rng.random(ids.shape) < 0.15) & ~special[ids]
            draw = rng.random(ids.shape)
            ids = np.where(selected & (draw < 0.8), tokenizer.mask_id, ids)
            random_ids = rng.integers(len(tokenizer.special_token_ids), tokenizer.vocabulary_size, ids.shape)
            yield np.where(selected & (draw >= 0.8) & (draw < 0.9), random_ids, ids)

    return batches


def measure(make, pad_id):
    start, tokens = time.perf_counter(), 0
    for x in make():
        tokens += int(np.count_nonzero(np.asarray(x) != pad_id))
    return tokens / (time.perf_counter() - start) / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=120)
    parser.add_argument("--text-files", default=None)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for CI")
    parser.add_argument("--keras-hub-special-tokens", action="store_true",
                        help="keras-hub keeps [MASK] in text whole, as ours does")
    args = parser.parse_args()
    global HUB_SPECIAL_TOKENS
    HUB_SPECIAL_TOKENS = args.keras_hub_special_tokens
    rounds, batches = (1, 4) if args.smoke else (args.rounds, args.batches)
    corpus = load_corpus(text_files=args.text_files)
    learn_on = corpus.train[:600] if args.smoke else corpus.train
    # The smoke run learns in one refinement pass, not the learner's default four.
    learn_kwargs = {"num_iterations": 1} if args.smoke else {}
    tokenizer = WordPieceTokenizer.learn(learn_on, vocabulary_size=8000,
                                         sequence_length=LENGTH, **learn_kwargs)
    texts = list(corpus.train[: batches * BATCH])
    makes = tf_pipelines(tokenizer, texts)
    try:
        makes["Hugging Face `tokenizers` `BertWordPieceTokenizer` + NumPy "
              "80/10/10 collator"] = hugging_face_pipeline(tokenizer, texts)
    except ImportError:
        print("tokenizers not installed: its row is left out")
    for make in makes.values():  # warm-up: tracing and the cache
        measure(make, tokenizer.pad_id)
    results = {name: [] for name in makes}
    for _ in range(rounds):
        for name, make in makes.items():
            results[name].append(measure(make, tokenizer.pad_id))
    print(f"\n{corpus.name}, vocabulary {tokenizer.vocabulary_size}, "
          f"{len(texts)} texts, {rounds} rounds\n")
    print("| raw text -> masked batch | M tokens/s (non-pad) |\n|---|---:|")
    for name, values in results.items():
        print(f"| {name} | {min(values):.2f}-{max(values):.2f} |")
    # Same-round ratios: both sides of each share the machine's state.
    ours, *peers = results
    for peer in peers:
        ratios = [a / b for a, b in zip(results[ours], results[peer])]
        print(f"\nours / {peer.split(' + ')[0]}, each round: "
              + ", ".join(f"{r:.2f}x" for r in ratios))


if __name__ == "__main__":
    main()
