"""Pre-train a small BERT-style masked LM with dynamic masking; export it.

The whole job, raw text to a served model:

1. a corpus (default: the Python standard library's docstrings, no
   download; or `--text-files GLOB`, or `--tfds NAME`), split train /
   validation;
2. a WordPiece vocabulary learned from the training split, and an in-graph
   tokenizer (`keras_dynmask.text.WordPieceTokenizer`);
3. a `tf.data` pipeline: tokenize, pack passages into fixed-length
   sequences, and mask every batch afresh with `DynamicMLMMasking`
   (`keras_dynmask.data.mask_dataset`: different masks each epoch,
   reproducible with `--seed`);
4. a small Transformer encoder (plain Keras layers, attention masked with
   `PaddingMask`) trained with `model.fit`, the loss taken at the masked
   positions only; held-out loss and accuracy on a fixed masking of the
   validation split;
5. a SavedModel in TF Serving's layout, `<output>/<version>/`, whose
   signatures take raw strings:
   - `serving_default`: text with `[MASK]`s -> the top-k tokens and their
     probabilities at each `[MASK]`;
   - `mask`: text (and an optional seed) -> dynamically masked ids, labels
     and the selection, for pipelines outside Python;
6. beside it, `<output>_ids/<version>/`, the same model and masking taking
   token ids (`examples/id_level_export.py`): core TensorFlow ops only, so
   any TensorFlow or TF Serving build loads it.

The text export loads with plain TensorFlow (`tf.saved_model.load`, after
`import tensorflow_text` for its ops), the id-level one with TensorFlow
alone; `keras_dynmask` is not needed.

Run: `python examples/pretrain_mlm.py [--epochs N] [--seed S]
[--text-files GLOB | --tfds NAME] [--output DIR] [--granularity token|word|span]`
(`word`: whole-word masking, `span`: SpanBERT's spans of whole words, word
boundaries from the WordPiece vocabulary's `##` pieces).
"""

import math
import os
import sys

import keras
import tensorflow as tf

from keras_dynmask import DynamicMLMMasking
from keras_dynmask import PaddingMask
from keras_dynmask import word_starts
from keras_dynmask.data import mask_dataset
from keras_dynmask.kernels.seeds import keyed_seed

import example_common
import id_level_export
import transformer_blocks

DEFAULT_OUTPUT = os.path.join(example_common.REPOSITORY_ROOT, "saved_models", "mlm_encoder")
IGNORE_INDEX = -100


def parse_args(argv=None):
    """Command-line flags; the defaults are the `make demo` job.

    Args:
        argv: list of str, or `None` for `sys.argv[1:]`.

    Returns:
        An `argparse.Namespace`.
    """
    parser = example_common.new_parser(__doc__.split("\n\n")[0])
    # `make demo`'s job, sized to train in about 3 minutes on 2 CPU cores:
    # rows of 64 tokens, 64 a batch, a 2,000-piece vocabulary and a
    # feed-forward width of 256 learn more per CPU-second here than the
    # earlier rows of 128, 32 a batch, 4,000 pieces and 512. On the held-out
    # fill-mask queries of `demo.pick_queries`' rule, 10 epochs of these
    # (the whole demo: 296 CPU-seconds) put the hidden word first for 12 of
    # 255 and in the top 5 for 35; 18 epochs of those (597 CPU-seconds) did
    # for 9 of 241 and 20 (2026-12-06).
    example_common.add_training_job_flags(
        parser, epochs=10, output=DEFAULT_OUTPUT, sequence_length=64,
        vocabulary_size=2000, batch_size=64, intermediate_dim=256,
    )
    parser.add_argument("--mask-rate", type=float, default=0.15)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument(
        "--granularity", choices=("token", "word", "span"), default="token",
        help="mask tokens, whole words, or SpanBERT spans of whole words",
    )
    return example_common.parse_and_check(
        parser, argv, ("epochs", "vocabulary_size", "batch_size", "top_k", "version")
    )


