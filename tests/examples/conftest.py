"""The example scripts import their siblings, as they do when run.

Fixtures the example tests share: tiny training flags and runs, and
checks of an export from outside this repository.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples")
EXAMPLES = os.path.abspath(EXAMPLES)
if EXAMPLES not in sys.path:
    sys.path.insert(0, EXAMPLES)

# Flags that make the examples train for seconds instead of minutes.
_TINY = [
    "--epochs", "1",
    "--steps-per-epoch", "3",
    "--vocabulary-size", "300",
    "--sequence-length", "32",
    "--batch-size", "8",
    "--hidden-dim", "32",
    "--num-layers", "1",
    "--num-heads", "2",
    "--intermediate-dim", "64",
    "--max-passages", "600",
    "--verbose", "0",
]


@pytest.fixture(scope="session")
def tiny_flags():
    """Command-line flags for a seconds-long run of an example."""
    return list(_TINY)


@pytest.fixture(scope="session")
def train_tiny(tmp_path_factory, tiny_flags):
    """Trains an example script for seconds, exporting to a fresh folder.

    Returns:
        A function `(script, model_name, *flags) -> result`: runs
        `script.run(script.parse_args(...))` on the tiny flags plus `flags`,
        with `--output` a new temporary `.../model_name`, and returns what
        `run` returns.
    """

    def train(script, model_name, *flags):
        output = tmp_path_factory.mktemp("saved_models") / model_name
        args = script.parse_args(tiny_flags + ["--output", str(output), *flags])
        return script.run(args)

    return train


# Refuses to import the named modules, then imports TensorFlow and
# tensorflow_text: what a serving process outside this repository has.
_WITHOUT_MODULES = textwrap.dedent(
    """
    import importlib.abc, json, sys

    BLOCKED = {blocked!r}

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(name + " is blocked in this process")
            return None

    sys.meta_path.insert(0, Blocked())
    import tensorflow as tf
    import tensorflow_text  # noqa: F401
    """
)

# The package and the example code: an export must be served without them.
PROJECT_MODULES = (
    "keras_dynmask",
    "example_common",
    "pretrain_mlm",
    "train_causal_lm",
    "id_level_export",
    "transformer_blocks",
    "serving_client",
)


@pytest.fixture(scope="session")
def run_in_plain_tensorflow():
    """Runs a script in a fresh interpreter without the project's modules.

    Returns:
        A function `(script, export_dir, *argv) -> answer`: runs `script`
        (Python source; `tf`, `json` and `sys` are imported for it and
        `BLOCKED` names the refused modules) with `sys.argv[1:]` =
        `[export_dir, *argv]`, in the export's parent folder and with an
        empty `PYTHONPATH`, so neither `keras_dynmask` nor the example
        scripts can be imported; asserts it exits 0 and returns the JSON of
        its last line of output.
    """

    def run(script, export_dir, *argv):
        source = _WITHOUT_MODULES.format(blocked=PROJECT_MODULES) + textwrap.dedent(script)
        completed = subprocess.run(
            [sys.executable, "-c", source, export_dir, *argv],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=os.path.dirname(export_dir),
            env={**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        return json.loads(completed.stdout.strip().splitlines()[-1])

    return run


@pytest.fixture(scope="session")
def saved_model_cli_show():
    """`saved_model_cli show --all` of an export.

    Returns:
        A function `export_dir -> str`, the command's output; asserts that
        it exits 0.
    """

    def show(export_dir):
        cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
        completed = subprocess.run(
            [cli, "show", "--all", "--dir", export_dir],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        return completed.stdout

    return show


@pytest.fixture(scope="session")
def saved_model_cli_run(tmp_path_factory):
    """`saved_model_cli run` of one signature, in a process of its own.

    The venv's `saved_model_cli` runs under `python -X importtime`, with an
    empty `PYTHONPATH` and a scratch working folder, so the import log
    proves which modules its process loaded: it must never import
    tensorflow_text nor the project's modules (`PROJECT_MODULES`).

    Returns:
        A function `(export_dir, signature, inputs, check=True) -> (outputs,
        completed)`: `inputs` maps input keys to NumPy arrays (passed as
        `.npy` files with `--inputs`); `outputs` maps output keys to the
        arrays the command wrote with `--outdir` (empty if it failed);
        `completed` is the `subprocess.CompletedProcess`. With `check`, it
        asserts that the command exited 0.
    """
    import numpy as np

    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    blocked = ("tensorflow_text",) + PROJECT_MODULES

    def run(export_dir, signature, inputs, check=True):
        work = tmp_path_factory.mktemp("saved_model_cli")
        paths = []
        for key, value in inputs.items():
            path = work / f"{key}.npy"
            np.save(path, value)
            paths.append(f"{key}={path}")
        outdir = work / "outputs"
        completed = subprocess.run(
            [
                sys.executable, "-X", "importtime", cli, "run",
                "--dir", export_dir,
                "--tag_set", "serve",
                "--signature_def", signature,
                "--inputs", ";".join(paths),
                "--outdir", str(outdir),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=work,
            env={**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        imported = {
            line.rsplit("|", 1)[-1].strip()
            for line in completed.stderr.splitlines()
            if line.startswith("import time:")
        }
        assert "tensorflow" in imported, completed.stderr[-3000:]
        assert not {m for m in imported if m.split(".")[0] in blocked}
        if check:
            assert completed.returncode == 0, completed.stderr[-3000:]
        outputs = {}
        if outdir.is_dir():
            outputs = {p.stem: np.load(p) for p in outdir.glob("*.npy")}
        return outputs, completed

    return run
