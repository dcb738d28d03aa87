"""End-to-end test of examples/pretrain_t5.py and its SavedModel export."""

import math
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

import pretrain_t5

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))
from span_reference import restore  # noqa: E402
from span_reference import strip  # noqa: E402

TEXTS = [
    "Return the <extra_id_0> of the list.",
    "No marker in this one.",
    "<extra_id_0> opens, <extra_id_1> closes.",
]

# Runs in an interpreter that can import neither keras_dynmask nor the
# example code: TensorFlow and tensorflow_text serve the export.
SERVE = """
    export_dir, texts = sys.argv[1], json.loads(sys.argv[2])
    loaded = tf.saved_model.load(export_dir)
    out = loaded.signatures["serving_default"](text=tf.constant(texts))
    print(json.dumps({
        "filled": [t.decode() for t in out["filled"].numpy()],
        "predicted_ids": out["predicted_ids"].numpy().tolist(),
        "modules": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
    }))
"""


@pytest.fixture(scope="module")
def trained(train_tiny, learning_flags):
    # Enough steps that the held-out numbers mean something.
    return train_tiny(pretrain_t5, "t5_span_corruption", *learning_flags["pretrain_t5"])


def test_trains_and_reports_a_held_out_loss(trained, assert_learned):
    evaluation = trained["evaluation"]
    assert math.isfinite(evaluation["loss"]) and evaluation["loss"] > 0
    # Every target token is hidden from the encoder (a sentinel stands in
    # for its span); the decoder sees only the ones before it. Held-out loss
    # halfway down from the uniform guess's to the token frequencies', and
    # more target tokens right than a constant guess gets but with
    # probability 1e-6 (the bounds: `assert_learned`).
    assert_learned(trained)
    assert len(trained["history"]["loss"]) == 1
    assert os.path.isdir(trained["export_dir"])


def test_sentinels_lie_above_the_vocabulary_and_batches_round_trip(trained):
    corrupter, tokenizer = trained["corrupter"], trained["tokenizer"]
    assert min(corrupter.sentinel_ids) == tokenizer.vocabulary_size
    assert corrupter.inputs_length == 32 and corrupter.eos_id == tokenizer.sep_id
    raw_length, _ = corrupter.lengths_for(32)
    rows = np.random.default_rng(0).integers(5, tokenizer.vocabulary_size, (8, raw_length))
    out = corrupter(tf.constant(rows, tf.int32), seed=tf.constant([1, 2]))
    for row, inputs, targets in zip(rows, out["inputs"].numpy(), out["targets"].numpy()):
        inputs = strip(inputs, eos_id=corrupter.eos_id)
        targets = strip(targets, eos_id=corrupter.eos_id)
        assert restore(inputs, targets, corrupter.sentinel_ids) == row.tolist()


def test_spans_decoded_past_the_markers_fill_nothing(trained):
    # A stand-in model that decodes three spans whatever the text: the
    # texts have 1, 0 and 2 markers.
    corrupter, tokenizer = trained["corrupter"], trained["tokenizer"]
    words = [i for i, t in enumerate(tokenizer.vocabulary) if t.isalpha() and len(t) > 2][:3]
    s0, s1, s2 = corrupter.sentinel_ids[:3]
    decoded = [s0, words[0], s1, words[1], s2, words[2], corrupter.eos_id, tokenizer.pad_id]

    def model(inputs):
        batch = tf.shape(inputs["decoder_ids"])[0]
        logits = tf.one_hot(decoded, corrupter.vocabulary_size)[None]
        return tf.tile(logits, [batch, 1, 1])

    out = pretrain_t5.fill_spans(
        model, tokenizer, tf.constant(TEXTS), corrupter.sentinel_ids, corrupter.eos_id,
        32, len(decoded),
    )
    first, second = (tokenizer.vocabulary[i] for i in words[:2])
    assert [t.decode() for t in out["filled"].numpy()] == [
        f"Return the [{first}] of the list.",
        TEXTS[1],
        f"[{first}] opens, [{second}] closes.",
    ]


def test_marked_text_is_encoded_with_the_sentinels_in_order(trained):
    corrupter, tokenizer = trained["corrupter"], trained["tokenizer"]
    ids, pieces = pretrain_t5.encode_marked_text(
        tokenizer, tf.constant(TEXTS), corrupter.sentinel_ids, corrupter.eos_id, 32
    )
    assert pieces.row_lengths().numpy().tolist() == [2, 1, 3]
    rows = [strip(r, pad_token_id=tokenizer.pad_id, eos_id=corrupter.eos_id) for r in ids.numpy()]
    sentinels = [[t for t in r if t in corrupter.sentinel_ids] for r in rows]
    assert sentinels == [corrupter.sentinel_ids[:1], [], corrupter.sentinel_ids[:2]]
    assert rows[2][0] == corrupter.sentinel_ids[0]
    plain = tokenizer.tokenize(tf.constant(["No marker in this one."])).to_list()[0]
    assert rows[1] == plain


def test_export_fills_the_spans_in_plain_tensorflow(trained, run_in_plain_tensorflow):
    import json

    answer = run_in_plain_tensorflow(SERVE, trained["export_dir"], json.dumps(TEXTS))
    assert answer["modules"] == []
    filled = answer["filled"]
    assert filled[1] == TEXTS[1]
    assert filled[0].startswith("Return the [") and filled[0].endswith("] of the list.")
    assert filled[2].count("[") == 2 and filled[2].endswith("] closes.")
    assert "extra_id" not in "".join(filled)
    predicted = np.array(answer["predicted_ids"])
    width = min(trained["corrupter"].targets_length, 24)
    assert predicted.shape == (3, width)
    assert predicted.min() >= 0 and predicted.max() < trained["corrupter"].vocabulary_size