# Data.


def packed_dataset(
    texts, tokenizer, sequence_length, batch_size, shuffle_seed=None, drop_remainder=True
):
    """Raw passages -> batches of packed `[CLS] ... [SEP]` token ids.

    Passages are tokenized in-graph, joined by `[SEP]`, and cut into rows of
    `sequence_length` ids (RoBERTa's "full sentences" packing: no padding,
    no wasted compute). With `shuffle_seed` the passages are reshuffled on
    every pass, so every epoch packs them differently.

    Args:
        texts: a `tf.data.Dataset` of scalar strings.
        tokenizer: a `WordPieceTokenizer`.
        sequence_length: int, ids per row.
        batch_size: int, rows per batch.
        shuffle_seed: `None` (keep order) or int.
        drop_remainder: whether to drop the last, smaller batch.

    Returns:
        `(dataset, steps)`: a `tf.data.Dataset` of int32 `[B,
        sequence_length]` batches and the number of batches in one pass.
    """
    texts = example_common.shuffle_passages(texts, shuffle_seed)
    sep = tokenizer.sep_id

    def tokenize(batch):
        ids = tokenizer.tokenize(batch)
        ids = tf.concat([ids, tf.fill([ids.nrows(), 1], sep)], axis=1)
        return ids.flat_values

    stream = texts.batch(1024).map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
    total = sum(int(tf.size(ids)) for ids in stream)
    body = sequence_length - 2
    rows = total // body
    steps = rows // batch_size if drop_remainder else -(-rows // batch_size)
    if steps < 1:
        raise ValueError(
            f"Too little text: {total} tokens make {rows} rows of "
            f"{sequence_length}, fewer than one batch of {batch_size} "
            "(lower --batch-size or --sequence-length, or add text)"
        )

    def frame(rows):
        count = tf.shape(rows)[0]
        return tf.concat(
            [
                tf.fill([count, 1], tokenizer.cls_id),
                rows,
                tf.fill([count, 1], tokenizer.sep_id),
            ],
            axis=1,
        )

    ds = (
        stream.unbatch()
        .batch(body, drop_remainder=True)
        .batch(batch_size, drop_remainder=drop_remainder)
        .map(frame)
        .apply(tf.data.experimental.assert_cardinality(steps))
    )
    return ds, steps


def max_predictions_for(sequence_length, mask_rate):
    """Masked positions per packed sequence: `ceil(mask_rate * (T - 2))`."""
    return max(1, math.ceil(mask_rate * (sequence_length - 2)))


def make_masker(
    tokenizer, mask_rate=0.15, output_mode="fit", seed=None, max_predictions=None,
    granularity="token",
):
    """The `DynamicMLMMasking` layer for this tokenizer's ids.

    `[CLS]`, `[SEP]` and `[UNK]` are never selected nor drawn as random
    replacements; `[PAD]` is padding. With `max_predictions` the selection
    is `"exact"` (`round(mask_rate * eligible)` tokens per sequence) and the
    `"dict"` output lists their positions (keras-hub's `mask_positions`,
    `mask_ids`, `mask_weights`), which `build_mlm_model` predicts at;
    without it, independent (`"bernoulli"`) draws.

    Args:
        tokenizer: a `WordPieceTokenizer`.
        mask_rate: float, share of tokens selected.
        output_mode: `"fit"` or `"dict"`.
        seed: `None` or int, the layer's constructor seed.
        max_predictions: `None` or int (see `max_predictions_for`).
        granularity: `"token"`, `"word"` or `"span"`; word boundaries come
            from the vocabulary's `##` continuation pieces.

    Returns:
        A `DynamicMLMMasking`.
    """
    return DynamicMLMMasking(
        vocabulary_size=tokenizer.vocabulary_size,
        mask_token_id=tokenizer.mask_id,
        mask_rate=mask_rate,
        special_token_ids=[tokenizer.cls_id, tokenizer.sep_id, tokenizer.unk_id],
        pad_token_id=tokenizer.pad_id,
        selection="bernoulli" if max_predictions is None else "exact",
        max_predictions=max_predictions,
        output_mode=output_mode,
        ignore_index=IGNORE_INDEX,
        seed=seed,
        granularity=granularity,
        word_starts=None if granularity == "token" else word_starts(tokenizer.vocabulary, "wordpiece"),
    )


