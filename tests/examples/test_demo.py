"""examples/demo.py (`make demo`) runs end to end, here with tiny settings."""

import demo


def test_demo_trains_exports_and_answers_through_the_saved_model(tmp_path, tiny_flags, capsys):
    output = tmp_path / "mlm_encoder"
    assert demo.main(tiny_flags + ["--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "Held-out masked LM (fixed masking): loss" in printed
    assert "loaded with plain TensorFlow" in printed
    for query in demo.QUERIES:
        assert query in printed
    assert printed.count("[MASK] #1:") == len(demo.QUERIES)
    assert "without a seed two calls differ:" in printed  # almost surely True
    assert "with the same seed they are identical: True" in printed
    assert "make demo finished in" in printed
    assert (output / "1" / "saved_model.pb").is_file()


def test_demo_reports_a_bad_corpus(tmp_path, capsys):
    output = tmp_path / "out"
    assert demo.main(["--tfds", "no_such_corpus_xyz", "--output", str(output)]) == 2
    assert "no_such_corpus_xyz" in capsys.readouterr().err
    assert not output.exists()
