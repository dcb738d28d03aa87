"""`import keras_dynmask` loads TensorFlow and Keras, and nothing heavy besides.

The checks run in one fresh Python process, stage after stage, so what this
test process has already imported does not count.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("tensorflow_text", "tensorflow_datasets", "matplotlib", "keras_dynmask.text",
         "keras_dynmask.tools")


def loaded_modules(*stages):
    """Names in `sys.modules` after each of `stages`, run in turn in one fresh Python.

    Modules only accumulate, so the names after a stage are what a fresh
    process that ran the stages up to it would hold; one process saves a
    TensorFlow start-up per stage. Returns one set per stage (a single set
    for a single stage).
    """
    report = "\nimport json as _json, sys as _sys\nprint(_json.dumps(sorted(_sys.modules)))\n"
    script = "".join(textwrap.dedent(code) + report for code in stages)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(printed) == len(stages), result.stdout[-3000:]
    found = [set(json.loads(line)) for line in printed]
    return found[0] if len(stages) == 1 else found


def heavy(names):
    return {n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY)}


# Ops of tensorflow-text's whitespace tokenizer: registered only where it is loaded.
WHITESPACE_OP = "TFText>WhitespaceTokenizeWithOffsetsV2"

# The stages the tests read, run in turn in one fresh Python (one
# TensorFlow start-up): the lazy tokenizer comes last, as it loads what the
# earlier stages must not. `{text}` and `{core}` are two SavedModels, one
# holding a tensorflow-text op.
STAGES = (
    "import tensorflow, keras",
    "import keras_dynmask",
    # Nor through the data helpers users import for masking.
    "from keras_dynmask.data import mask_dataset, distribute_masking",
    # Nor by listing the ops an export needs, one of them tensorflow-text's.
    """
    from keras_dynmask import export
    found = export.required_ops({text!r}), export.required_ops({core!r})
    assert found == ([{op!r}], []), found
    """,
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
    """,
)


def saved_models(directory):
    """`(text, core)`: a SavedModel tokenizing with tensorflow-text, one with core ops."""
    import tensorflow as tf
    import tensorflow_text

    tokenizer = tensorflow_text.WhitespaceTokenizer()
    text, core = tf.Module(), tf.Module()
    text.tokenize = tf.function(
        lambda texts: tokenizer.tokenize(texts).to_tensor(""),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    core.add = tf.function(lambda x: x + 1, input_signature=[tf.TensorSpec([None], tf.int32)])
    paths = str(directory / "text"), str(directory / "core")
    tf.saved_model.save(text, paths[0], signatures=text.tokenize)
    tf.saved_model.save(core, paths[1], signatures=core.add)
    return paths


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """`loaded_modules(*STAGES)`: the names after each stage."""
    text, core = saved_models(tmp_path_factory.mktemp("exports"))
    filled = [s.replace("{text!r}", repr(text)).replace("{core!r}", repr(core))
              .replace("{op!r}", repr(WHITESPACE_OP)) for s in STAGES]
    return loaded_modules(*filled)


def test_import_keras_dynmask_adds_no_heavy_module(stages):
    baseline, with_package, with_data, _, _ = stages
    # `import keras` itself may load matplotlib when it is installed; the
    # package must add none of these beyond what TensorFlow and Keras load.
    assert not heavy(baseline) & {"tensorflow_text", "tensorflow_datasets"}
    assert "keras_dynmask" in with_package and "keras_dynmask" not in baseline
    added = heavy(with_package) - heavy(baseline)
    assert not added, sorted(added)
    added = heavy(with_data) - heavy(baseline)
    assert not added, sorted(added)
    for name in ("tensorflow_text", "tensorflow_datasets", "keras_dynmask.text",
                 "keras_dynmask.tools"):
        assert name not in with_package and name not in with_data


def test_listing_an_exports_ops_imports_no_tensorflow_text(stages):
    # The stage asserted the ops it found: the tokenizer's for one export,
    # none for the other.
    names = stages[3]
    assert "keras_dynmask.export" in names and "tensorflow_text" not in names


def test_word_piece_tokenizer_resolves_lazily(stages):
    names = stages[-1]
    assert "keras_dynmask.text" in names and "tensorflow_text" in names