def fixed_masking(dataset, masker, seed):
    """Masks each batch once with a seed keyed by its index, then caches.

    The held-out batches see the same masks at every evaluation, so the
    validation numbers of successive epochs compare.

    Args:
        dataset: batches of ids.
        masker: from `make_masker`, in `"fit"` mode, or in `"dict"` mode
            with `max_predictions` (for `build_mlm_model`).
        seed: int.

    Returns:
        A cached `tf.data.Dataset` of `(x, y, sample_weight)`.
    """

    def mask(index, ids):
        masked = masker(ids, training=True, seed=keyed_seed(seed, index))
        return for_fit(masked) if masker.output_mode == "dict" else masked

    return dataset.enumerate().map(mask).cache()


# Model.


def build_backbone(
    vocabulary_size,
    sequence_length,
    hidden_dim=128,
    num_layers=2,
    num_heads=4,
    intermediate_dim=512,
    dropout=0.0,
    pad_token_id=0,
):
    """A small BERT-like encoder: ids -> contextual hidden states.

    Padding is kept out of attention by `PaddingMask`, computed from the
    ids of each batch at its own length.

    Args:
        vocabulary_size: int.
        sequence_length: int, the longest input.
        hidden_dim, num_layers, num_heads, intermediate_dim: model size.
        dropout: float.
        pad_token_id: int, ids never attended to.

    Returns:
        A `keras.Model` mapping int32 `[B, T]` ids to float32
        `[B, T, hidden_dim]`.
    """
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    attention_mask = PaddingMask(
        pad_token_id=pad_token_id, output_mode="attention", name="attention_mask"
    )(token_ids)
    x = transformer_blocks.embed(
        token_ids, vocabulary_size, sequence_length, hidden_dim, dropout, "embedding"
    )
    x = transformer_blocks.transformer_stack(
        x, attention_mask, num_layers, num_heads, intermediate_dim, dropout
    )
    return keras.Model(token_ids, x, name="encoder")


def build_mlm_head(hidden_dim, vocabulary_size):
    """The masked-LM head: hidden states `[B, P, dim]` -> logits `[B, P, V]`."""
    hidden = keras.Input((None, hidden_dim), name="hidden")
    x = keras.layers.Dense(hidden_dim, activation="gelu", name="mlm_transform")(hidden)
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="mlm_norm")(x)
    logits = keras.layers.Dense(vocabulary_size, name="mlm_logits")(x)
    return keras.Model(hidden, logits, name="mlm_head")


def build_encoder(
    vocabulary_size,
    sequence_length,
    hidden_dim=128,
    num_layers=2,
    num_heads=4,
    intermediate_dim=512,
    dropout=0.0,
    pad_token_id=0,
):
    """Backbone and head in one model with logits at every position.

    For training on `DynamicMLMMasking(output_mode="fit")` batches
    (`compile_encoder`): simpler than `build_mlm_model`, but the vocabulary
    projection runs at all `T` positions, not just the masked ones.

    Args:
        as `build_backbone`.

    Returns:
        A `keras.Model` mapping int32 `[B, T]` ids to logits
        `[B, T, vocabulary_size]`.
    """
    backbone = build_backbone(
        vocabulary_size,
        sequence_length,
        hidden_dim,
        num_layers,
        num_heads,
        intermediate_dim,
        dropout,
        pad_token_id,
    )
    head = build_mlm_head(hidden_dim, vocabulary_size)
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    return keras.Model(token_ids, head(backbone(token_ids)), name="mlm_encoder")


