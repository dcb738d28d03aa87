"""Train a tiny GPT-style decoder on packed sequences; export it.

The decoder twin of `pretrain_mlm.py`, on the same corpora and tokenizer:

1. passages become `[CLS] text [SEP]` (start and end of a document) and are
   packed back to back into rows of `sequence_length + 1` tokens, with
   `segment_ids` numbering the passages of a row and `position_ids`
   restarting at 0 in each;
2. attention is masked by `CausalMask` with those `segment_ids` (no token
   sees another passage) and a `PaddingMask`, computed from each batch at
   run time;
3. the loss is next-token cross-entropy, weighted 0 where the next token
   starts another passage; held-out loss and perplexity on the validation
   split; a short sample at the end;
4. a SavedModel in TF Serving's layout, `<output>/<version>/`, with
   - `serving_default` (= `generate`): prompts (and an optional seed) ->
     sampled continuations, as ids and text;
   - `next_token`: prompts -> the top-k next tokens and their
     probabilities;
5. beside it, `<output>_ids/<version>/`: next token from token ids, core
   TensorFlow ops only (`examples/id_level_export.py`), for builds without
   tensorflow-text's ops.

Run: `python examples/train_causal_lm.py [--epochs N] [--seed S]
[--text-files GLOB | --tfds NAME] [--output DIR]`.
"""

import os
import sys
import time

import keras
import tensorflow as tf

from keras_dynmask import CausalMask
from keras_dynmask import PaddingMask

import example_common
import id_level_export
import transformer_blocks

DEFAULT_OUTPUT = os.path.join(example_common.REPOSITORY_ROOT, "saved_models", "causal_lm")
PROMPTS = ["Return the", "This module provides", "If the file"]


def parse_args(argv=None):
    """Command-line flags.

    Args:
        argv: list of str, or `None` for `sys.argv[1:]`.

    Returns:
        An `argparse.Namespace`.
    """
    parser = example_common.new_parser(__doc__.split("\n\n")[0])
    example_common.add_training_job_flags(
        parser, epochs=6, output=DEFAULT_OUTPUT, sequence_length=64
    )
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=0.8)
    args = example_common.parse_and_check(
        parser, argv, ("epochs", "vocabulary_size", "batch_size", "top_k", "max_new_tokens")
    )
    if args.temperature <= 0:
        parser.error(f"--temperature must be > 0, got {args.temperature}")
    return args


# Data.


def packed_examples(texts, tokenizer, sequence_length, batch_size, shuffle_seed=None):
    """Passages -> packed next-token examples with `segment_ids`.

    Each passage is `[CLS] wordpieces [SEP]`; passages are laid end to end
    and cut into rows of `sequence_length + 1` tokens (a passage may run on
    into the next row). In a row, `segment_ids` number the passages from 1
    and `position_ids` count from 0 in each passage.

    Args:
        texts: a `tf.data.Dataset` of scalar strings.
        tokenizer: a `WordPieceTokenizer`.
        sequence_length: int, tokens per example.
        batch_size: int.
        shuffle_seed: `None` (keep order) or int (reshuffle every pass).

    Returns:
        `(dataset, steps)`: batches of `(x, y, sample_weight)` with `x` a
        dict of int32 `[B, T]` `"token_ids"`, `"segment_ids"`,
        `"position_ids"`; `y` the next tokens; `sample_weight` 0.0 where
        the next token belongs to another passage; and the number of batches
        in one pass.
    """
    texts = example_common.shuffle_passages(texts, shuffle_seed)
    chunk = 1024

    def tokenize(index, batch):
        ids = tokenizer.tokenize(batch)
        rows = ids.nrows()
        ids = tf.concat(
            [tf.fill([rows, 1], tokenizer.cls_id), ids, tf.fill([rows, 1], tokenizer.sep_id)],
            axis=1,
        )
        segment = tf.cast(ids.value_rowids(), tf.int64) + index * chunk
        return ids.flat_values, segment

    stream = texts.batch(chunk).enumerate().map(tokenize)
    total = sum(int(tf.size(ids)) for ids, _ in stream)
    steps = total // (sequence_length + 1) // batch_size
    if steps < 1:
        raise ValueError(
            f"Too little text: {total} tokens, fewer than one batch of "
            f"{batch_size} rows of {sequence_length + 1}"
        )
    width = sequence_length + 1

    def example(tokens, segments):
        local = tf.cast(segments - segments[0] + 1, tf.int32)
        index = tf.range(width)
        first = tf.math.unsorted_segment_min(index, local, width + 1)
        positions = index - tf.gather(first, local)
        x = {
            "token_ids": tokens[:-1],
            "segment_ids": local[:-1],
            "position_ids": positions[:-1],
        }
        weight = tf.cast(tf.equal(local[1:], local[:-1]), tf.float32)
        return x, tokens[1:], weight

    ds = (
        stream.unbatch()
        .batch(width, drop_remainder=True)
        .map(example)
        .batch(batch_size, drop_remainder=True)
        .apply(tf.data.experimental.assert_cardinality(steps))
    )
    return ds, steps


