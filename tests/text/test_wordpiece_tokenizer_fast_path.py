"""WordPieceTokenizer's fast path (BERT's own split on plain texts) against the
original regex_split path, on the whole demo corpus and on exotic text."""

import os
import sys

import pytest
import tensorflow as tf
import tensorflow_text as tf_text

from keras_dynmask.text import WordPieceTokenizer
from keras_dynmask.text import wordpiece_tokenizer as module

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
from corpora import load_corpus  # noqa: E402

_SPLIT = f"{module._LITERAL_SPECIALS}|{module._SPACE}|{module._SINGLE_CHARS}"
_KEEP = f"{module._LITERAL_SPECIALS}|{module._SINGLE_CHARS}"
EXOTIC = [
    "a\u2028b c\u00a0d", "x\x0by\x0cz\x85w", "[MASK] [mask] a[UNK]b [MAS K] [[SEP]",
    "\u00b4 \u00df \u2500 \U0001f600 \u00bd \ufb01 \u01c4 \u2026", "  lead  trail  ", "",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4",
    "e\u0301 \u200b zero", "a" * 150 + " b", "The [CLS] mat [ma", "[MASK",
]


def reference_words(tokenizer, texts):
    """`split_words` as it was first written (tensorflow-text's regex_split)."""
    texts = tf.strings.regex_replace(texts, r"[\p{Cc}\p{Cf}]", " ")
    words = tf_text.regex_split(texts, _SPLIT, _KEEP)
    flat = words.flat_values
    special = tf.strings.regex_full_match(flat, module._LITERAL_SPECIALS)
    if tokenizer.lower_case:
        normal = tf_text.normalize_utf8(tf_text.case_fold_utf8(flat), "NFD")
        normal = tf.strings.regex_replace(normal, r"\p{Mn}", "")
    else:
        normal = tf_text.normalize_utf8(flat, "NFC")
    normal = tf.strings.regex_replace(normal, module._SPACE, "")
    normal = tf.where(special, flat, normal)
    words = words.with_flat_values(normal)
    return tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)


@pytest.fixture(scope="module")
def corpus_texts():
    corpus = load_corpus()
    return list(corpus.train) + list(corpus.validation) + EXOTIC


@pytest.fixture(scope="module")
def vocabulary(corpus_texts):
    # One refinement pass instead of the learner's four: any realistic
    # WordPiece vocabulary serves a comparison of two paths (a quarter of the time).
    return WordPieceTokenizer.learn(
        corpus_texts[:3000], vocabulary_size=2000, num_iterations=1
    ).vocabulary


@pytest.mark.parametrize("lower_case", [True, False])
def test_tokens_identical_to_the_regex_split_path_on_the_demo_corpus(
    corpus_texts, vocabulary, lower_case
):
    tokenizer = WordPieceTokenizer(vocabulary, lower_case=lower_case)
    plain = 0
    for start in range(0, len(corpus_texts), 2048):
        batch = tf.constant(corpus_texts[start : start + 2048])
        words = reference_words(tokenizer, batch)
        assert tokenizer.split_words(batch).to_list() == words.to_list()
        want = tokenizer._wordpiece.tokenize(words).merge_dims(1, 2)
        assert tokenizer.tokenize(batch).to_list() == want.to_list()
        plain += int(tf.reduce_sum(tf.cast(
            tf.strings.regex_full_match(batch, module._PLAIN_TEXT), tf.int32)))
    # Nearly all of the corpus takes the fast path, the exotic texts do not.
    assert 0.99 * len(corpus_texts) < plain < len(corpus_texts) - 8


def test_plain_text_pattern_is_printable_ascii_without_special_tokens():
    import random
    import re

    rng = random.Random(0)
    alphabet = "[]UNKCLSEPMAx \t\n\u00e9\x0b"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
             for _ in range(20000)] + ["[MASK]", "a[MASK]b", "[MA[MASK]", "[[UNK]", "[UNK"]
    got = tf.strings.regex_full_match(texts, module._PLAIN_TEXT).numpy().tolist()
    want = [all(ord(c) in module._PLAIN_CHARS for c in t)
            and not re.search(r"\[(?:UNK|CLS|SEP|MASK)\]", t) for t in texts]
    assert got == want and 0 < sum(want) < len(want)


def test_mask_in_text_stays_one_token_in_a_batch_of_plain_texts(vocabulary):
    tokenizer = WordPieceTokenizer(vocabulary)
    ids = tokenizer.tokenize(["the value is [MASK].", "the value is mask.", "é [UNK]"])
    assert ids[0].numpy().tolist().count(tokenizer.mask_id) == 1
    assert tokenizer.mask_id not in ids[1].numpy().tolist()
    assert ids[2].numpy().tolist()[-1] == tokenizer.unk_id


def test_special_tokens_only_vocabulary_still_tokenizes():
    tokenizer = WordPieceTokenizer(list(module.SPECIAL_TOKENS))
    ids = tokenizer.tokenize(["a [MASK] b"]).to_list()
    assert ids == [[tokenizer.unk_id, tokenizer.mask_id, tokenizer.unk_id]]
