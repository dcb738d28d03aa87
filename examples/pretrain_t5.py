"""Pre-train a tiny T5-style encoder-decoder with span corruption; export it.

The whole job, raw text to a served model:

1. a corpus (default: the Python standard library's docstrings, no
   download; or `--text-files GLOB`, or `--tfds NAME`), split train /
   validation, and a WordPiece vocabulary learned from the training split;
2. a `tf.data` pipeline: tokenize, pack the passages into rows of the raw
   length whose corrupted inputs fill `--sequence-length`
   (`SpanCorruption.lengths_for`, T5's `random_spans_helper`), and corrupt
   every batch afresh with `SpanCorruption` (sentinels are the ids just
   above the WordPiece vocabulary, T5's extra ids);
3. a small encoder-decoder of plain Keras layers (encoder attention masked
   by `PaddingMask`, decoder self-attention by `CausalMask`, cross-attention
   by the encoder's padding) trained with `model.fit` on the targets,
   teacher-forced; held-out loss and accuracy on a fixed corruption of the
   validation split;
4. a SavedModel in TF Serving's layout, `<output>/<version>/`, whose
   `serving_default` takes raw text with `<extra_id_N>` markers and fills
   each marked span by greedy decoding: `"filled"` (the text with each
   marker replaced by `[predicted words]`) and `"predicted_ids"`.

The export loads with plain TensorFlow (`tf.saved_model.load`, after
`import tensorflow_text` for its ops); `keras_dynmask` is not needed.

Run: `python examples/pretrain_t5.py [--epochs N] [--seed S]
[--text-files GLOB | --tfds NAME] [--output DIR]`.
"""

import os
import sys
import time

import keras
import tensorflow as tf

from keras_dynmask import CausalMask
from keras_dynmask import PaddingMask
from keras_dynmask import SpanCorruption
from keras_dynmask.data import mask_dataset
from keras_dynmask.kernels import noise_spans
from keras_dynmask.kernels.seeds import keyed_seed

import example_common
import transformer_blocks

DEFAULT_OUTPUT = os.path.join(example_common.REPOSITORY_ROOT, "saved_models", "t5_span_corruption")
# Sentinel markers in served text, T5's spelling.
MARKER = r"<extra_id_\d+>"


def parse_args(argv=None):
    """Command-line flags (the corpus and model flags of `pretrain_mlm.py`).

    Args:
        argv: list of str, or `None` for `sys.argv[1:]`.

    Returns:
        An `argparse.Namespace`.
    """
    parser = example_common.new_parser(__doc__.split("\n\n")[0])
    example_common.add_training_job_flags(
        parser, epochs=6, output=DEFAULT_OUTPUT, sequence_length=128
    )
    parser.add_argument("--noise-density", type=float, default=0.15)
    parser.add_argument("--mean-noise-span-length", type=float, default=3.0)
    parser.add_argument(
        "--max-decode-length", type=int, default=24,
        help="target tokens the served model generates at most (<= the targets' length)",
    )
    return example_common.parse_and_check(
        parser, argv, ("epochs", "vocabulary_size", "batch_size", "version", "max_decode_length")
    )


# Data.


def make_corrupter(tokenizer, args, seed=None):
    """The `SpanCorruption` of the job: its sentinels lie above the vocabulary.

    Returns:
        A `SpanCorruption` with fixed `inputs_length = sequence_length` and
        the targets' length T5's helper gives for it, eos `[SEP]`.
    """
    # Raw rows are shorter than twice the inputs: enough sentinels for them.
    _, spans = noise_spans.python_span_counts(
        2 * args.sequence_length, args.noise_density, args.mean_noise_span_length
    )
    num_sentinels = max(1, int(spans))
    probe = SpanCorruption(
        tokenizer.vocabulary_size + num_sentinels,
        noise_density=args.noise_density,
        mean_noise_span_length=args.mean_noise_span_length,
        num_sentinels=num_sentinels,
        eos_id=tokenizer.sep_id,
        pad_token_id=tokenizer.pad_id,
    )
    _, targets_length = probe.lengths_for(args.sequence_length)
    return SpanCorruption(
        tokenizer.vocabulary_size + num_sentinels,
        noise_density=args.noise_density,
        mean_noise_span_length=args.mean_noise_span_length,
        num_sentinels=num_sentinels,
        eos_id=tokenizer.sep_id,
        pad_token_id=tokenizer.pad_id,
        inputs_length=args.sequence_length,
        targets_length=targets_length,
        seed=seed,
    )