def build_mlm_model(backbone, head, max_predictions):
    """The pre-training model: logits at the masked positions only.

    It takes what `DynamicMLMMasking(output_mode="dict", max_predictions=P)`
    gives (keras-hub's `mask_positions` convention), so the vocabulary
    projection, the largest matrix product, runs on the `P` masked
    positions of a sequence instead of all `T`.

    Args:
        backbone: from `build_backbone`.
        head: from `build_mlm_head`.
        max_predictions: int, `P`.

    Returns:
        A `keras.Model` taking `{"token_ids": [B, T], "mask_positions":
        [B, P]}` and returning logits `[B, P, vocabulary_size]`.
    """
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    positions = keras.Input((max_predictions,), dtype="int32", name="mask_positions")
    hidden = transformer_blocks.GatherPositions(name="masked_hidden")(
        backbone(token_ids), positions
    )
    logits = head(hidden)
    return keras.Model(
        {"token_ids": token_ids, "mask_positions": positions}, logits, name="mlm"
    )


def for_fit(masked):
    """`DynamicMLMMasking` "dict" output -> `(x, y, sample_weight)`."""
    x = {"token_ids": masked["token_ids"], "mask_positions": masked["mask_positions"]}
    return x, masked["mask_ids"], masked["mask_weights"]


def compile_encoder(model, learning_rate, total_steps):
    """`compile_model` for a `build_encoder` model (the same recipe)."""
    compile_model(model, learning_rate, total_steps)


def compile_model(model, learning_rate, total_steps):
    """AdamW with warm-up and cosine decay; loss at the masked positions.

    `reduction="mean_with_sample_weight"` divides by the number of masked
    tokens (padding predictions weigh 0), so the loss is the mean
    cross-entropy per masked token (`example_common.compile_language_model`).

    Args:
        model: from `build_mlm_model` or `build_encoder`.
        learning_rate: float, the peak learning rate.
        total_steps: int, training steps of the whole run.
    """
    example_common.compile_language_model(model, learning_rate, total_steps)


# Serving.


def fill_mask(backbone, head, tokenizer, texts, top_k):
    """Top-k predictions at each `[MASK]`: the graph the export serves.

    Args:
        backbone: the trained encoder (ids -> hidden states).
        head: the trained masked-LM head.
        tokenizer: a `WordPieceTokenizer`.
        texts: `tf.string` `[B]`.
        top_k: int.

    Returns:
        A dict: `"tokens"` string `[B, M, k]`, `"scores"` float32
        probabilities `[B, M, k]`, `"token_ids"` int32 `[B, M, k]`,
        `"mask_positions"` int32 `[B, M]` (index in the tokenized text,
        -1 where a text has fewer than `M` masks), `"num_masks"` int32
        `[B]`, `"filled"` string `[B]` (the text with each `[MASK]` replaced
        by its top prediction, as wordpieces joined back into words). `M` is
        the largest number of `[MASK]`s in a text of the batch; texts
        longer than the model's `sequence_length` are truncated.
    """
    ids = tokenizer(texts, pad_to_sequence_length=False)
    hidden = backbone(ids, training=False)
    is_mask = tf.equal(ids, tokenizer.mask_id)
    where = tf.where(is_mask)  # [K, 2]: rows ascending, then positions.
    logits = head(tf.gather_nd(hidden, where)[None], training=False)[0]
    probabilities = tf.nn.softmax(logits, axis=-1)
    scores, top_ids = tf.math.top_k(probabilities, k=top_k)
    row = where[:, 0]
    rows = tf.shape(ids, out_type=tf.int64)[0]

    def per_text(values, default):
        ragged = tf.RaggedTensor.from_value_rowids(values, row, nrows=rows)
        return ragged.to_tensor(default_value=default)

    best = tf.tensor_scatter_nd_update(ids, where, top_ids[:, 0])
    return {
        "tokens": per_text(tokenizer.id_to_token(top_ids), ""),
        "scores": per_text(scores, 0.0),
        "token_ids": per_text(top_ids, -1),
        "mask_positions": per_text(tf.cast(where[:, 1], tf.int32), -1),
        "num_masks": tf.reduce_sum(tf.cast(is_mask, tf.int32), axis=1),
        "filled": tokenizer.detokenize(best),
    }


