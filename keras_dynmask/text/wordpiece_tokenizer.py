"""`WordPieceTokenizer`: learn a WordPiece vocabulary, tokenize in-graph."""

import collections
import os
import re
from collections.abc import Iterable
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.tools.wordpiece_vocab import (
    wordpiece_tokenizer_learner_lib as learner,
)

from keras_dynmask import validation

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SUFFIX_INDICATOR = "##"
# Special tokens that raw text may spell out and that stay whole words
# ("[MASK]" for fill-mask queries). "[PAD]" is not among them: padding is
# never part of a text.
_LITERAL_SPECIALS = r"\[(?:UNK|CLS|SEP|MASK)\]"
# Each punctuation mark, symbol and CJK character is a word of its own, as
# in BERT's basic tokenizer; whitespace separates words and is dropped.
_SINGLE_CHARS = r"[\p{P}\p{S}\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]"
_SPACE = r"[\s\p{Z}]+"
_KEEP = f"({_LITERAL_SPECIALS}|{_SINGLE_CHARS})"
_SPACE_OR_KEEP = r"[\p{Cc}\p{Cf}\s\p{Z}]+|" + _KEEP
_MARKS_OR_SPACE = r"[\p{Mn}\s\p{Z}]+"
_SPECIAL_BODIES = ("UNK]", "CLS]", "SEP]", "MASK]")
# Tab, line feed, carriage return and printable ASCII: the characters on
# which BERT's own word split and lower-casing (inside tensorflow-text's
# FastWordpieceTokenizer) agree exactly with `split_words`.
_PLAIN_CHARS = frozenset([9, 10, 13, *range(32, 127)])


def _char_class(codes):
    """A regex character class of the byte values `codes`, as ranges."""
    codes, ranges = sorted(codes), []
    for code in codes:
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    parts = (
        f"\\x{a:02x}" if a == b else f"\\x{a:02x}-\\x{b:02x}" for a, b in ranges
    )
    return "[" + "".join(parts) + "]"


def _plain_text_pattern():
    """Matches texts of `_PLAIN_CHARS` that spell out no special token.

    RE2 has no look-ahead, so "no `[MASK]`" is spelled as: characters other
    than `[`, or a `[` followed by a (possibly empty) proper prefix of a
    special token's body and then a character that leaves it; a `[` with a
    prefix may also stand right before another `[` or at the end.
    """
    prefixes = sorted({body[:i] for body in _SPECIAL_BODIES for i in range(len(body))})
    bracket = ord("[")
    leaving = []
    for prefix in prefixes:
        going_on = {ord(b[len(prefix)]) for b in _SPECIAL_BODIES if b.startswith(prefix)}
        leaving.append(re.escape(prefix) + _char_class(_PLAIN_CHARS - going_on - {bracket}))
    opened = "\\[(?:" + "|".join(re.escape(p) for p in prefixes) + ")"
    left = "\\[(?:" + "|".join(leaving) + ")"
    plain = _char_class(_PLAIN_CHARS - {bracket})
    return f"(?:{plain}|(?:{opened})*{left})*(?:{opened})*"


_PLAIN_TEXT = _plain_text_pattern()