def packed_rows(texts, tokenizer, raw_length, batch_size, shuffle_seed=None):
    """Passages -> batches of `raw_length` ids, passages joined by `[SEP]`.

    Returns:
        `(dataset, steps)`: int32 `[B, raw_length]` batches (the last,
        smaller one kept) and their number.
    """
    texts = example_common.shuffle_passages(texts, shuffle_seed)

    def tokenize(batch):
        ids = tokenizer.tokenize(batch)
        return tf.concat([ids, tf.fill([ids.nrows(), 1], tokenizer.sep_id)], axis=1).flat_values

    stream = texts.batch(1024).map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
    rows = sum(int(tf.size(ids)) for ids in stream) // raw_length
    if rows < 1:
        raise ValueError(f"Too little text for one row of {raw_length} tokens")
    steps = -(-rows // batch_size)
    ds = stream.unbatch().batch(raw_length, drop_remainder=True).batch(batch_size)
    return ds.apply(tf.data.experimental.assert_cardinality(steps)), steps


def for_fit(pair, start_id, pad_id):
    """`{"inputs", "targets"}` -> `(x, y, sample_weight)`, teacher forcing."""
    targets = pair["targets"]
    decoder_ids = tf.concat(
        [tf.fill([tf.shape(targets)[0], 1], tf.cast(start_id, targets.dtype)), targets[:, :-1]], 1
    )
    weights = tf.cast(tf.not_equal(targets, pad_id), tf.float32)
    return {"encoder_ids": pair["inputs"], "decoder_ids": decoder_ids}, targets, weights


# Model.


def decoder_block(x, encoded, encoder_padding, self_mask, args, name):
    """Causal self-attention, cross-attention to the encoder, then an MLP."""
    dim = x.shape[-1]
    h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"{name}_self_norm")(x)
    h = keras.layers.MultiHeadAttention(
        args.num_heads, dim // args.num_heads, dropout=args.dropout, name=f"{name}_self"
    )(h, h, attention_mask=self_mask)
    x = keras.layers.Add(name=f"{name}_self_residual")([x, h])
    h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"{name}_cross_norm")(x)
    h = keras.layers.MultiHeadAttention(
        args.num_heads, dim // args.num_heads, dropout=args.dropout, name=f"{name}_cross"
    )(h, encoded, value_mask=encoder_padding)
    x = keras.layers.Add(name=f"{name}_cross_residual")([x, h])
    h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"{name}_mlp_norm")(x)
    h = keras.layers.Dense(args.intermediate_dim, activation="gelu", name=f"{name}_mlp_in")(h)
    h = keras.layers.Dense(dim, name=f"{name}_mlp_out")(h)
    return keras.layers.Add(name=f"{name}_mlp_residual")([x, h])


def build_encoder_decoder(vocabulary_size, inputs_length, targets_length, pad_id, args):
    """A tiny T5-like encoder-decoder: encoder and decoder ids -> logits.

    Returns:
        A `keras.Model` taking int32 `"encoder_ids"` `[B, S]` and
        `"decoder_ids"` `[B, T]`, returning logits `[B, T, vocabulary_size]`.
    """
    encoder_ids = keras.Input((None,), dtype="int32", name="encoder_ids")
    decoder_ids = keras.Input((None,), dtype="int32", name="decoder_ids")
    encoder_padding = PaddingMask(pad_token_id=pad_id, name="encoder_padding")(encoder_ids)
    encoder_attention = PaddingMask(
        pad_token_id=pad_id, output_mode="attention", name="encoder_attention"
    )(encoder_ids)
    x = transformer_blocks.embed(
        encoder_ids, vocabulary_size, inputs_length, args.hidden_dim, args.dropout, "encoder"
    )
    for i in range(args.num_layers):
        x = transformer_blocks.transformer_block(
            x, encoder_attention, args.num_heads, args.intermediate_dim, args.dropout,
            f"encoder_{i}",
        )
    encoded = keras.layers.LayerNormalization(epsilon=1e-5, name="encoder_final_norm")(x)
    decoder_padding = PaddingMask(pad_token_id=pad_id, name="decoder_padding")(decoder_ids)
    self_mask = CausalMask(name="decoder_causal")(decoder_ids, padding_mask=decoder_padding)
    y = transformer_blocks.embed(
        decoder_ids, vocabulary_size, targets_length, args.hidden_dim, args.dropout, "decoder"
    )
    for i in range(args.num_layers):
        y = decoder_block(y, encoded, encoder_padding, self_mask, args, f"decoder_{i}")
    y = keras.layers.LayerNormalization(epsilon=1e-5, name="decoder_final_norm")(y)
    logits = keras.layers.Dense(vocabulary_size, name="logits")(y)
    return keras.Model(
        {"encoder_ids": encoder_ids, "decoder_ids": decoder_ids}, logits, name="t5_tiny"
    )


