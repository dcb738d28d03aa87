"""Tiny SavedModels the export-ops checks read."""

import tensorflow as tf

# Ops of tensorflow-text's whitespace tokenizer: registered only where it is loaded.
WHITESPACE_OP = "TFText>WhitespaceTokenizeWithOffsetsV2"


def whitespace_tokenizer_export(path):
    """Writes, at `path`, a SavedModel that tokenizes with tensorflow-text; returns `path`."""
    import tensorflow_text

    tokenizer = tensorflow_text.WhitespaceTokenizer()
    module = tf.Module()
    module.tokenize = tf.function(
        lambda texts: tokenizer.tokenize(texts).to_tensor(""),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    tf.saved_model.save(module, path, signatures=module.tokenize)
    return path