# Model.


def build_decoder(
    vocabulary_size,
    sequence_length,
    hidden_dim=128,
    num_layers=2,
    num_heads=4,
    intermediate_dim=512,
    dropout=0.0,
    pad_token_id=0,
):
    """A tiny GPT-style decoder: ids, segments, positions -> next-token logits.

    The attention mask is `CausalMask` (forward) restricted to each token's
    segment and to real tokens, built from the batch at run time.

    Returns:
        A `keras.Model` taking int32 `[B, T]` `"token_ids"`,
        `"segment_ids"` and `"position_ids"`, returning float32 logits
        `[B, T, vocabulary_size]`.
    """
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    segment_ids = keras.Input((None,), dtype="int32", name="segment_ids")
    position_ids = keras.Input((None,), dtype="int32", name="position_ids")
    padding = PaddingMask(pad_token_id=pad_token_id, name="padding_mask")(token_ids)
    attention_mask = CausalMask(name="causal_mask")(
        token_ids, padding_mask=padding, segment_ids=segment_ids
    )
    x = transformer_blocks.embed(
        token_ids,
        vocabulary_size,
        sequence_length,
        hidden_dim,
        dropout,
        "embedding",
        position_ids=position_ids,
    )
    x = transformer_blocks.transformer_stack(
        x, attention_mask, num_layers, num_heads, intermediate_dim, dropout
    )
    logits = keras.layers.Dense(vocabulary_size, name="lm_logits")(x)
    return keras.Model(
        {"token_ids": token_ids, "segment_ids": segment_ids, "position_ids": position_ids},
        logits,
        name="causal_lm",
    )


def compile_decoder(model, learning_rate, total_steps):
    """AdamW, warm-up then cosine decay; mean loss over weighted tokens.

    The recipe of `pretrain_mlm.compile_model`
    (`example_common.compile_language_model`).

    Args:
        model: from `build_decoder`.
        learning_rate: float, the peak learning rate.
        total_steps: int, training steps of the whole run.
    """
    example_common.compile_language_model(model, learning_rate, total_steps)


# Inference: the graphs the export serves.


def _prompt_ids(tokenizer, texts, sequence_length):
    """`[CLS] prompt` ids (no `[SEP]`), left-aligned, and their lengths."""
    ids = tokenizer.tokenize(texts)[:, : sequence_length - 1]
    rows = ids.nrows()
    ids = tf.concat([tf.fill([rows, 1], tokenizer.cls_id), ids], axis=1)
    return ids.to_tensor(default_value=tokenizer.pad_id), tf.cast(ids.row_lengths(), tf.int32)


def _inputs(ids, lengths):
    width = tf.shape(ids)[1]
    real = tf.sequence_mask(lengths, width)
    positions = tf.broadcast_to(tf.range(width), tf.shape(ids))
    return {
        "token_ids": ids,
        "segment_ids": tf.cast(real, tf.int32),
        "position_ids": positions,
    }