# Serving.


def encode_marked_text(tokenizer, texts, sentinel_ids, eos_id, inputs_length):
    """Texts with `<extra_id_N>` markers -> encoder ids, the markers as sentinels.

    Returns:
        `(encoder_ids, pieces)`: int32 `[B, S]` (padded with the pad id), and
        the text pieces between markers, ragged `[B, (P)]`.
    """
    pieces = tf.strings.split(tf.strings.regex_replace(texts, MARKER, "\x1f"), "\x1f")
    piece_ids = tokenizer.tokenize(pieces.flat_values)
    rows = pieces.value_rowids()
    index = tf.range(tf.size(rows, tf.int64)) - tf.gather(pieces.row_starts(), rows)
    sentinels = tf.gather(tf.constant(sentinel_ids, tf.int32), tf.maximum(index - 1, 0))
    before = tf.RaggedTensor.from_row_lengths(
        tf.boolean_mask(sentinels, index > 0), tf.cast(index > 0, tf.int64)
    )
    ids = tf.RaggedTensor.from_row_lengths(
        tf.concat([before, piece_ids], axis=1), pieces.row_lengths()
    ).merge_dims(1, 2)[:, : inputs_length - 1]
    ids = tf.concat([ids, tf.fill([ids.nrows(), 1], eos_id)], axis=1)
    return ids.to_tensor(tokenizer.pad_id), pieces


def greedy_decode(model, encoder_ids, start_id, max_length):
    """`max_length` tokens decoded greedily, int32 `[B, max_length]`."""
    batch = tf.shape(encoder_ids)[0]
    buffer = tf.concat(
        [tf.fill([batch, 1], start_id), tf.zeros([batch, max_length], tf.int32)], 1
    )

    def step(t, buffer):
        logits = model({"encoder_ids": encoder_ids, "decoder_ids": buffer[:, :max_length]})
        chosen = tf.cast(tf.argmax(logits[:, t], axis=-1), tf.int32)
        column = tf.one_hot(t + 1, max_length + 1, dtype=tf.int32)[None, :]
        return t + 1, buffer * (1 - column) + chosen[:, None] * column

    _, buffer = tf.while_loop(lambda t, _: t < max_length, step, (tf.constant(0), buffer))
    return buffer[:, 1:]


def fill_spans(model, tokenizer, texts, sentinel_ids, eos_id, inputs_length, max_length):
    """The `serving_default` computation: each marker filled by the model.

    Returns:
        A dict: `"filled"` (`[B]` strings, each marker replaced by
        `[predicted words]`) and `"predicted_ids"` (int32 `[B, max_length]`,
        the decoded targets: sentinel, span, sentinel, span, ..., eos).
    """
    encoder_ids, pieces = encode_marked_text(
        tokenizer, texts, sentinel_ids, eos_id, inputs_length
    )
    predicted = greedy_decode(model, encoder_ids, tokenizer.cls_id, max_length)
    ended = tf.cumsum(tf.cast(tf.equal(predicted, eos_id), tf.int32), axis=1) > 0
    is_sentinel = tf.reduce_any(predicted[:, :, None] == tf.constant(sentinel_ids), -1)
    span = tf.cumsum(tf.cast(is_sentinel, tf.int32), axis=1) - 1
    markers = tf.maximum(tf.reduce_max(pieces.row_lengths()) - 1, 1)
    # Spans past the batch's most markers fill nothing (a trained model
    # decodes as many spans as it saw in training, whatever the text).
    keep = tf.logical_not(ended | is_sentinel) & (span >= 0)
    keep &= tf.cast(span, tf.int64) < markers
    # One ragged row of predicted ids per (text, marker), as text.
    rows = tf.cast(tf.range(tf.shape(predicted)[0])[:, None] * tf.cast(markers, tf.int32), tf.int64)
    keys = tf.boolean_mask(rows + tf.cast(span, tf.int64), keep)
    order = tf.argsort(keys, stable=True)
    span_ids = tf.RaggedTensor.from_value_rowids(
        tf.gather(tf.boolean_mask(predicted, keep), order),
        tf.gather(keys, order),
        nrows=tf.cast(tf.shape(predicted)[0], tf.int64) * markers,
    )
    span_text = tokenizer.detokenize(span_ids)
    index = tf.range(tf.size(pieces.value_rowids(), tf.int64)) - tf.gather(
        pieces.row_starts(), pieces.value_rowids()
    )
    filling = tf.gather(span_text, pieces.value_rowids() * markers + tf.maximum(index - 1, 0))
    filling = tf.where(index > 0, tf.strings.join(["[", filling, "]"]), "")
    joined = pieces.with_flat_values(tf.strings.join([filling, pieces.flat_values]))
    return {"filled": tf.strings.reduce_join(joined, axis=1), "predicted_ids": predicted}


