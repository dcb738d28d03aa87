"""The examples' id-level SavedModels: token ids in, core TensorFlow ops only.

The raw-text exports tokenize in the graph with tensorflow-text's ops,
which a TensorFlow or TF Serving build registers only if it links
tensorflow-text in; without them the whole graph fails to load (`Op type not
registered`), whichever signature is asked for. The id-level export of the
same model takes token ids instead (the client tokenizes, e.g. with the
vocabulary in `assets.extra/vocab.txt`) and holds only ops TensorFlow
itself registers, so any build of a compatible version serves it.
`DynamicMLMMasking`, `PaddingMask` and `CausalMask` are core TensorFlow
ops all the way down, so the masking is served there too.

It is written beside the text export, in TF Serving's layout:
`<output>_ids/<version>/`, e.g. `saved_models/mlm_encoder_ids/1/`.
"""

import os

import keras
import tensorflow as tf

import example_common

# Signature inputs: `[B, T]` ids, padded with the pad id (0) at the end;
# positions into them; a seed (`[]` for fresh randomness, `[2]` to reproduce).
IDS_SPEC = tf.TensorSpec([None, None], tf.int32, name="token_ids")
POSITIONS_SPEC = tf.TensorSpec([None, None], tf.int32, name="positions")
SEED_SPEC = tf.TensorSpec([None], tf.int64, name="seed")


def ids_export_dir(output, version):
    """`<output>_ids/<version>`: the id-level export beside `<output>/<version>`.

    Args:
        output: str, the text export's model folder, e.g. `saved_models/mlm_encoder`.
        version: int.

    Returns:
        A str.
    """
    return os.path.join(os.path.normpath(output) + "_ids", str(version))


def mlm_fill_mask(backbone, head, token_ids, positions, top_k):
    """The top-k tokens and their probabilities at given positions.

    Args:
        backbone: the trained encoder (ids -> hidden states).
        head: the trained masked-LM head.
        token_ids: int32 `[B, T]`, usually with `[MASK]` at `positions`.
        positions: int32 `[B, P]` positions into `T` (pad with any valid
            position, e.g. 0, and ignore those answers).
        top_k: int.

    Returns:
        A dict: `"top_ids"` int32 `[B, P, k]`, best first, and `"scores"`
        float32 `[B, P, k]`, their probabilities.
    """
    hidden = backbone(token_ids, training=False)
    hidden = tf.gather(hidden, positions, batch_dims=1)
    probabilities = tf.nn.softmax(head(hidden, training=False), axis=-1)
    scores, top_ids = tf.math.top_k(probabilities, k=top_k)
    return {"top_ids": top_ids, "scores": scores}


def mlm_mask(masker, token_ids, seed, pad_token_id):
    """Dynamic masking of ids: what the `mask` signatures serve.

    Args:
        masker: a `DynamicMLMMasking` in `"dict"` mode with `max_predictions`.
        token_ids: int32 `[B, T]`.
        seed: int64 `[0]` (fresh masks on every call) or `[2]` (masks a pure
            function of the ids and the seed).
        pad_token_id: int, the id of padding.

    Returns:
        A dict of `[B, T]` tensors: `"token_ids"` (masked ids), `"labels"`
        (the original id where selected, the masker's `ignore_index`
        elsewhere), `"mask"` (bool selection) and `"padding_mask"` (bool,
        True at real tokens); and of `[B, P]` tensors in keras-hub's layout:
        `"mask_positions"`, `"mask_ids"`, `"mask_weights"`.
    """
    seeded = tf.greater_equal(tf.size(seed), 2)
    out = tf.cond(
        seeded,
        lambda: masker(token_ids, training=True, seed=tf.reshape(seed, [-1])[:2]),
        lambda: masker(token_ids, training=True),
    )
    keys = ("token_ids", "labels", "mask", "mask_positions", "mask_ids", "mask_weights")
    outputs = {key: out[key] for key in keys}
    outputs["padding_mask"] = tf.not_equal(token_ids, pad_token_id)
    return outputs