def next_token(model, tokenizer, texts, sequence_length, top_k):
    """Top-k next tokens after each prompt.

    Args:
        model: the decoder.
        tokenizer: a `WordPieceTokenizer`.
        texts: `tf.string` `[B]` prompts.
        sequence_length: int, the model's longest input.
        top_k: int.

    Returns:
        A dict: `"tokens"` string `[B, k]`, `"token_ids"` int32 `[B, k]`,
        `"scores"` float32 probabilities `[B, k]`.
    """
    ids, lengths = _prompt_ids(tokenizer, texts, sequence_length)
    logits = model(_inputs(ids, lengths), training=False)
    last = tf.gather(logits, lengths - 1, batch_dims=1)
    scores, top = tf.math.top_k(tf.nn.softmax(last, axis=-1), k=top_k)
    return {"tokens": tokenizer.id_to_token(top), "token_ids": top, "scores": scores}


def generate(
    model, tokenizer, texts, sequence_length, max_new_tokens, top_k, temperature, seed
):
    """Samples continuations of the prompts, one token at a time.

    Top-k sampling at `temperature`; a row stops at `[SEP]` (end of a
    passage). The loop is a `tf.while_loop` over a fixed-size buffer, so
    it runs in a SavedModel.

    Args:
        model: the decoder.
        tokenizer: a `WordPieceTokenizer`.
        texts: `tf.string` `[B]` prompts.
        sequence_length: int, the model's longest input.
        max_new_tokens: int.
        top_k: int.
        temperature: float > 0.
        seed: int64 `[0]` (fresh samples on every call) or `[2]` (samples
            a pure function of the prompts and the seed).

    Returns:
        A dict: `"token_ids"` int32 `[B, P + max_new_tokens]` (prompt, then
        the sampled tokens, then padding), `"text"` string `[B]` (the
        prompt and its continuation as words).
    """
    prompt_len = max(1, sequence_length - max_new_tokens)
    ids, lengths = _prompt_ids(tokenizer, texts, prompt_len)
    rows = tf.shape(ids)[0]
    width = tf.shape(ids)[1] + max_new_tokens
    buffer = tf.pad(ids, [[0, 0], [0, max_new_tokens]])
    seed = tf.reshape(tf.cast(seed, tf.int64), [-1])
    seed = tf.cond(
        tf.size(seed) >= 2,
        lambda: seed[:2],
        lambda: tf.random.uniform([2], maxval=2**62, dtype=tf.int64),
    )

    def step(i, buffer, lengths, done):
        logits = model(_inputs(buffer, lengths), training=False)
        last = tf.gather(logits, lengths - 1, batch_dims=1) / temperature
        values, candidates = tf.math.top_k(last, k=top_k)
        pick = tf.random.stateless_categorical(
            values, 1, tf.random.experimental.stateless_fold_in(seed, i)
        )[:, 0]
        token = tf.gather(candidates, pick, batch_dims=1)
        token = tf.where(done, tokenizer.pad_id, token)
        where = tf.stack([tf.range(rows), tf.minimum(lengths, width - 1)], axis=1)
        buffer = tf.tensor_scatter_nd_update(buffer, where, token)
        lengths = lengths + tf.cast(~done, tf.int32)
        done = done | tf.equal(token, tokenizer.sep_id)
        return i + 1, buffer, lengths, done

    _, buffer, lengths, _ = tf.while_loop(
        lambda i, *_: i < max_new_tokens,
        step,
        (tf.constant(0), buffer, lengths, tf.zeros([rows], tf.bool)),
        shape_invariants=(
            tf.TensorShape([]),
            tf.TensorShape([None, None]),
            tf.TensorShape([None]),
            tf.TensorShape([None]),
        ),
    )
    return {"token_ids": buffer, "text": tokenizer.detokenize(buffer)}