def serve_mask(masker, tokenizer, texts, seed):
    """The `mask` signature: tokenize, then mask dynamically.

    Args:
        masker: a `DynamicMLMMasking` in `"dict"` mode.
        tokenizer: a `WordPieceTokenizer`.
        texts: `tf.string` `[B]`.
        seed: int64 `[0]` (fresh masks on every call) or `[2]` (masks a pure
            function of the texts and the seed).

    Returns:
        A dict of `[B, T]` tensors: `"token_ids"` (masked ids), `"labels"`
        (the original id where selected, -100 elsewhere), `"mask"` (bool
        selection) and `"padding_mask"` (bool, True at real tokens); and of
        `[B, P]` tensors in keras-hub's layout: `"mask_positions"`,
        `"mask_ids"`, `"mask_weights"`.
    """
    ids = tokenizer(texts, pad_to_sequence_length=False)
    return id_level_export.mlm_mask(masker, ids, seed, tokenizer.pad_id)


def export_for_serving(backbone, head, tokenizer, masker, directory, top_k=5):
    """Writes the SavedModel with the `serving_default` and `mask` signatures.

    The SavedModel is written to a temporary folder beside `directory` and
    moved into place when complete, so `directory` never holds a partial
    export (TF Serving watches these folders). The vocabulary is written to
    `assets.extra/vocab.txt` for clients that want to decode ids
    (`example_common.write_saved_model`).

    Args:
        backbone: the trained encoder.
        head: the trained masked-LM head.
        tokenizer: its `WordPieceTokenizer`.
        masker: from `make_masker`.
        directory: the version folder, e.g. `saved_models/mlm_encoder/1`.
        top_k: int, predictions per `[MASK]`.

    Returns:
        `directory`.
    """
    archive = keras.export.ExportArchive()
    archive.track(backbone)
    archive.track(head)
    archive.track(masker)
    archive.add_endpoint(
        "serving_default",
        lambda text: fill_mask(backbone, head, tokenizer, text, top_k),
        input_signature=example_common.TEXT_SIGNATURE,
    )

    def mask(text, seed=tf.constant([], tf.int64)):
        return serve_mask(masker, tokenizer, text, seed)

    archive.add_endpoint(
        "mask", mask, input_signature=example_common.TEXT_AND_SEED_SIGNATURE
    )
    return example_common.write_saved_model(archive, tokenizer, directory)


# The job.


