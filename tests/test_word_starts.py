"""`keras_dynmask.word_starts` for the three vocabulary styles."""

import numpy as np
import pytest
import tensorflow as tf

import keras_dynmask


@pytest.mark.parametrize(
    "style, vocabulary, expected",
    [
        ("wordpiece", ["[PAD]", "[CLS]", "play", "##ing", "##s", "run"], [1, 1, 1, 0, 0, 1]),
        ("sentencepiece", ["<pad>", "</s>", "\u2581play", "ing", "s", "\u2581run"], [0, 0, 1, 0, 0, 1]),
        ("bytelevel", ["<s>", "</s>", "\u0120play", "ing", "s", "\u0120run"], [0, 0, 1, 0, 0, 1]),
    ],
)
def test_each_style_marks_word_starts(style, vocabulary, expected):
    table = keras_dynmask.word_starts(vocabulary, style)
    assert table.dtype == bool and table.shape == (len(vocabulary),)
    np.testing.assert_array_equal(table, np.array(expected, bool))


@pytest.mark.parametrize("style", ["sentencepiece", "bytelevel"])
def test_masking_with_each_style_selects_whole_words(style):
    marker = "\u2581" if style == "sentencepiece" else "\u0120"
    # ids 0-2 special, 3 mask; words: [4 5 6] [7] [8 9]
    vocabulary = ["<pad>", "<s>", "</s>", "<mask>", marker + "pl", "ay", "ing", marker + "a", marker + "b", "c"]
    table = keras_dynmask.word_starts(vocabulary, style)
    layer = keras_dynmask.DynamicMLMMasking(
        vocabulary_size=len(vocabulary), mask_token_id=3, special_token_ids=[1, 2],
        granularity="word", word_starts=table, mask_rate=0.5, output_mode="dict", seed=0,
    )
    ids = tf.constant([[1, 4, 5, 6, 7, 8, 9, 2, 0]] * 200)
    mask = layer(ids)["mask"].numpy()
    for word in ([1, 2, 3], [4], [5, 6]):
        pieces = mask[:, word]
        assert (pieces.all(1) | ~pieces.any(1)).all()
    assert not mask[:, [0, 7, 8]].any()
    assert 0.3 < mask[:, 1].mean() < 0.7


def test_a_vocabulary_file_is_read_line_by_line(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\nhello\n##s\nworld\n", encoding="utf-8")
    np.testing.assert_array_equal(keras_dynmask.word_starts(str(path), "wordpiece"), [1, 1, 0, 1])
    np.testing.assert_array_equal(keras_dynmask.word_starts(path, "wordpiece"), [1, 1, 0, 1])


def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="style='bpe'"):
        keras_dynmask.word_starts(["a"], "bpe")
    with pytest.raises(ValueError, match="vocabulary"):
        keras_dynmask.word_starts([], "wordpiece")
    with pytest.raises(ValueError, match="type int"):
        keras_dynmask.word_starts(["a", 3], "wordpiece")