def export_for_serving(model, tokenizer, directory, args):
    """Writes the SavedModel: `serving_default` (= `generate`), `next_token`.

    Written to a temporary folder and moved into place when complete, with
    the vocabulary in `assets.extra/vocab.txt`, like
    `pretrain_mlm.export_for_serving` (`example_common.write_saved_model`).

    Args:
        model: the trained decoder.
        tokenizer: its `WordPieceTokenizer`.
        directory: the version folder, e.g. `saved_models/causal_lm/1`.
        args: the `parse_args()` namespace (lengths, sampling settings).

    Returns:
        `directory`.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve_generate(text, seed=tf.constant([], tf.int64)):
        return generate(
            model,
            tokenizer,
            text,
            args.sequence_length,
            args.max_new_tokens,
            args.top_k,
            args.temperature,
            seed,
        )

    archive.add_endpoint(
        "serving_default",
        serve_generate,
        input_signature=example_common.TEXT_AND_SEED_SIGNATURE,
    )
    archive.add_endpoint(
        "next_token",
        lambda text: next_token(model, tokenizer, text, args.sequence_length, args.top_k),
        input_signature=example_common.TEXT_SIGNATURE,
    )
    return example_common.write_saved_model(archive, tokenizer, directory)


# The job.


def load(args):
    """The corpus the flags name (raises before anything is written).

    Args:
        args: the `parse_args()` namespace.

    Returns:
        A `Corpus` of passages of at most `sequence_length` words.
    """
    return example_common.load_corpus_from_flags(args, args.sequence_length)


def run(args, corpus=None):
    """Trains, evaluates, samples and exports; returns what it made.

    Args:
        args: the `parse_args()` namespace.
        corpus: a `Corpus`, or `None` to load the one `args` names.

    Returns:
        A dict with `"model"`, `"tokenizer"`, `"history"`, `"evaluation"`,
        `"samples"`, `"export_dir"`, `"ids_export_dir"` and `"seconds"`.
    """
    seconds = {}
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    corpus = corpus or load(args)
    print(corpus)
    tokenizer = example_common.learn_tokenizer(corpus, args.vocabulary_size)
    train, steps = packed_examples(
        corpus.dataset("train"),
        tokenizer,
        args.sequence_length,
        args.batch_size,
        shuffle_seed=args.seed,
    )
    validation, validation_steps = packed_examples(
        corpus.dataset("validation"),
        tokenizer,
        args.sequence_length,
        min(args.batch_size, 8),
    )
    train, steps = example_common.capped_training_data(train, steps, args.steps_per_epoch)
    validation = validation.cache().prefetch(tf.data.AUTOTUNE)
    seconds["data"] = time.perf_counter() - start

    model = build_decoder(
        tokenizer.vocabulary_size,
        args.sequence_length,
        pad_token_id=tokenizer.pad_id,
        **example_common.model_size(args),
    )
    compile_decoder(model, args.learning_rate, steps * args.epochs)
    print(
        f"Decoder: {model.count_params():,} parameters; {steps} steps of "
        f"{args.batch_size}x{args.sequence_length} packed tokens per epoch"
    )
    history, seconds["train"] = example_common.timed_fit(
        model, train, validation, args.epochs, example_common.verbosity(args), shuffle=False
    )

    start = time.perf_counter()
    evaluation = example_common.evaluate(model, validation)
    print(
        "Held-out next-token loss {loss:.3f}, accuracy {accuracy:.3f}, "
        "perplexity {perplexity:.1f}".format(**evaluation)
    )
    sampled = generate(
        model,
        tokenizer,
        tf.constant(PROMPTS),
        args.sequence_length,
        args.max_new_tokens,
        args.top_k,
        args.temperature,
        tf.constant([args.seed, 0], tf.int64),
    )
    samples = [t.decode("utf-8") for t in sampled["text"].numpy()]
    print("Samples:")
    for prompt, sample in zip(PROMPTS, samples):
        print(f"  {prompt!r} -> {sample}")
    seconds["evaluate"] = time.perf_counter() - start

    start = time.perf_counter()
    export_dir = export_for_serving(
        model, tokenizer, os.path.join(args.output, str(args.version)), args
    )
    ids_export_dir = id_level_export.export_causal_lm_ids(
        model,
        tokenizer,
        id_level_export.ids_export_dir(args.output, args.version),
        args.top_k,
    )
    seconds["export"] = time.perf_counter() - start
    print(f"Exported the SavedModel to {export_dir}")
    print(f"Exported the id-level SavedModel (core TensorFlow ops only) to {ids_export_dir}")
    return {
        "model": model,
        "tokenizer": tokenizer,
        "history": history.history,
        "evaluation": evaluation,
        "samples": samples,
        "export_dir": export_dir,
        "ids_export_dir": ids_export_dir,
        "seconds": seconds,
    }


def main(argv=None):
    """Trains and exports as `argv` asks; returns 0, or 2 on a bad corpus."""
    return example_common.run_from_command_line(parse_args(argv), load, run)


if __name__ == "__main__":
    sys.exit(main())
