"""In-graph tokenization (the only part of keras_dynmask that needs tensorflow_text).

tensorflow-text comes with the `text` extra: `pip install "keras_dynmask[text]"`
(its release must match TensorFlow's).
"""

try:
    import tensorflow_text  # noqa: F401
except ImportError as error:
    raise ImportError(
        "keras_dynmask.text (WordPieceTokenizer) needs tensorflow-text, which "
        "is not installed; install it with the `text` extra: "
        "pip install \"keras_dynmask[text]\" (or tensorflow-text of the same "
        f"release as TensorFlow). Import failed with: {error}"
    ) from error

from keras_dynmask.text.wordpiece_tokenizer import WordPieceTokenizer  # noqa: E402

__all__ = ["WordPieceTokenizer"]