def export_mlm_ids(backbone, head, masker, tokenizer, directory, top_k=5):
    """Writes the masked LM's id-level SavedModel.

    Signatures:
    - `serving_default` (fill-mask): `token_ids` int32 `[B, T]`,
      `positions` int32 `[B, P]` -> `top_ids`, `scores` `[B, P, top_k]`;
    - `mask`: `token_ids` int32 `[B, T]`, `seed` int64 `[0]` or `[2]` ->
      `mlm_mask`'s outputs.

    Args:
        backbone: the trained encoder.
        head: the trained masked-LM head.
        masker: a `DynamicMLMMasking` in `"dict"` mode with `max_predictions`.
        tokenizer: the `WordPieceTokenizer` (its vocabulary goes along in
            `assets.extra/vocab.txt`; it is not part of the graph).
        directory: the version folder, e.g. `saved_models/mlm_encoder_ids/1`.
        top_k: int, predictions per position.

    Returns:
        `directory`, made absolute.
    """
    archive = keras.export.ExportArchive()
    archive.track(backbone)
    archive.track(head)
    archive.track(masker)
    archive.add_endpoint(
        "serving_default",
        lambda token_ids, positions: mlm_fill_mask(
            backbone, head, token_ids, positions, top_k
        ),
        input_signature=[IDS_SPEC, POSITIONS_SPEC],
    )

    def mask(token_ids, seed=tf.constant([], tf.int64)):
        return mlm_mask(masker, token_ids, seed, tokenizer.pad_id)

    archive.add_endpoint("mask", mask, input_signature=[IDS_SPEC, SEED_SPEC])
    return example_common.write_saved_model(archive, tokenizer, directory)


def causal_lm_next_token(model, token_ids, top_k, pad_token_id):
    """The top-k next tokens after each row's last real (non-pad) token.

    Args:
        model: the decoder of `train_causal_lm.build_decoder`.
        token_ids: int32 `[B, T]` prompts, each `[CLS] ...`, padded at the end.
        top_k: int.
        pad_token_id: int.

    Returns:
        A dict: `"top_ids"` int32 `[B, k]`, best first, and `"scores"`
        float32 `[B, k]`, their probabilities.
    """
    real = tf.not_equal(token_ids, pad_token_id)
    lengths = tf.maximum(tf.reduce_sum(tf.cast(real, tf.int32), axis=1), 1)
    width = tf.shape(token_ids)[1]
    inputs = {
        "token_ids": token_ids,
        "segment_ids": tf.cast(tf.sequence_mask(lengths, width), tf.int32),
        "position_ids": tf.broadcast_to(tf.range(width), tf.shape(token_ids)),
    }
    logits = model(inputs, training=False)
    last = tf.gather(logits, lengths - 1, batch_dims=1)
    scores, top_ids = tf.math.top_k(tf.nn.softmax(last, axis=-1), k=top_k)
    return {"top_ids": top_ids, "scores": scores}


def export_causal_lm_ids(model, tokenizer, directory, top_k):
    """Writes the decoder's id-level SavedModel.

    Signature `serving_default` (next token): `token_ids` int32 `[B, T]`
    (`[CLS]` then the prompt, padded with `[PAD]` at the end) -> `top_ids`,
    `scores` `[B, top_k]`.

    Args:
        model: the trained decoder.
        tokenizer: its `WordPieceTokenizer` (vocabulary in `assets.extra`).
        directory: the version folder, e.g. `saved_models/causal_lm_ids/1`.
        top_k: int.

    Returns:
        `directory`, made absolute.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        lambda token_ids: causal_lm_next_token(model, token_ids, top_k, tokenizer.pad_id),
        input_signature=[IDS_SPEC],
    )
    return example_common.write_saved_model(archive, tokenizer, directory)