class WordPieceTokenizer(tf.Module):
    """A WordPiece tokenizer that runs in TensorFlow graphs.

    Text is split into words (whitespace; every punctuation mark, symbol and
    CJK character on its own; the special tokens `[MASK]`, `[UNK]`, `[CLS]`,
    `[SEP]` spelled out in the text kept whole), optionally lower-cased with
    accents stripped, then cut into wordpieces by tensorflow-text's
    `FastWordpieceTokenizer`. Plain texts (tab, newlines and printable
    ASCII, no special token spelled out: nearly all English text) skip that
    split and go straight to `FastWordpieceTokenizer`'s own BERT split and
    `tf.strings.lower`, which give them exactly the same words; the
    tokens are the same either way. Every step is a TensorFlow op, so the same
    tokenizer runs eagerly, in `tf.data` and inside an exported SavedModel
    (which needs only `tensorflow` and `tensorflow_text` to load).

    The vocabulary starts with the special tokens `[PAD]`, `[UNK]`,
    `[CLS]`, `[SEP]`, `[MASK]` (ids 0 to 4 in a learned vocabulary).
    `learn()` learns one from text with tensorflow-text's WordPiece learner,
    splitting words exactly as the tokenizer does.

    Args:
        vocabulary: list of str, the wordpieces, suffixes prefixed by `##`;
            must contain the five special tokens.
        sequence_length: `None` or int >= 3, the length `__call__` truncates
            to (and pads to); `None` pads to the longest text of the batch.
        lower_case: whether to lower-case text and strip accents.
        name: name of the `tf.Module`.

    Call arguments:
        texts: a `tf.string` scalar or `[B]` tensor (or Python strings).
        pad_to_sequence_length: bool; `False` pads to the batch's longest
            text only (still truncating at `sequence_length`).

    Returns:
        `__call__`: int32 ids `[CLS] wordpieces [SEP]` then `[PAD]`s, of
        shape `[L]` or `[B, L]`, `L = sequence_length` (or the batch's
        longest when `sequence_length` is `None` or
        `pad_to_sequence_length=False`); wordpieces past
        `sequence_length - 2` are dropped.

    Example:

    >>> texts = ["The cat sat on the mat.", "The dog sat on the log."]
    >>> tokenizer = WordPieceTokenizer.learn(texts, vocabulary_size=60)
    >>> tokenizer.vocabulary[:5]
    ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
    >>> ids = tokenizer(["the cat sat on the [MASK]."])
    >>> tokenizer.id_to_token(ids).numpy()[0].tolist()[:4]
    [b'[CLS]', b'the', b'cat', b'sat']
    >>> int(ids[0, -3]) == tokenizer.mask_id
    True
    """

    def __init__(
        self,
        vocabulary: "Sequence[str]",
        sequence_length: int | None = None,
        lower_case: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if isinstance(vocabulary, (str, bytes)) or not all(
            isinstance(token, str) for token in vocabulary
        ):
            raise ValueError(
                "`vocabulary` must be a list of str (see "
                "`WordPieceTokenizer.from_file` to read a file). Received: "
                f"vocabulary={_short(vocabulary)}"
            )
        vocabulary = list(vocabulary)
        unwritable = [t for t in vocabulary if not t or t != t.strip("\r\n") or len(t.splitlines()) > 1]
        if unwritable:
            raise ValueError(
                "`vocabulary` tokens must be non-empty and hold no line breaks "
                "(the vocabulary file has one token a line). Received tokens: "
                f"{unwritable[:10]!r}"
            )
        missing = [t for t in SPECIAL_TOKENS if t not in vocabulary]
        if missing:
            raise ValueError(
                f"`vocabulary` must contain the special tokens {SPECIAL_TOKENS}; "
                f"{missing} are missing. Received: vocabulary={_short(vocabulary)}"
            )
        if len(set(vocabulary)) != len(vocabulary):
            repeated = [t for t, n in collections.Counter(vocabulary).items() if n > 1]
            raise ValueError(
                f"`vocabulary` holds repeated tokens {repeated[:10]}. "
                f"Received: vocabulary={_short(vocabulary)}"
            )
        if sequence_length is not None and (
            not validation.is_integer(sequence_length) or sequence_length < 3
        ):
            raise ValueError(
                "`sequence_length` must be None or an int >= 3 (room for "
                f"[CLS], one wordpiece and [SEP]). Received: "
                f"sequence_length={sequence_length!r}"
            )
        if not isinstance(lower_case, (bool, np.bool_)):
            raise ValueError(
                f"`lower_case` must be a bool. Received: lower_case={lower_case!r}"
            )
        # NumPy scalars are taken as the Python values they stand for.
        sequence_length = None if sequence_length is None else int(sequence_length)
        lower_case = bool(lower_case)
        self.vocabulary = vocabulary
        self.sequence_length = sequence_length
        self.lower_case = lower_case
        ids = {token: i for i, token in enumerate(vocabulary)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            ids[t] for t in SPECIAL_TOKENS
        )
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=vocabulary,
            suffix_indicator=SUFFIX_INDICATOR,
            max_bytes_per_word=100,
            token_out_type=tf.int32,
            unknown_token="[UNK]",
            no_pretokenization=True,
            support_detokenization=True,
        )
        # The same vocabulary with BERT's own word split: plain texts skip
        # `split_words` (see `tokenize`). It leaves out tokens holding
        # punctuation, and refuses a vocabulary of nothing else (the special
        # tokens alone): then every text takes `split_words`.
        try:
            self._splitting_wordpiece = tf_text.FastWordpieceTokenizer(
                vocab=vocabulary,
                suffix_indicator=SUFFIX_INDICATOR,
                max_bytes_per_word=100,
                token_out_type=tf.int32,
                unknown_token="[UNK]",
                no_pretokenization=False,
            )
        except RuntimeError:
            self._splitting_wordpiece = None
        self._tokens = tf.constant(vocabulary, dtype=tf.string)

    @property
    def vocabulary_size(self) -> int:
        """Number of wordpieces, special tokens included."""
        return len(self.vocabulary)

    @property
    def special_token_ids(self):
        """Ids of `[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`, in that order."""
        return [self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id]

    @classmethod
    def learn(
        cls,
        texts: "Iterable[str] | tf.data.Dataset",
        vocabulary_size: int = 8000,
        sequence_length: int | None = None,
        lower_case: bool = True,
        batch_size: int = 1024,
        **learn_kwargs,
    ) -> "WordPieceTokenizer":
        """Learns a WordPiece vocabulary from text and returns its tokenizer.

        Words are counted after the tokenizer's own splitting and
        normalisation, then tensorflow-text's WordPiece learner
        (`wordpiece_tokenizer_learner_lib.learn`) picks the wordpieces.
        Nothing is downloaded.

        Args:
            texts: an iterable of str or a `tf.data.Dataset` of strings.
            vocabulary_size: int >= 6, the size wanted; the learner's
                binary search lands near it (on a few hundred thousand
                words, within a few percent below; larger sizes than the
                corpus supports may overshoot).
            sequence_length: as in the constructor.
            lower_case: as in the constructor.
            batch_size: texts counted per TensorFlow call.
            **learn_kwargs: passed to the learner, e.g. `lower_thresh`,
                `num_iterations`, `max_unique_chars`. The learner searches
                a count threshold between `lower_thresh` (default 1 here)
                and `upper_thresh` (`None`: the largest count); an
                `upper_thresh` below `lower_thresh` would leave no room to
                search and ignore `vocabulary_size`, so it is refused.

        Returns:
            A `WordPieceTokenizer`.
        """
        if not validation.is_integer(vocabulary_size) or vocabulary_size <= len(SPECIAL_TOKENS):
            raise ValueError(
                f"`vocabulary_size` must be an int > {len(SPECIAL_TOKENS)}. "
                f"Received: vocabulary_size={vocabulary_size!r}"
            )
        vocabulary_size = int(vocabulary_size)
        # The learner's default `lower_thresh` (10) stops well short of the
        # asked size on corpora of a few hundred thousand words.
        learn_kwargs.setdefault("lower_thresh", 1)
        _check_thresholds(learn_kwargs)
        if isinstance(texts, tf.data.Dataset):
            dataset = texts
        elif isinstance(texts, (str, bytes)):
            raise ValueError(
                "`texts` must be an iterable of str or a tf.data.Dataset, not "
                f"a single string. Received: texts={_short(texts)}"
            )
        else:
            texts = list(texts)
            if not texts:
                raise ValueError("`texts` is empty: there is nothing to learn from")
            dataset = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string))
        if dataset.element_spec.shape.rank == 0:
            dataset = dataset.batch(batch_size)
        splitter = cls(list(SPECIAL_TOKENS), lower_case=lower_case)

        @tf.function
        def count(batch):
            words, _, counts = tf.unique_with_counts(
                splitter.split_words(batch).flat_values
            )
            return words, counts

        word_counts = collections.Counter()
        for words, counts in dataset.map(count).as_numpy_iterator():
            word_counts.update(dict(zip(words.tolist(), counts.tolist())))
        for special in SPECIAL_TOKENS:
            word_counts.pop(special.encode(), None)
        if not word_counts:
            raise ValueError("`texts` holds no words: there is nothing to learn from")
        learned = learner.learn(
            [(w.decode("utf-8"), n) for w, n in word_counts.items()],
            vocab_size=vocabulary_size,
            reserved_tokens=list(SPECIAL_TOKENS),
            **learn_kwargs,
        )
        return cls(learned, sequence_length=sequence_length, lower_case=lower_case)

    @classmethod
    def from_file(
        cls, path: "str | os.PathLike", sequence_length: int | None = None, lower_case: bool = True
    ) -> "WordPieceTokenizer":
        """Reads a vocabulary written by `save_vocabulary` (one token a line).

        Args:
            path: the vocabulary file.
            sequence_length: as in the constructor.
            lower_case: as in the constructor.

        Returns:
            A `WordPieceTokenizer`.
        """
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No vocabulary file at {os.fspath(path)!r}")
        with open(path, encoding="utf-8") as handle:
            vocabulary = handle.read().split("\n")
        if vocabulary and vocabulary[-1] == "":
            vocabulary.pop()
        return cls(vocabulary, sequence_length=sequence_length, lower_case=lower_case)

    def save_vocabulary(self, path: "str | os.PathLike") -> None:
        """Writes the vocabulary, one token a line, in id order.

        Args:
            path: the file to write.

        Returns:
            `path`.
        """
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("\n".join(self.vocabulary) + "\n")
        return path

    def split_words(self, texts):
        """Splits and normalises text into words, as the vocabulary expects.

        Args:
            texts: `tf.string` tensor of shape `[B]`.

        Returns:
            A `tf.RaggedTensor` of words, `[B, (W)]`.
        """
        words = self._words_and_empty_strings(texts)
        return tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)

    def _words_and_empty_strings(self, texts):
        """`split_words`, keeping the empty strings of words that vanished.

        Words made only of stripped marks become empty strings; wordpiece
        tokenization gives them no pieces, so `tokenize` keeps them and
        saves the ops that would drop them.
        """
        words, rows = self._flat_words(texts)
        nrows = tf.shape(texts, out_type=tf.int64)[0]
        return tf.RaggedTensor.from_value_rowids(words, rows, nrows=nrows, validate=False)

    def _flat_words(self, texts):
        """`(words, rows)`: `_words_and_empty_strings`' words, flat, and the
        int64 row of each (raw ops: the general path runs in every batch,
        often on no text, where each op's overhead is its whole cost)."""
        # Static (compiled once) regex ops: a space either side of each
        # single-character word and spelled-out special token, runs of
        # spaces, control and format characters made spaces (an unmatched
        # group writes nothing), then a split at runs of spaces (an empty
        # `sep` is `tf.strings.split`'s whitespace split).
        texts = tf.strings.regex_replace(texts, _SPACE_OR_KEEP, r" \1 ")
        split = tf.raw_ops.StringSplitV2(input=texts, sep="", maxsplit=-1)
        flat = split.values
        special = tf.strings.regex_full_match(flat, _LITERAL_SPECIALS)
        if self.lower_case:
            normal = tf_text.normalize_utf8(tf_text.case_fold_utf8(flat), "NFD")
            # Accents stripped, and spaces that compatibility forms may
            # decompose into (NFKC maps the acute accent U+00B4 to a space
            # and a combining mark): words hold none.
            normal = tf.strings.regex_replace(normal, _MARKS_OR_SPACE, "")
        else:
            normal = tf_text.normalize_utf8(flat, "NFC")
            normal = tf.strings.regex_replace(normal, _SPACE, "")
        return tf.where(special, flat, normal), split.indices[:, 0]

    def _general_ids(self, texts):
        """Ragged `[K, (N)]` wordpiece ids of `[K]` texts by the general split."""
        words, rows = self._flat_words(texts)
        pieces = self._wordpiece.tokenize(words)
        lengths = tf.math.unsorted_segment_sum(
            pieces.row_lengths(), rows, tf.shape(texts, out_type=tf.int64)[0]
        )
        return tf.RaggedTensor.from_row_lengths(pieces.flat_values, lengths, validate=False)

    def tokenize(self, texts):
        """Wordpiece ids of each text, no special tokens added, no truncation.

        Args:
            texts: a `tf.string` scalar or `[B]` tensor.

        Returns:
            int32 ids: a `[N]` tensor for a scalar, else a `tf.RaggedTensor`
            `[B, (N)]`.
        """
        batch, scalar = self._as_batch(texts)
        ids, other_ids, other_rows = self._tokenize_in_two_parts(batch)
        # Row i of the result: row i of `ids`, or for the j-th other row,
        # row j of `other_ids`.
        rows = tf.shape(batch, out_type=tf.int64)[0]
        index = tf.tensor_scatter_nd_update(
            tf.range(rows),
            other_rows[:, None],
            rows + tf.range(tf.shape(other_rows, out_type=tf.int64)[0]),
        )
        ids = tf.gather(tf.concat([ids, other_ids], axis=0), index)
        return ids[0] if scalar else ids

    def _as_batch(self, texts):
        """`texts` as a `[B]` string tensor, and whether it was a scalar."""
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        scalar = texts.shape.rank == 0
        batch = texts[None] if scalar else texts
        if batch.shape.rank != 1:
            raise ValueError(
                "WordPieceTokenizer takes a scalar or a `[B]` tensor of "
                f"strings. Received shape {texts.shape}"
            )
        return batch, scalar

    def _tokenize_in_two_parts(self, texts):
        """`[B]` texts -> `(ids, other_ids, other_rows)`, plain texts fast.

        `ids` (ragged `[B, (N)]`) holds the right ids of every row but those
        listed in `other_rows` (int64 `[K]`), whose ids are the rows of
        `other_ids` (ragged `[K, (N)]`). A plain text (tab, newlines and
        printable ASCII, no special token spelled out) goes straight to
        FastWordpieceTokenizer's own BERT split, which gives the very words
        `split_words` gives it; the others (rare in English) take the
        general split (`split_words`' words plus the empty strings of
        words that vanished, which give no ids). No `tf.cond`: inside `tf.data` it costs more than the
        empty path it would skip.
        """
        if self._splitting_wordpiece is None:
            ids = self._general_ids(texts)
            return ids, ids[:0], tf.zeros([0], tf.int64)
        plain = tf.strings.regex_full_match(texts, _PLAIN_TEXT)
        cased = tf.strings.lower(texts) if self.lower_case else texts
        ids = self._splitting_wordpiece.tokenize(cased)
        other_rows = tf.where(tf.logical_not(plain))[:, 0]
        other_ids = self._general_ids(tf.gather(texts, other_rows))
        return ids, other_ids, other_rows

    def __call__(self, texts, pad_to_sequence_length=True):
        batch, scalar = self._as_batch(texts)
        ids, other_ids, other_rows = self._tokenize_in_two_parts(batch)
        # Dense from the start: the other rows are written over the fast
        # ones, then [CLS] goes in front and [SEP] after each row's last
        # wordpiece (cheaper than ragged concatenations and gathers).
        lengths = tf.tensor_scatter_nd_update(
            ids.row_lengths(), other_rows[:, None], other_ids.row_lengths()
        )
        lengths = tf.cast(lengths, tf.int32)
        if self.sequence_length is not None:
            lengths = tf.minimum(lengths, self.sequence_length - 2)
        if self.sequence_length is not None and pad_to_sequence_length:
            width = self.sequence_length - 2
        else:
            width = tf.reduce_max(tf.concat([lengths, [0]], axis=0))
        pieces = tf.tensor_scatter_nd_update(
            self._padded(ids, width), other_rows[:, None], self._padded(other_ids, width)
        )
        rows = tf.shape(pieces)[0]
        dense = tf.concat(
            [
                tf.fill([rows, 1], self.cls_id),
                pieces,
                tf.fill([rows, 1], self.pad_id),
            ],
            axis=1,
        )
        sep_at = tf.range(tf.shape(dense)[1])[None, :] == lengths[:, None] + 1
        dense = tf.where(sep_at, self.sep_id, dense)
        return dense[0] if scalar else dense

    def _padded(self, ids, width):
        """Ragged `ids` -> `[rows, width]`, cut or padded with `[PAD]`."""
        if isinstance(width, int):
            return ids.to_tensor(self.pad_id, shape=[None, width])
        shape = tf.stack([ids.nrows(), tf.cast(width, tf.int64)])
        return ids.to_tensor(self.pad_id, shape=shape)

    def id_to_token(self, ids):
        """The wordpiece string of each id (any shape, dense or ragged).

        Args:
            ids: int ids in `[0, vocabulary_size)`.

        Returns:
            `tf.string` tensor of the same shape.
        """
        if isinstance(ids, tf.RaggedTensor):
            return ids.with_flat_values(self.id_to_token(ids.flat_values))
        return tf.gather(self._tokens, ids)

    def detokenize(self, ids):
        """Joins wordpieces back into text, skipping special tokens.

        Words are joined by single spaces (punctuation too: the split into
        words is not undone).

        Args:
            ids: int ids, `[N]` or `[B, N]`, dense or ragged.

        Returns:
            `tf.string`: a scalar for `[N]`, else `[B]`.
        """
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
            if ids.shape.rank == 1:
                return self.detokenize(ids[None])[0]
            ids = tf.RaggedTensor.from_tensor(ids)
        if not ids.dtype.is_integer:
            raise ValueError(
                f"`detokenize` takes integer ids. Received: ids of dtype {ids.dtype.name}"
            )
        ids = ids.with_flat_values(self._ids_in_vocabulary(ids.flat_values))
        ids = tf.cast(ids, tf.int32)
        flat = ids.flat_values
        keep = tf.reduce_all(
            tf.not_equal(flat[:, None], tf.constant(self.special_token_ids)),
            axis=-1,
        )
        kept = tf.ragged.boolean_mask(ids, ids.with_flat_values(keep))
        return self._wordpiece.detokenize(kept)

    def _ids_in_vocabulary(self, ids):
        """`ids`, checked to lie in `[0, vocabulary_size)`: tensorflow-text's
        detokenizer reads outside its table otherwise (a crash, or garbage).
        A `ValueError` eagerly, a failed assertion in a graph."""
        size = self.vocabulary_size
        if not tf.executing_eagerly():
            return validation.checked_ids_below("WordPieceTokenizer.detokenize", ids, size)
        if not bool(validation.ids_below(ids, size)):
            raise ValueError(
                f"WordPieceTokenizer.detokenize received ids outside [0, vocabulary_size="
                f"{size}): min id {int(tf.reduce_min(ids))}, max id {int(tf.reduce_max(ids))}"
            )
        return ids


def _check_thresholds(learn_kwargs):
    """`ValueError` unless the learner's count thresholds leave a range to search."""
    lower = validation.as_int("lower_thresh", learn_kwargs.get("lower_thresh"), 1, allow_none=True)
    upper = learn_kwargs.get("upper_thresh", int(1e7))
    if upper is None:
        return
    if not validation.is_integer(upper) or upper < (lower or 1):
        raise ValueError(
            "`upper_thresh` must be None or an integer >= lower_thresh (the learner "
            "searches a count threshold between them; `learn` sets lower_thresh=1 "
            f"unless given). Received: upper_thresh={upper!r}, lower_thresh={lower!r}"
        )


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
