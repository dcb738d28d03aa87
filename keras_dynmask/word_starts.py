"""`keras_dynmask.word_starts`: which ids of a vocabulary begin a word."""

import os
from collections.abc import Sequence

import numpy as np

STYLES = ("wordpiece", "sentencepiece", "bytelevel")

# How each style marks word boundaries on a piece.
CONTINUATION_PREFIX = {"wordpiece": "##"}
START_PREFIX = {"sentencepiece": "\u2581", "bytelevel": "\u0120"}


def _piece_text(piece):
    if isinstance(piece, bytes):
        return piece.decode("utf-8", errors="replace")
    if not isinstance(piece, str):
        raise ValueError(
            "`vocabulary` must hold strings (or bytes), one piece per id. "
            f"Received a piece of type {type(piece).__name__}: {piece!r}"
        )
    return piece


def word_starts(vocabulary: "str | os.PathLike | Sequence[str | bytes]", style: str) -> "np.ndarray":
    """The id-level word-start table `DynamicMLMMasking(word_starts=...)` takes.

    A vocabulary marks words in one of three ways: WordPiece (BERT) writes
    a piece that continues a word with a leading `##`; SentencePiece
    (T5, ALBERT, XLM-R) writes a piece that begins a word with a leading
    `▁`; byte-level BPE (GPT-2, RoBERTa) with a leading `Ġ` (the byte-level
    space). Special tokens need no care: `DynamicMLMMasking` never selects
    them and lets them end a word whatever the table says, so a first word
    written without its marker (GPT-2's first word has no `Ġ`) still
    begins a word after `[CLS]` or `<s>`.

    Args:
        vocabulary: the pieces in id order: a list of `str` (or `bytes`), or
            a path to a vocabulary file with one piece per line (WordPiece's
            `vocab.txt`; for SentencePiece's `.vocab` the text before the
            first tab).
        style: `"wordpiece"`, `"sentencepiece"` or `"bytelevel"`.

    Returns:
        A NumPy bool array of shape `[len(vocabulary)]`, True where an id
        begins a word.

    Example:

    >>> import keras_dynmask
    >>> keras_dynmask.word_starts(["[PAD]", "un", "##aff", "##able", "run"], "wordpiece").tolist()
    [True, True, False, False, True]
    >>> keras_dynmask.word_starts(["<pad>", "\u2581un", "aff", "\u2581run"], "sentencepiece").tolist()
    [False, True, False, True]
    """
    if not isinstance(style, str) or style not in STYLES:
        raise ValueError(f"`style` must be one of {STYLES}. Received: style={style!r}")
    if isinstance(vocabulary, (str, bytes)) or hasattr(vocabulary, "__fspath__"):
        with open(vocabulary, encoding="utf-8") as file:
            vocabulary = [line.rstrip("\n").split("\t")[0] for line in file]
    if isinstance(vocabulary, np.ndarray):
        vocabulary = vocabulary.tolist()
    if not isinstance(vocabulary, (list, tuple)) or not vocabulary:
        raise ValueError(
            "`vocabulary` must be a non-empty list of pieces or a file path. "
            f"Received: vocabulary={vocabulary!r}"
        )
    pieces = [_piece_text(piece) for piece in vocabulary]
    if style in CONTINUATION_PREFIX:
        prefix = CONTINUATION_PREFIX[style]
        return np.array([not piece.startswith(prefix) for piece in pieces], bool)
    prefix = START_PREFIX[style]
    return np.array([piece.startswith(prefix) for piece in pieces], bool)
