"""examples/pretrain_mlm.py's packing: full rows, no padding, nothing reordered.

The README's claim ("packed into rows of 128 tokens ..., no padding"),
checked against the tokenizer's own ids for the same passages.
"""

import numpy as np
import pytest
import tensorflow as tf

import pretrain_mlm
from keras_dynmask.text import WordPieceTokenizer

WORDS = (
    "the a of to in is for on with as by an be this that from it or are value list "
    "file path name return string object module class data error type number"
).split()


@pytest.fixture(scope="module")
def passages_and_tokenizer():
    rng = np.random.RandomState(0)
    passages = [
        " ".join(rng.choice(WORDS, size=rng.randint(3, 40))) + "." for _ in range(120)
    ]
    return passages, WordPieceTokenizer.learn(passages, vocabulary_size=120)


@pytest.mark.parametrize("sequence_length, batch_size", [(16, 4), (33, 2)])
def test_rows_are_full_and_hold_the_passages_in_order(
    passages_and_tokenizer, sequence_length, batch_size
):
    passages, tokenizer = passages_and_tokenizer
    dataset, steps = pretrain_mlm.packed_dataset(
        tf.data.Dataset.from_tensor_slices(passages), tokenizer, sequence_length, batch_size
    )
    batches = [b.numpy() for b in dataset]
    assert len(batches) == steps == int(dataset.cardinality())
    rows = np.concatenate(batches)
    assert rows.shape == (steps * batch_size, sequence_length) and rows.dtype == np.int32
    # No padding anywhere; each row is [CLS] body [SEP].
    assert not (rows == tokenizer.pad_id).any()
    np.testing.assert_array_equal(rows[:, 0], tokenizer.cls_id)
    np.testing.assert_array_equal(rows[:, -1], tokenizer.sep_id)
    # The bodies, back to back, are the passages' ids joined by [SEP].
    stream = []
    for ids in tokenizer.tokenize(tf.constant(passages)).to_list():
        stream.extend(ids + [tokenizer.sep_id])
    body = rows[:, 1:-1].reshape(-1)
    assert len(stream) - len(body) < (sequence_length - 2) * (batch_size + 1)
    np.testing.assert_array_equal(body, stream[: len(body)])
