"""`import keras_dynmask` loads TensorFlow and Keras, and nothing heavy besides.

Each check runs in a fresh Python process, so what this test process has
already imported does not count.
"""

import json
import os
import subprocess
import sys
import textwrap

HEAVY = ("tensorflow_text", "tensorflow_datasets", "matplotlib", "keras_dynmask.text",
         "keras_dynmask.tools")


def loaded_modules(code):
    """Names in `sys.modules` after running `code` in a fresh Python."""
    script = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def heavy(names):
    return {n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY)}


def test_import_keras_dynmask_adds_no_heavy_module():
    baseline = loaded_modules("import tensorflow, keras")
    # `import keras` itself may load matplotlib when it is installed; the
    # package must add none of these beyond what TensorFlow and Keras load.
    assert not heavy(baseline) & {"tensorflow_text", "tensorflow_datasets"}
    with_package = loaded_modules("import tensorflow, keras\nimport keras_dynmask")
    assert "keras_dynmask" in with_package
    added = heavy(with_package) - heavy(baseline)
    assert not added, sorted(added)
    # Nor through the data helpers users import for masking.
    with_data = loaded_modules(
        "import keras_dynmask\nfrom keras_dynmask.data import mask_dataset, distribute_masking"
    )
    added = heavy(with_data) - heavy(baseline)
    assert not added, sorted(added)
    for name in ("tensorflow_text", "tensorflow_datasets", "keras_dynmask.text",
                 "keras_dynmask.tools"):
        assert name not in with_package and name not in with_data


def test_word_piece_tokenizer_resolves_lazily():
    names = loaded_modules(
        """
        import sys
        import keras_dynmask
        assert "keras_dynmask.text" not in sys.modules
        assert "tensorflow_text" not in sys.modules
        tokenizer_class = keras_dynmask.WordPieceTokenizer
        from keras_dynmask.text import WordPieceTokenizer
        assert tokenizer_class is WordPieceTokenizer
        assert "WordPieceTokenizer" in keras_dynmask.__all__
        try:
            keras_dynmask.NoSuchThing
        except AttributeError as error:
            assert "NoSuchThing" in str(error)
        else:
            raise AssertionError("keras_dynmask.NoSuchThing resolved")
        """
    )
    assert "keras_dynmask.text" in names and "tensorflow_text" in names
