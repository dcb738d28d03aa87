"""The serving checks' `PlainTensorFlow` process refuses what it must refuse.

Every "served without the package" test rests on this: if the process could
import `keras_dynmask` (installed in the venv) or, for the core kind,
`tensorflow_text`, those tests would prove nothing.
"""

import numpy as np


def test_blocked_imports_fail_and_the_process_goes_on(plain_tensorflow):
    for module in ("keras_dynmask", "keras_dynmask.kernels.selection", "tensorflow_text",
                   "pretrain_mlm", "example_common"):
        reply = plain_tensorflow.run(f"import {module}")
        assert reply["returncode"] == 1, reply
        assert f"{module.split('.')[0]} is blocked in this process" in reply["stderr"]
    reply = plain_tensorflow.run("print(tf.reduce_sum(tf.range(4)).numpy(), sys.argv[1:])", "a", 2)
    assert reply == {"returncode": 0, "stdout": "6 ['a', '2']\n", "stderr": "",
                     "blocked_modules_loaded": []}


def test_the_text_kind_has_tensorflow_text_but_not_the_package(plain_tensorflow_with_text):
    reply = plain_tensorflow_with_text.run("import tensorflow_text; print(BLOCKED)")
    assert reply["returncode"] == 0, reply["stderr"]
    assert "tensorflow_text" not in reply["stdout"] and "keras_dynmask" in reply["stdout"]
    assert plain_tensorflow_with_text.run("import keras_dynmask")["returncode"] == 1


def test_exit_codes_and_exceptions_are_reported(plain_tensorflow, tmp_path):
    assert plain_tensorflow.run("raise SystemExit(3)")["returncode"] == 3
    assert plain_tensorflow.run("raise SystemExit")["returncode"] == 0
    failed = plain_tensorflow.run("1 / 0")
    assert failed["returncode"] == 1 and "ZeroDivisionError" in failed["stderr"]
    printed = plain_tensorflow.run("import os; print(os.getcwd())", cwd=tmp_path)
    assert printed["stdout"].strip() == str(tmp_path)


def test_saved_model_cli_calls_start_afresh(plain_tensorflow, tmp_path):
    # `run` marks --tag_set and --signature_def required; a later `show`
    # must not inherit that, nor a flag value from the call before.
    import tensorflow as tf

    module = tf.Module()
    module.double = tf.function(
        lambda x: {"y": 2 * x}, input_signature=[tf.TensorSpec([None], tf.float32)]
    )
    export_dir = str(tmp_path / "export")
    tf.saved_model.save(module, export_dir, signatures={"serving_default": module.double})
    np.save(tmp_path / "x.npy", np.array([1.0, 2.5], np.float32))
    reply = plain_tensorflow.saved_model_cli(
        "run", "--dir", export_dir, "--tag_set", "serve", "--signature_def",
        "serving_default", "--inputs", f"x={tmp_path / 'x.npy'}", "--outdir", str(tmp_path / "out"),
    )
    assert reply["returncode"] == 0, reply["stderr"][-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "y.npy"), [2.0, 5.0])
    shown = plain_tensorflow.saved_model_cli("show", "--all", "--dir", export_dir)
    assert shown["returncode"] == 0, shown["stderr"][-2000:]
    assert "signature_def['serving_default']" in shown["stdout"]
    again = plain_tensorflow.saved_model_cli(
        "run", "--dir", export_dir, "--tag_set", "serve", "--signature_def",
        "serving_default", "--inputs", f"x={tmp_path / 'x.npy'}", "--outdir", str(tmp_path / "out"),
    )
    assert again["returncode"] != 0 and "exists" in again["stderr"]  # --overwrite is off again