def export_for_serving(model, tokenizer, corrupter, directory, max_length):
    """Writes the SavedModel with its text-in `serving_default`.

    Returns:
        `directory`, made absolute.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(tokenizer)
    sentinel_ids = corrupter.sentinel_ids
    # The decoder's positions go up to the training targets' length.
    max_length = min(max_length, corrupter.targets_length)
    archive.add_endpoint(
        "serving_default",
        lambda text: fill_spans(
            model, tokenizer, text, sentinel_ids, corrupter.eos_id,
            corrupter.inputs_length, max_length,
        ),
        input_signature=example_common.TEXT_SIGNATURE,
    )
    return example_common.write_saved_model(archive, tokenizer, directory)


# The job.


def load(args):
    """The corpus the flags name (raises before anything is written)."""
    return example_common.load_corpus_from_flags(args, args.sequence_length)


def run(args, corpus=None):
    """Loads, trains, evaluates and exports; returns what it made.

    Returns:
        A dict with `"model"`, `"tokenizer"`, `"corrupter"`, `"history"`,
        `"evaluation"` (held-out loss and accuracy per target token),
        `"validation"` (the held-out `(x, y, sample_weight)` batches they
        were measured on), `"export_dir"` and `"seconds"`.
    """
    seconds = {}
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    corpus = corpus or load(args)
    print(corpus)
    seconds["corpus"] = time.perf_counter() - start

    start = time.perf_counter()
    tokenizer = example_common.learn_tokenizer(corpus, args.vocabulary_size)
    corrupter = make_corrupter(tokenizer, args)
    raw_length, targets_length = corrupter.lengths_for(args.sequence_length)
    train_rows, steps = packed_rows(
        corpus.dataset("train"), tokenizer, raw_length, args.batch_size, args.seed
    )
    validation_rows, validation_steps = packed_rows(
        corpus.dataset("validation"), tokenizer, raw_length, args.batch_size
    )
    seconds["tokenizer"] = time.perf_counter() - start

    def fit_batches(ds):
        return ds.map(lambda pair: for_fit(pair, tokenizer.cls_id, tokenizer.pad_id))

    train, steps = example_common.capped_training_data(
        fit_batches(mask_dataset(train_rows, corrupter, seed=args.seed)), steps,
        args.steps_per_epoch,
    )
    # The same corruption of the held-out rows at every evaluation.
    validation = fit_batches(
        validation_rows.enumerate().map(
            lambda i, rows: corrupter(rows, seed=keyed_seed(args.seed + 1, i))
        )
    ).cache()
    model = build_encoder_decoder(
        corrupter.vocabulary_size, args.sequence_length, targets_length, tokenizer.pad_id, args
    )
    example_common.compile_language_model(model, args.learning_rate, steps * args.epochs)
    print(
        f"Encoder-decoder: {model.count_params():,} parameters; {steps} steps of "
        f"{args.batch_size} rows of {raw_length} raw tokens -> inputs "
        f"{args.sequence_length}, targets {targets_length}; "
        f"{validation_steps} held-out batches"
    )
    history, seconds["train"] = example_common.timed_fit(
        model, train, validation, args.epochs, example_common.verbosity(args), shuffle=False
    )

    start = time.perf_counter()
    evaluation = example_common.evaluate(model, validation)
    print(
        "Held-out span corruption (fixed): loss {loss:.3f}, accuracy {accuracy:.3f}, "
        "perplexity {perplexity:.1f}".format(**evaluation)
    )
    seconds["evaluate"] = time.perf_counter() - start

    start = time.perf_counter()
    export_dir = export_for_serving(
        model, tokenizer, corrupter, os.path.join(args.output, str(args.version)),
        args.max_decode_length,
    )
    seconds["export"] = time.perf_counter() - start
    print(f"Exported the SavedModel to {export_dir}")
    return {
        "model": model,
        "tokenizer": tokenizer,
        "corrupter": corrupter,
        "history": history.history,
        "evaluation": evaluation,
        "validation": validation,
        "export_dir": export_dir,
        "seconds": seconds,
    }


def main(argv=None):
    """Pre-trains and exports as `argv` asks; returns 0, or 2 on a bad corpus."""
    return example_common.run_from_command_line(parse_args(argv), load, run)


if __name__ == "__main__":
    sys.exit(main())
