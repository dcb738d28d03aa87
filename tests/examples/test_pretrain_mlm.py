"""End-to-end test of examples/pretrain_mlm.py and its SavedModel export."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import pretrain_mlm
from keras_dynmask import export

TEXTS = [
    "Return the [MASK] of the list.",
    "No mask in this one.",
    "The [MASK] is closed; [MASK] it again before [MASK].",
]
LONG_TEXT = (
    "Return a new list containing all items from the iterable in ascending "
    "order, with a custom key function to customize the sort order."
)

# Runs in an interpreter that cannot import keras_dynmask nor the
# example code (`run_in_plain_tensorflow`): only tensorflow and
# tensorflow_text serve the export.
SERVE = """
    export_dir, texts, long_text = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    loaded = tf.saved_model.load(export_dir)
    fill = loaded.signatures["serving_default"](text=tf.constant(texts))
    mask = loaded.signatures["mask"]
    batch = tf.constant([long_text, "short text"])
    none = tf.constant([], tf.int64)
    seed = tf.constant([7, 42], tf.int64)
    calls = {
        "fresh_1": mask(text=batch, seed=none),
        "fresh_2": mask(text=batch, seed=none),
        "seeded_1": mask(text=batch, seed=seed),
        "seeded_2": mask(text=batch, seed=seed),
        "default_1": loaded.mask(batch),
        "default_2": loaded.mask(batch),
    }

    def plain(outputs):
        return {k: v.numpy().tolist() for k, v in outputs.items()}

    print(json.dumps({
        "fill": plain(fill),
        "mask": {name: plain(out) for name, out in calls.items()},
        "modules": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
    }, default=bytes.decode))
