"""Tests for keras_dynmask.text.wordpiece_tokenizer.WordPieceTokenizer."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask.text import WordPieceTokenizer
from keras_dynmask.text.wordpiece_tokenizer import SPECIAL_TOKENS

TEXTS = [
    "The cat sat on the mat.",
    "The dog sat on the log, and the cat watched.",
    "Return the number of items in a container.",
    "Raise ValueError if the argument is invalid!",
    "Cats and dogs are animals; mats and logs are things.",
] * 4


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer.learn(TEXTS, vocabulary_size=120, sequence_length=12)


def tokens(tokenizer, ids):
    return [t.decode() for t in tokenizer.id_to_token(ids).numpy().tolist()]


def test_learned_vocabulary_starts_with_the_special_tokens(tokenizer):
    assert tokenizer.vocabulary[:5] == list(SPECIAL_TOKENS)
    assert tokenizer.special_token_ids == [0, 1, 2, 3, 4]
    assert (tokenizer.pad_id, tokenizer.mask_id) == (0, 4)
    assert 40 < tokenizer.vocabulary_size <= 130
    assert len(set(tokenizer.vocabulary)) == tokenizer.vocabulary_size
    for word in ("the", "cat", "sat", "."):
        assert word in tokenizer.vocabulary


def test_learning_is_deterministic():
    one = WordPieceTokenizer.learn(TEXTS, vocabulary_size=120)
    two = WordPieceTokenizer.learn(
        tf.data.Dataset.from_tensor_slices(TEXTS), vocabulary_size=120
    )
    assert one.vocabulary == two.vocabulary


def test_call_adds_cls_sep_and_pads(tokenizer):
    ids = tokenizer(["the cat sat.", "the dog sat on the log."])
    assert ids.dtype == tf.int32 and ids.shape == (2, 12)
    assert tokens(tokenizer, ids[0])[:6] == ["[CLS]", "the", "cat", "sat", ".", "[SEP]"]
    assert ids[0, 6:].numpy().tolist() == [0] * 6
    short = tokenizer(["the cat sat.", "the dog sat on the log."], pad_to_sequence_length=False)
    assert short.shape == (2, 9)
    np.testing.assert_array_equal(short, ids[:, :9])


# Plain rows (the fast path) between rows that take the general split
# (accents, CJK, a spelled-out [MASK]), one longer than sequence_length.
MIXED = [
    "the cat sat.",
    "le café sat on the mât.",
    "",
    "the [MASK] sat on the log.",
    "the dog sat on the log and the cat watched the dog and the log.",
    "猫 sat",
]


@pytest.mark.parametrize("sequence_length", [None, 3, 12])
@pytest.mark.parametrize("pad_to_sequence_length", [True, False])
def test_call_lays_out_the_wordpieces_of_tokenize(sequence_length, pad_to_sequence_length):
    tokenizer = WordPieceTokenizer.learn(TEXTS, vocabulary_size=120,
                                         sequence_length=sequence_length)
    pieces = tokenizer.tokenize(MIXED).to_list()
    keep = len(max(pieces, key=len)) if sequence_length is None else sequence_length - 2
    rows = [[tokenizer.cls_id] + p[:keep] + [tokenizer.sep_id] for p in pieces]
    width = (sequence_length if sequence_length and pad_to_sequence_length
             else max(len(r) for r in rows))
    want = [r + [tokenizer.pad_id] * (width - len(r)) for r in rows]
    ids = tokenizer(MIXED, pad_to_sequence_length=pad_to_sequence_length)
    assert ids.dtype == tf.int32
    assert ids.numpy().tolist() == want
    # An empty batch keeps the width of [CLS] [SEP], or sequence_length.
    empty = tokenizer(tf.constant([], tf.string), pad_to_sequence_length=pad_to_sequence_length)
    assert tuple(empty.shape) == (0, sequence_length if sequence_length and pad_to_sequence_length else 2)


def test_truncation_keeps_cls_and_sep(tokenizer):
    ids = tokenizer(["the cat sat on the mat and the dog sat on the log ."])
    row = tokens(tokenizer, ids[0])
    assert len(row) == 12 and row[0] == "[CLS]" and row[-1] == "[SEP]"
    assert "[PAD]" not in row


def test_scalar_input_and_unbounded_length():
    tokenizer = WordPieceTokenizer.learn(TEXTS, vocabulary_size=120)
    assert tokenizer.sequence_length is None
    ids = tokenizer("the cat sat on the mat and the dog sat on the log.")
    assert ids.shape.rank == 1 and ids.shape[0] == 16
    ragged = tokenizer.tokenize(["the cat", "sat"])
    assert isinstance(ragged, tf.RaggedTensor)
    assert ragged.row_lengths().numpy().tolist() == [2, 1]


def test_mask_token_survives_anywhere_in_the_text(tokenizer):
    ids = tokenizer.tokenize(["[MASK]", "the [MASK] sat.", "the[MASK]sat", "([MASK])."])
    as_tokens = [tokens(tokenizer, row) for row in ids]
    assert as_tokens[0] == ["[MASK]"]
    assert as_tokens[1] == ["the", "[MASK]", "sat", "."]
    assert as_tokens[2] == ["the", "[MASK]", "sat"]
    assert as_tokens[3] == ["(", "[MASK]", ")", "."] or as_tokens[3][1] == "[MASK]"
    # Lower case "[mask]" is ordinary text, and "[PAD]" is never produced.
    lowered = tokens(tokenizer, tokenizer.tokenize(["the [mask] [PAD]"])[0])
    assert "[MASK]" not in lowered and "[PAD]" not in lowered


def test_lower_case_accents_and_unknown_characters(tokenizer):
    same = tokenizer.tokenize(["THE Cät SAT", "the cat sat"]).to_list()
    assert same[0] == same[1]
    unknown = tokens(tokenizer, tokenizer.tokenize(["the 猫 sat"])[0])
    assert unknown == ["the", "[UNK]", "sat"]
    cased = WordPieceTokenizer(tokenizer.vocabulary, lower_case=False)
    assert tokens(cased, cased.tokenize(["The"])[0]) != ["the"]


def test_detokenize_skips_special_tokens(tokenizer):
    ids = tokenizer(["the cat sat on the mat.", "the dog"])
    text = tokenizer.detokenize(ids).numpy().tolist()
    assert text == [b"the cat sat on the mat .", b"the dog"]
    assert tokenizer.detokenize(ids[1]).numpy() == b"the dog"


@pytest.mark.parametrize(
    "bad_ids, dtype, quoted",
    [
        ([[5, "size"]], tf.int32, "max id {size}"),
        ([[-1, 5]], tf.int32, "min id -1"),
        ([[5, 2**32 + 5]], tf.int64, f"max id {2**32 + 5}"),  # not wrapped to 5 by a cast
    ],
)
def test_detokenize_rejects_ids_outside_the_vocabulary(tokenizer, bad_ids, dtype, quoted):
    # tensorflow-text's detokenizer would read outside its table (a crash).
    size = tokenizer.vocabulary_size
    ids = tf.constant([[size if i == "size" else i for i in row] for row in bad_ids], dtype)
    with pytest.raises(ValueError, match=quoted.format(size=size)):
        tokenizer.detokenize(ids)
    in_graph = tf.function(tokenizer.detokenize)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside"):
        in_graph(ids)
    with pytest.raises(ValueError, match="float32"):
        tokenizer.detokenize(tf.constant([[5.0]]))
    # The edges of the vocabulary are fine.
    assert tokenizer.detokenize(tf.constant([[0, size - 1]])).shape == (1,)


def test_numpy_scalars_configure_like_python_values(tokenizer):
    again = WordPieceTokenizer(
        tokenizer.vocabulary, sequence_length=np.int64(12), lower_case=np.bool_(True)
    )
    assert (type(again.sequence_length), type(again.lower_case)) == (int, bool)
    np.testing.assert_array_equal(again(TEXTS[:3]), tokenizer(TEXTS[:3]))
    learned = WordPieceTokenizer.learn(TEXTS, vocabulary_size=np.int32(120), sequence_length=12)
    assert learned.vocabulary == tokenizer.vocabulary


def test_runs_in_tf_data_and_tf_function(tokenizer):
    ds = tf.data.Dataset.from_tensor_slices(TEXTS[:4]).map(tokenizer)
    assert [x.shape for x in ds] == [(12,)] * 4
    batched = tf.data.Dataset.from_tensor_slices(TEXTS[:4]).batch(2).map(tokenizer)
    assert [x.shape for x in batched] == [(2, 12)] * 2

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def fn(texts):
        return tokenizer(texts, pad_to_sequence_length=False)

    np.testing.assert_array_equal(fn(tf.constant(TEXTS[:3])), tokenizer(TEXTS[:3])[:, : fn(tf.constant(TEXTS[:3])).shape[1]])


def test_survives_a_saved_model(tokenizer, tmp_path):
    module = tf.Module()
    module.tokenizer = tokenizer
    module.tokenize = tf.function(
        lambda texts: tokenizer(texts),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    np.testing.assert_array_equal(
        loaded.tokenize(tf.constant(TEXTS[:3])), tokenizer(TEXTS[:3])
    )


def test_vocabulary_file_round_trip(tokenizer, tmp_path):
    path = tokenizer.save_vocabulary(str(tmp_path / "vocab.txt"))
    again = WordPieceTokenizer.from_file(path, sequence_length=12)
    assert again.vocabulary == tokenizer.vocabulary
    np.testing.assert_array_equal(again(TEXTS[:2]), tokenizer(TEXTS[:2]))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        WordPieceTokenizer.from_file(str(tmp_path / "missing.txt"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocabulary": ["a", "b"]}, r"\['\[PAD\]', '\[UNK\]'"),
        ({"vocabulary": "[PAD] [UNK]"}, "vocabulary='\\[PAD\\] \\[UNK\\]'"),
        ({"vocabulary": list(SPECIAL_TOKENS) + ["a", "a"]}, "repeated tokens \\['a'\\]"),
        ({"sequence_length": 2}, "sequence_length=2"),
        ({"lower_case": "yes"}, "lower_case='yes'"),
        ({"sequence_length": np.bool_(True)}, "sequence_length=np.True_|sequence_length=True"),
    ],
)
def test_bad_configuration_quotes_the_value(kwargs, message):
    kwargs.setdefault("vocabulary", list(SPECIAL_TOKENS) + ["a"])
    with pytest.raises(ValueError, match=message):
        WordPieceTokenizer(**kwargs)


def test_bad_learning_input():
    with pytest.raises(ValueError, match="vocabulary_size=5"):
        WordPieceTokenizer.learn(TEXTS, vocabulary_size=5)
    with pytest.raises(ValueError, match="empty"):
        WordPieceTokenizer.learn([], vocabulary_size=50)
    with pytest.raises(ValueError, match="single string"):
        WordPieceTokenizer.learn("the cat", vocabulary_size=50)
    with pytest.raises(ValueError, match="no words"):
        WordPieceTokenizer.learn(["  ", "\n"], vocabulary_size=50)
    with pytest.raises(ValueError, match="shape"):
        WordPieceTokenizer(list(SPECIAL_TOKENS)).tokenize([["a"]])


@pytest.mark.parametrize(
    "kwargs, quoted",
    [
        (dict(upper_thresh=0), "upper_thresh=0, lower_thresh=1"),
        (dict(upper_thresh=3, lower_thresh=5), "upper_thresh=3, lower_thresh=5"),
        (dict(lower_thresh=0), "lower_thresh=0"),
        (dict(upper_thresh=2.5), "upper_thresh=2.5"),
    ],
)
def test_thresholds_that_leave_no_search_range_are_refused(kwargs, quoted):
    # With upper_thresh=0 the learner ignored the size (343 pieces for 300).
    with pytest.raises(ValueError, match=quoted):
        WordPieceTokenizer.learn(TEXTS, vocabulary_size=120, **kwargs)


def test_thresholds_that_leave_a_range_keep_to_the_size():
    learned = WordPieceTokenizer.learn(TEXTS, vocabulary_size=120, upper_thresh=None)
    assert len(learned.vocabulary) <= 120
    assert learned.vocabulary == WordPieceTokenizer.learn(TEXTS, vocabulary_size=120).vocabulary
