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
import tensorflow as tf

from keras_dynmask import export
from saved_model_samples import WHITESPACE_OP
from saved_model_samples import whitespace_tokenizer_export

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


# The first stages the tests read, by name; the `stages` fixture runs them
# in turn in one fresh Python (one TensorFlow start-up), then
# `export_stage`, then `TOKENIZER_STAGE`, which loads what the others must not.
STAGES = {
    "baseline": "import tensorflow, keras",
    "package": "import keras_dynmask",
    # Nor through the data helpers users import for masking.
    "data": "from keras_dynmask.data import mask_dataset, distribute_masking",
}
TOKENIZER_STAGE = """
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


def export_stage(text_export, core_export, core_ops):
    """Lists the ops of two exports (one holds a tensorflow-text op) and
    asserts what it finds.

    `core_ops` is this process's `export.core_ops()`, passed on, so the
    stage does not start a TensorFlow process of its own to list them.
    """
    return f"""
    from keras_dynmask import export
    core_ops = {sorted(core_ops)!r}
    found = tuple(export.required_ops(path, available_ops=core_ops)
                  for path in ({text_export!r}, {core_export!r}))
    assert found == ([{WHITESPACE_OP!r}], []), found
    """


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """`{stage name: the module names after it}`, the stages run in turn."""
    directory = tmp_path_factory.mktemp("exports")
    text_export = whitespace_tokenizer_export(str(directory / "text"))
    core = tf.Module()
    core.add = tf.function(lambda x: x + 1, input_signature=[tf.TensorSpec([None], tf.int32)])
    core_export = str(directory / "core")
    tf.saved_model.save(core, core_export, signatures=core.add)
    named = {
        **STAGES,
        "export": export_stage(text_export, core_export, export.core_ops()),
        "tokenizer": TOKENIZER_STAGE,
    }
    return dict(zip(named, loaded_modules(*named.values())))


def test_import_keras_dynmask_adds_no_heavy_module(stages):
    baseline, with_package, with_data = (stages[k] for k in ("baseline", "package", "data"))
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
    names = stages["export"]
    assert "keras_dynmask.export" in names and "tensorflow_text" not in names


def test_word_piece_tokenizer_resolves_lazily(stages):
    names = stages["tokenizer"]
    assert "keras_dynmask.text" in names and "tensorflow_text" in names