"""


@pytest.fixture(scope="module")
def trained(tiny_demo):
    # What `pretrain_mlm.run` returned inside the demo's tiny run (`--top-k
    # 3`, and flags with which it learns: `MLM_LEARNS`).
    return tiny_demo["result"]


@pytest.fixture(scope="module")
def served(trained, run_in_plain_tensorflow):
    return run_in_plain_tensorflow(
        SERVE, trained["export_dir"], json.dumps(TEXTS), LONG_TEXT
    )


def test_trains_evaluates_and_writes_tf_serving_layout(trained, tiny_demo, assert_learned):
    history = trained["history"]
    epochs = pretrain_mlm.parse_args(tiny_demo["argv"]).epochs
    assert epochs > 1
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(history[key]) == epochs and np.all(np.isfinite(history[key]))
    # Held-out loss halfway down from the uniform guess's to the token
    # frequencies', on all predicted tokens and on the [MASK]ed ones alone,
    # and more tokens right than a constant guess gets but with probability
    # 1e-6 (the bounds: `assert_learned`). (A tiny run's top-1 at the
    # [MASK]s alone does not beat the most frequent token yet; its accuracy
    # comes from the 10 % of targets left in place, which it learned to
    # copy, while an untrained one copies nothing.)
    mask_id = trained["tokenizer"].mask_id

    def hidden(x, y):
        at = np.take_along_axis(x["token_ids"], x["mask_positions"], axis=1)
        return at == mask_id

    assert_learned(trained, hidden)
    # The held-out masking is fixed: the last epoch's validation is the
    # final evaluation.
    assert trained["evaluation"]["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-5)
    export_dir = trained["export_dir"]
    assert os.path.basename(export_dir) == "1"
    assert os.path.isfile(os.path.join(export_dir, "saved_model.pb"))
    assert os.path.isdir(os.path.join(export_dir, "variables"))
    vocab = os.path.join(export_dir, "assets.extra", "vocab.txt")
    with open(vocab, encoding="utf-8") as handle:
        assert handle.read().split("\n")[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # Only the version folder: no staging folder left behind.
    assert os.listdir(os.path.dirname(export_dir)) == ["1"]


def test_served_in_a_process_without_keras_dynmask(served):
    assert served["modules"] == []


def test_fill_mask_signature_shapes(served):
    fill = served["fill"]
    assert fill["num_masks"] == [1, 0, 3]
    assert np.array(fill["tokens"]).shape == (3, 3, 3)
    assert np.array(fill["scores"]).shape == (3, 3, 3)
    assert np.array(fill["mask_positions"]).shape == (3, 3)
    scores = np.array(fill["scores"])
    assert np.all(np.diff(scores[2], axis=-1) <= 1e-7)  # best first
    assert np.all(scores[1] == 0) and fill["tokens"][1][0] == ["", "", ""]
    assert fill["mask_positions"][0] == [3, -1, -1]  # [CLS] return the [MASK]
    assert fill["filled"][1] == "no mask in this one ."
    assert "[MASK]" not in fill["filled"][0]


def test_filled_holds_the_top_1_guess_at_each_mask(served):
    fill = served["fill"]
    # TEXTS as the tokenizer splits them (lower case, punctuation apart).
    pretokenized = [
        "return the [MASK] of the list .",
        "no mask in this one .",
        "the [MASK] is closed ; [MASK] it again before [MASK] .",
    ]
    for text, tokens, count, filled in zip(
        pretokenized, fill["tokens"], fill["num_masks"], fill["filled"]
    ):
        expected = text
        for candidates in tokens[:count]:
            expected = expected.replace("[MASK]", candidates[0], 1)
        # Wordpieces joined back into words, as the signature detokenizes.
        assert filled == expected.replace(" ##", "")


def test_fill_mask_answers_equal_the_keras_model(trained, served):
    tokenizer, model = trained["tokenizer"], trained["model"]
    ids = tokenizer(TEXTS, pad_to_sequence_length=False).numpy()
    width = model.input["mask_positions"].shape[1]
    positions = np.zeros((len(TEXTS), width), "int32")
    for row, text_ids in enumerate(ids):
        where = np.flatnonzero(text_ids == tokenizer.mask_id)
        positions[row, : len(where)] = where
    logits = model.predict({"token_ids": ids, "mask_positions": positions}, verbose=0)
    probabilities = tf.nn.softmax(logits).numpy()
    fill = served["fill"]
    for row, text_ids in enumerate(ids):
        for m in range(int((text_ids == tokenizer.mask_id).sum())):
            expected = np.argsort(-probabilities[row, m])[:3]
            served_ids = fill["token_ids"][row][m]
            np.testing.assert_allclose(
                fill["scores"][row][m], probabilities[row, m, served_ids], atol=1e-5
            )
            np.testing.assert_allclose(
                probabilities[row, m, served_ids], probabilities[row, m, expected], atol=1e-6
            )
            assert fill["tokens"][row][m] == [tokenizer.vocabulary[i] for i in served_ids]


def test_mask_signature_seed_behaviour(trained, served):
    calls = {k: {n: np.array(v) for n, v in out.items()} for k, out in served["mask"].items()}
    tokenizer = trained["tokenizer"]
    original = tokenizer([LONG_TEXT, "short text"], pad_to_sequence_length=False).numpy()
    for out in calls.values():
        assert out["token_ids"].shape == original.shape == out["labels"].shape
        assert out["mask"].dtype == bool
        np.testing.assert_array_equal(out["padding_mask"], original != 0)
        selected = out["mask"]
        assert selected[0].sum() >= 3 and selected[1].sum() >= 1
        np.testing.assert_array_equal(out["labels"][selected], original[selected])
        assert np.all(out["labels"][~selected] == -100)
        np.testing.assert_array_equal(out["token_ids"][~selected], original[~selected])
        assert not selected[original == tokenizer.cls_id].any()
        positions = out["mask_positions"][0][out["mask_weights"][0] > 0]
        np.testing.assert_array_equal(positions, np.flatnonzero(selected[0]))
    for key in calls["seeded_1"]:
        np.testing.assert_array_equal(calls["seeded_1"][key], calls["seeded_2"][key])
    assert not np.array_equal(calls["fresh_1"]["mask"], calls["fresh_2"]["mask"])
    assert not np.array_equal(calls["default_1"]["mask"], calls["default_2"]["mask"])


def test_saved_model_cli_lists_both_signatures(trained, saved_model_cli_show):
    out = saved_model_cli_show(trained["export_dir"])
    assert "signature_def['serving_default']" in out
    assert "signature_def['mask']" in out
    for name in ("inputs['text']", "inputs['seed']", "outputs['tokens']", "outputs['labels']"):
        assert name in out


def test_held_out_masking_is_fixed(trained):
    tokenizer = trained["tokenizer"]
    texts = tf.data.Dataset.from_tensor_slices([LONG_TEXT, "short text"] * 20)
    ids, steps = pretrain_mlm.packed_dataset(texts, tokenizer, 16, 4, drop_remainder=False)
    masker = pretrain_mlm.make_masker(tokenizer, 0.15, "dict", max_predictions=3)
    held_out = pretrain_mlm.fixed_masking(ids, masker, seed=3)
    first = [x["token_ids"].numpy() for x, _, _ in held_out]
    second = [x["token_ids"].numpy() for x, _, _ in held_out]
    assert len(first) == steps
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_bad_corpus_fails_before_writing_anything(tmp_path, capsys):
    output = tmp_path / "out"
    code = pretrain_mlm.main(
        ["--text-files", str(tmp_path / "missing-*.txt"), "--output", str(output)]
    )
    assert code == 2
    assert "missing-*.txt" in capsys.readouterr().err
    assert not output.exists()
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02")
    assert pretrain_mlm.main(["--text-files", str(tmp_path / "binary.txt"), "--output", str(output)]) == 2
    assert not output.exists()


# The id-level export (`<output>_ids/<version>`): core TensorFlow ops only.


def ids_and_positions(tokenizer, texts, width):
    """Tokenized texts `[B, T]` and their `[MASK]` positions, 0-padded to `width`."""
    ids = tokenizer(texts, pad_to_sequence_length=False).numpy()
    positions = np.zeros((len(texts), width), "int32")
    for row, text_ids in enumerate(ids):
        where = np.flatnonzero(text_ids == tokenizer.mask_id)
        positions[row, : len(where)] = where
    return ids, positions


def test_each_export_lists_its_ops_and_the_ids_export_only_core_ones(trained, capsys):
    ids_dir = trained["ids_export_dir"]
    assert ids_dir == os.path.join(os.path.dirname(trained["export_dir"]) + "_ids", "1")
    text_ops = export.saved_model_ops(trained["export_dir"])
    ids_ops = export.saved_model_ops(ids_dir)
    needed = export.required_ops(trained["export_dir"])
    with capsys.disabled():
        print(f"\ntext export: {len(text_ops)} ops; not core TensorFlow: {needed}")
        print(f"ids export: {len(ids_ops)} ops: {' '.join(ids_ops)}")
    assert export.required_ops(ids_dir) == []
    # The masking and the model are in the ids export, the tokenizer is not.
    for op in ("StatelessRandomUniformFullIntV2", "TopKV2", "Einsum", "Softmax"):
        assert op in ids_ops
    # The tokenizer's ops are the text export's only non-core ones.
    assert {"FastWordpieceTokenizeWithOffsets", "CaseFoldUTF8", "NormalizeUTF8"} <= set(needed)
    assert set(needed) == set(text_ops) - set(ids_ops) - export.core_ops()


def test_saved_model_cli_cannot_load_the_text_export(trained, saved_model_cli_run):
    outputs, reply = saved_model_cli_run(
        trained["export_dir"], "serving_default", {"text": np.array(TEXTS)}, check=False
    )
    assert reply["returncode"] != 0 and outputs == {}
    assert "Op type not registered" in reply["stderr"]


def test_saved_model_cli_fill_mask_on_ids_equals_the_keras_model(
    trained, saved_model_cli_run
):
    tokenizer, model = trained["tokenizer"], trained["model"]
    width = model.input["mask_positions"].shape[1]
    ids, positions = ids_and_positions(tokenizer, TEXTS, width)
    outputs, _ = saved_model_cli_run(
        trained["ids_export_dir"],
        "serving_default",
        {"token_ids": ids.astype("int32"), "positions": positions},
    )
    assert outputs["top_ids"].shape == outputs["scores"].shape == (3, width, 3)
    logits = model.predict({"token_ids": ids, "mask_positions": positions}, verbose=0)
    probabilities = tf.nn.softmax(logits).numpy()
    best = -np.sort(-probabilities, axis=-1)[..., :3]
    np.testing.assert_allclose(outputs["scores"], best, atol=1e-5)
    served = np.take_along_axis(probabilities, outputs["top_ids"], axis=-1)
    np.testing.assert_allclose(served, outputs["scores"], atol=1e-5)


def test_saved_model_cli_mask_on_ids_equals_the_python_masking(trained, saved_model_cli_run):
    tokenizer = trained["tokenizer"]
    ids = tokenizer([LONG_TEXT, "short text"], pad_to_sequence_length=False).numpy()
    ids = ids.astype("int32")
    seed = np.array([7, 42], "int64")
    seeded, _ = saved_model_cli_run(
        trained["ids_export_dir"], "mask", {"token_ids": ids, "seed": seed}
    )
    masker = pretrain_mlm.make_masker(
        tokenizer, 0.15, "dict", max_predictions=pretrain_mlm.max_predictions_for(32, 0.15)
    )
    expected = masker(tf.constant(ids), training=True, seed=tf.constant(seed))
    expected = {k: v.numpy() for k, v in expected.items()}
    expected["padding_mask"] = ids != tokenizer.pad_id
    assert sorted(seeded) == sorted(expected)
    for key in expected:
        np.testing.assert_array_equal(seeded[key], expected[key], err_msg=key)

    fresh, _ = saved_model_cli_run(
        trained["ids_export_dir"],
        "mask",
        {"token_ids": ids, "seed": np.zeros([0], "int64")},
    )
    selected = fresh["mask"]
    assert selected[0].sum() >= 3 and selected[1].sum() >= 1
    assert not selected[ids == tokenizer.cls_id].any()
    np.testing.assert_array_equal(fresh["labels"][selected], ids[selected])
    assert np.all(fresh["labels"][~selected] == -100)
    np.testing.assert_array_equal(fresh["token_ids"][~selected], ids[~selected])
    positions = fresh["mask_positions"][0][fresh["mask_weights"][0] > 0]
    np.testing.assert_array_equal(positions, np.flatnonzero(selected[0]))


def test_serving_client_command_line_on_both_exports(trained, served, capsys):
    import serving_client

    export_dir = trained["export_dir"]
    assert serving_client.main([export_dir, "--json", TEXTS[0], TEXTS[2]]) == 0
    first, third = json.loads(capsys.readouterr().out)
    fill = served["fill"]
    assert [first["text"], third["text"]] == [TEXTS[0], TEXTS[2]]
    assert [first["filled"], third["filled"]] == [fill["filled"][0], fill["filled"][2]]
    assert [[c[0] for c in m] for m in third["masks"]] == fill["tokens"][2]
    assert serving_client.main([export_dir, TEXTS[0]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [TEXTS[0], "  -> " + fill["filled"][0]]
    assert lines[2].startswith("  [MASK] #1: " + fill["tokens"][0][0][0] + " ")
    # Id mode: [CLS] [MASK] [SEP] through the id-level export.
    assert serving_client.main([trained["ids_export_dir"], "--ids", "--json", "2 4 3"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert len(answer["masks"]) == 1 and len(answer["masks"][0]) == 3
    assert answer["filled"] == answer["masks"][0][0][0]  # alone, nothing to join to
    # --tokenize: a signature's inputs, in the vocabulary of the run.
    ids_dir, tokenizer = trained["ids_export_dir"], trained["tokenizer"]
    expected = tokenizer([TEXTS[2]], pad_to_sequence_length=False).numpy().tolist()
    assert serving_client.main([ids_dir, "--tokenize", "--json", TEXTS[2]]) == 0
    positions = [i for i, t in enumerate(expected[0]) if t == tokenizer.mask_id]
    assert json.loads(capsys.readouterr().out) == {"token_ids": expected, "positions": [positions]}
    assert len(positions) == 3
    assert serving_client.main([ids_dir, "--tokenize", "--seed=7,42", TEXTS[2]]) == 0
    assert capsys.readouterr().out == f"token_ids={expected};seed=[7, 42]\n"
    # Text to the id-level export: tokenized here, then the text export's answers.
    assert serving_client.main([ids_dir, "--json", TEXTS[2]]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert [[c[0] for c in m] for m in answer["masks"]] == fill["tokens"][2]
    assert serving_client.main(["--help"]) == 2
