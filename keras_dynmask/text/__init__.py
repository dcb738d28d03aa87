"""In-graph tokenization (the only part of keras_dynmask that needs tensorflow_text)."""

from keras_dynmask.text.wordpiece_tokenizer import WordPieceTokenizer

__all__ = ["WordPieceTokenizer"]
