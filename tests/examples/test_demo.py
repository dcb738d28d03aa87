"""examples/demo.py (`make demo`) runs end to end, here with tiny settings."""

import demo


def test_demo_trains_exports_and_answers_through_the_saved_model(tiny_demo):
    # `tiny_demo` ran `demo.main` on the tiny flags (the run the
    # pretrain_mlm tests read too).
    output, printed = tiny_demo["output"], tiny_demo["printed"]
    assert tiny_demo["status"] == 0
    assert "Held-out masked LM (fixed masking): loss" in printed
    assert "loaded with plain TensorFlow" in printed
    for query in demo.QUERIES:
        assert query in printed
    # One answer per query from the text export, one from the id-level export.
    assert printed.count("[MASK] #1:") == len(demo.QUERIES) + 1
    # demo.show_masking: eight unseeded calls all agree with probability < 1e-7.
    assert (
        "without a seed 8 calls are not all identical: True; "
        "with the same seed they are identical: True" in printed
    )
    assert "make demo finished in" in printed
    assert (output / "1" / "saved_model.pb").is_file()
    ids_export = output.parent / "mlm_encoder_ids" / "1"
    assert (ids_export / "saved_model.pb").is_file()
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Exports (ops needed"))
    text_path, text_ops, ids_path, ids_ops = lines[start + 1 : start + 5]
    assert text_path.endswith(str(output / "1")) and "FastWordpieceTokenizeWithOffsets" in text_ops
    assert ids_path.endswith(str(ids_export)) and "none: any TensorFlow build" in ids_ops
    served = printed.split("Fill-mask through the id-level export, served by saved_model_cli")[1]
    text, filled, answer = served.split("\n\n")[1].splitlines()[:3]
    assert text == "return the [MASK] of the list ."
    # (The top-1 may be a "##" piece, joined to "the"; the equality below is exact.)
    assert filled.startswith("  -> return the") and "[MASK]" not in filled
    best = answer[len("  [MASK] #1: "):].split(" ")[0]
    assert filled == "  -> " + text.replace("[MASK]", best).replace(" ##", "")
    assert answer.startswith("  [MASK] #1: ")


def test_demo_reports_a_bad_corpus(tmp_path, capsys):
    output = tmp_path / "out"
    assert demo.main(["--tfds", "no_such_corpus_xyz", "--output", str(output)]) == 2
    assert "no_such_corpus_xyz" in capsys.readouterr().err
    assert not output.exists()
