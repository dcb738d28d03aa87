"""End-to-end test of examples/train_causal_lm.py and its SavedModel export."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import train_causal_lm

PROMPTS = ["Return the", "If the file does not exist, raise"]

# Runs without keras_dynmask and the example code (`run_in_plain_tensorflow`).
SERVE = """
    loaded = tf.saved_model.load(sys.argv[1])
    prompts = tf.constant(json.loads(sys.argv[2]))
    generate = loaded.signatures["serving_default"]
    seed = tf.constant([3, 4], tf.int64)
    none = tf.constant([], tf.int64)
    out = {
        "next": loaded.signatures["next_token"](text=prompts),
        "seeded_1": generate(text=prompts, seed=seed),
        "seeded_2": generate(text=prompts, seed=seed),
        "fresh_1": generate(text=prompts, seed=none),
        "fresh_2": generate(text=prompts, seed=none),
    }
    print(json.dumps(
        {k: {n: t.numpy().tolist() for n, t in v.items()} for k, v in out.items()},
        default=bytes.decode,
    ))
"""


@pytest.fixture(scope="module")
def trained(train_tiny):
    return train_tiny(train_causal_lm, "causal_lm", "--max-new-tokens", "6", "--top-k", "5")


@pytest.fixture(scope="module")
def served(trained, run_in_plain_tensorflow):
    return run_in_plain_tensorflow(SERVE, trained["export_dir"], json.dumps(PROMPTS))


def test_packed_examples_keep_passages_apart(trained):
    tokenizer = trained["tokenizer"]
    texts = tf.data.Dataset.from_tensor_slices(["the cat sat", "a dog", "return the list"] * 4)
    ds, steps = train_causal_lm.packed_examples(texts, tokenizer, 8, 2)
    x, y, w = next(iter(ds))
    ids, seg, pos = (x[k].numpy() for k in ("token_ids", "segment_ids", "position_ids"))
    assert ids.shape == seg.shape == pos.shape == y.shape == w.shape == (2, 8)
    np.testing.assert_array_equal(ids[:, 1:], y.numpy()[:, :-1])
    for row in range(2):
        assert np.all(np.diff(seg[row]) >= 0) and seg[row, 0] == 1
        starts = np.flatnonzero(ids[row] == tokenizer.cls_id)
        np.testing.assert_array_equal(pos[row, starts[starts > 0]], 0)
        # No loss where the next token starts another passage.
        boundary = np.flatnonzero(np.diff(seg[row]) != 0)
        assert np.all(w.numpy()[row, boundary] == 0)
    assert steps >= 1


def test_trains_samples_and_exports(trained):
    assert np.isfinite(trained["history"]["val_loss"][0])
    assert len(trained["samples"]) == len(train_causal_lm.PROMPTS)
    assert trained["samples"][0].startswith("return the")
    assert os.listdir(os.path.dirname(trained["export_dir"])) == ["1"]
    assert os.listdir(os.path.dirname(trained["ids_export_dir"])) == ["1"]


def test_generate_signature_in_plain_tensorflow(served):
    seeded = served["seeded_1"]
    ids = np.array(seeded["token_ids"])
    assert ids.shape[0] == 2 and ids.shape[1] >= 6
    assert seeded["text"][0].startswith("return the")
    assert served["seeded_1"] == served["seeded_2"]
    assert served["fresh_1"] != served["fresh_2"]


def test_next_token_equals_the_keras_model(trained, served):
    model, tokenizer = trained["model"], trained["tokenizer"]
    for row, prompt in enumerate(PROMPTS):
        ids = [tokenizer.cls_id] + tokenizer.tokenize(prompt).numpy().tolist()
        inputs = {
            "token_ids": np.array([ids], "int32"),
            "segment_ids": np.ones((1, len(ids)), "int32"),
            "position_ids": np.arange(len(ids), dtype="int32")[None],
        }
        logits = model.predict(inputs, verbose=0)[0, -1]
        probabilities = tf.nn.softmax(logits).numpy()
        served_ids = served["next"]["token_ids"][row]
        np.testing.assert_allclose(
            served["next"]["scores"][row], probabilities[served_ids], atol=1e-5
        )
        np.testing.assert_allclose(
            np.sort(probabilities)[::-1][:5], probabilities[served_ids], atol=1e-6
        )


def test_saved_model_cli_lists_both_signatures(trained, saved_model_cli_show):
    out = saved_model_cli_show(trained["export_dir"])
    assert "signature_def['serving_default']" in out
    assert "signature_def['next_token']" in out


def test_bad_corpus_fails_before_writing_anything(tmp_path):
    output = tmp_path / "out"
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert train_causal_lm.main(["--text-files", str(empty), "--output", str(output)]) == 2
    assert not output.exists()


def test_the_ids_export_serves_next_token_with_core_ops_only(trained, saved_model_cli_run):
    from keras_dynmask import export

    ids_dir = trained["ids_export_dir"]
    assert export.required_ops(ids_dir) == []
    assert export.required_ops(trained["export_dir"])  # the tokenizer's ops
    model, tokenizer = trained["model"], trained["tokenizer"]
    prompts = [[tokenizer.cls_id] + tokenizer.tokenize(p).numpy().tolist() for p in PROMPTS]
    width = max(len(p) for p in prompts)
    ids = np.array([p + [tokenizer.pad_id] * (width - len(p)) for p in prompts], "int32")
    outputs, _ = saved_model_cli_run(ids_dir, "serving_default", {"token_ids": ids})
    assert outputs["top_ids"].shape == outputs["scores"].shape == (len(PROMPTS), 5)
    for row, prompt in enumerate(prompts):
        inputs = {
            "token_ids": np.array([prompt], "int32"),
            "segment_ids": np.ones((1, len(prompt)), "int32"),
            "position_ids": np.arange(len(prompt), dtype="int32")[None],
        }
        probabilities = tf.nn.softmax(model.predict(inputs, verbose=0)[0, -1]).numpy()
        np.testing.assert_allclose(
            outputs["scores"][row], np.sort(probabilities)[::-1][:5], atol=1e-5
        )
        np.testing.assert_allclose(
            probabilities[outputs["top_ids"][row]], outputs["scores"][row], atol=1e-5
        )