def load(args):
    """The corpus the flags name (raises before anything is written).

    Args:
        args: the `parse_args()` namespace.

    Returns:
        A `Corpus` of passages of at most `sequence_length // 2` words.
    """
    return example_common.load_corpus_from_flags(args, args.sequence_length // 2)


def run(args, corpus=None, stopwatch=None):
    """Loads, trains, evaluates and exports; returns what it made.

    Args:
        args: the `parse_args()` namespace.
        corpus: a `Corpus`, or `None` to load the one `args` names.
        stopwatch: `None`, or an `example_common.Stopwatch` that times the
            phases (the caller's, to time its own phases in the same
            summary).

    Returns:
        A dict with `"model"` (the pre-training model), `"backbone"`,
        `"head"`, `"tokenizer"`, `"history"`, `"evaluation"`
        (held-out loss, accuracy and perplexity), `"validation"` (the
        held-out `(x, y, sample_weight)` batches they were measured on),
        `"export_dir"` (the text export), `"ids_export_dir"` (the id-level
        one), `"stopwatch"` and `"seconds"` (wall seconds per phase).
    """
    stopwatch = stopwatch or example_common.Stopwatch()
    keras.utils.set_random_seed(args.seed)
    with stopwatch.phase("corpus"):
        # Everything is read and checked before anything is written.
        corpus = corpus or load(args)
        print(corpus)

    with stopwatch.phase("vocabulary"):
        tokenizer = example_common.learn_tokenizer(
            corpus, args.vocabulary_size, args.sequence_length
        )
    with stopwatch.phase("tokenize and pack", "Tokenizing and packing the passages..."):
        train_ids, steps = packed_dataset(
            corpus.dataset("train"),
            tokenizer,
            args.sequence_length,
            args.batch_size,
            shuffle_seed=args.seed,
        )
        validation_ids, validation_steps = packed_dataset(
            corpus.dataset("validation"),
            tokenizer,
            args.sequence_length,
            args.batch_size,
            drop_remainder=False,
        )

    max_predictions = max_predictions_for(args.sequence_length, args.mask_rate)
    masker = make_masker(
        tokenizer, args.mask_rate, "dict", max_predictions=max_predictions,
        granularity=args.granularity,
    )
    train, steps = example_common.capped_training_data(
        mask_dataset(train_ids, masker, seed=args.seed).map(for_fit),
        steps,
        args.steps_per_epoch,
    )
    validation = fixed_masking(validation_ids, masker, args.seed + 1).prefetch(
        tf.data.AUTOTUNE
    )

    backbone = build_backbone(
        tokenizer.vocabulary_size,
        args.sequence_length,
        pad_token_id=tokenizer.pad_id,
        **example_common.model_size(args),
    )
    head = build_mlm_head(args.hidden_dim, tokenizer.vocabulary_size)
    model = build_mlm_model(backbone, head, masker.max_predictions)
    compile_model(model, args.learning_rate, steps * args.epochs)
    print(
        f"Encoder: {model.count_params():,} parameters; {steps} steps of "
        f"{args.batch_size}x{args.sequence_length} tokens per epoch "
        f"({masker.max_predictions} masked per sequence), "
        f"{validation_steps} held-out batches; training {args.epochs} epochs...",
        flush=True,
    )
    with stopwatch.phase("train"):
        history, _ = example_common.timed_fit(
            model,
            train,
            validation,
            args.epochs,
            example_common.verbosity(args),
            shuffle=False,  # The pipeline shuffles the passages itself.
        )

    with stopwatch.phase("evaluate"):
        evaluation = example_common.evaluate(model, validation)
    print(
        "Held-out masked LM (fixed masking): loss {loss:.3f}, accuracy "
        "{accuracy:.3f}, perplexity {perplexity:.1f}".format(**evaluation)
    )

    served_masker = make_masker(
        tokenizer, args.mask_rate, "dict", max_predictions=max_predictions,
        granularity=args.granularity,
    )
    with stopwatch.phase("export", "Exporting the text SavedModel..."):
        export_dir = export_for_serving(
            backbone,
            head,
            tokenizer,
            served_masker,
            os.path.join(args.output, str(args.version)),
            args.top_k,
        )
    print(f"Exported the SavedModel to {export_dir}")
    with stopwatch.phase("export", "Exporting the id-level SavedModel..."):
        ids_export_dir = id_level_export.export_mlm_ids(
            backbone,
            head,
            served_masker,
            tokenizer,
            id_level_export.ids_export_dir(args.output, args.version),
            args.top_k,
        )
    print(f"Exported the id-level SavedModel (core TensorFlow ops only) to {ids_export_dir}")
    return {
        "model": model,
        "backbone": backbone,
        "head": head,
        "tokenizer": tokenizer,
        "history": history.history,
        "evaluation": evaluation,
        "validation": validation,
        "export_dir": export_dir,
        "ids_export_dir": ids_export_dir,
        "stopwatch": stopwatch,
        "seconds": stopwatch.wall_seconds(),
    }


def main(argv=None):
    """Pre-trains and exports as `argv` asks; returns 0, or 2 on a bad corpus."""
    return example_common.run_from_command_line(parse_args(argv), load, run)


if __name__ == "__main__":
    sys.exit(main())
