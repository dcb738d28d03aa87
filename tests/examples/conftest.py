"""The example scripts import their siblings, as they do when run.

Fixtures the example tests share: tiny training flags and runs (one of
them, `tiny_demo`, the masked-LM run the demo test and the pretrain_mlm
tests all read), a check that a tiny run learned, and checks of an export
from outside this repository (in the `plain_tensorflow` processes of
`tests/conftest.py`).
"""

import contextlib
import io
import json
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))
from distribution_bounds import binomial_upper_critical  # noqa: E402

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


# Added to `_TINY` where a test needs the tiny run to learn: with these a
# masked LM or span-corruption model gets clearly below the uniform guess in
# a few hundred (or, for T5, 60) steps of a few milliseconds each; tracing
# and exporting, not these steps, take most of a tiny run's time.
MLM_LEARNS = [
    "--epochs", "3",
    "--steps-per-epoch", "100",
    "--batch-size", "32",
    "--learning-rate", "1e-2",
    "--max-passages", "3000",
    "--hidden-dim", "64",
    "--intermediate-dim", "128",
]
T5_LEARNS = [
    "--steps-per-epoch", "60",
    "--batch-size", "16",
    "--learning-rate", "1e-2",
    "--max-passages", "1500",
]


@pytest.fixture(scope="session")
def tiny_flags():
    """Command-line flags for a seconds-long run of an example."""
    return list(_TINY)


@pytest.fixture(scope="session")
def learning_flags():
    """Flags added to the tiny ones where a run must learn, per script name."""
    return {"pretrain_mlm": list(MLM_LEARNS), "pretrain_t5": list(T5_LEARNS)}


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


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory, tiny_flags):
    """`examples/demo.py` run once on the tiny flags, shared by its readers.

    `demo.main` trains through `pretrain_mlm.run`, so one run serves both
    the demo test (what it prints, what it writes) and the pretrain_mlm
    tests (what `run` returned), instead of each training its own tiny
    encoder. The flags are `_TINY` plus `MLM_LEARNS` (so the run learns
    measurably) and `--top-k 3`.

    `--verbose` is left to the demo's default: its output goes to a
    `StringIO`, not a terminal, as `make demo > log` would.

    Returns:
        A dict: `"argv"` (the flags), `"status"` (what `demo.main` returned), `"printed"` (its
        standard output), `"output"` (the `--output` path, a
        `pathlib.Path`), `"result"` (what `pretrain_mlm.run` returned
        inside it) and `"queries"` (every query `demo.pick_queries`
        admitted; the demo shows the first `demo.QUERY_COUNT`).
    """
    import demo
    import pretrain_mlm

    output = tmp_path_factory.mktemp("demo") / "mlm_encoder"
    results, queries = [], []
    real_run, real_pick = pretrain_mlm.run, demo.pick_queries

    def recorded_run(*args, **kwargs):
        results.append(real_run(*args, **kwargs))
        return results[-1]

    def recorded_pick(*args, **kwargs):
        queries.append(real_pick(*args, **kwargs))
        return queries[-1]

    flags = list(tiny_flags)
    verbose = flags.index("--verbose")
    del flags[verbose : verbose + 2]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(pretrain_mlm, "run", recorded_run)
        patch.setattr(demo, "pick_queries", recorded_pick)
        argv = flags + MLM_LEARNS + ["--top-k", "3", "--output", str(output)]
        status = demo.main(argv)
    assert len(results) == 1, "demo.main must train through pretrain_mlm.run once"
    assert len(queries) == 1, "demo.main must pick its queries once"
    return {
        "argv": argv,
        "status": status,
        "printed": printed.getvalue(),
        "output": output,
        "result": results[0],
        "queries": queries[0],
    }


def _loss_bound(log_probabilities, labels):
    """Mean cross-entropy of `labels`, and the bound `assert_learned` puts on it."""
    n, vocabulary_size = log_probabilities.shape
    loss = float(-log_probabilities[np.arange(n), labels].mean())
    counts = np.bincount(labels, minlength=vocabulary_size)
    shares = counts[counts > 0] / n
    unigram_entropy = float(-(shares * np.log(shares)).sum())
    return loss, (math.log(vocabulary_size) + unigram_entropy) / 2, unigram_entropy


@pytest.fixture(scope="session")
def assert_learned():
    """Checks that a training run learned, against bounds from its held-out data.

    Returns:
        A function `(result, hidden=None) -> stats`, for what a training
        script's `run` returned (`"model"`, `"validation"`: `(x, y,
        sample_weight)` batches, `"evaluation"`). It predicts every held-out
        batch itself, takes the `n` tokens of weight 1, and asserts:

        - its own count of correct top-1 tokens is the accuracy `evaluate`
          reported (so the numbers below are the reported ones);
        - the loss (mean cross-entropy per token) is below the midpoint of
          `ln V`, what the uniform guess scores, and `H`, the entropy of
          the held-out tokens' own frequencies, which is what the best
          constant distribution scores, fitted to them in hindsight: the
          model has gained at least half of what knowing the token
          frequencies alone gains. With `hidden`, a function `(x, y) ->
          bool array like y` marking the tokens the input does not show
          (a masked LM sees 10 % of its targets unchanged, and learns to
          copy them first), this holds on those tokens too, on their own
          `H`;
        - the correct count beats a constant guess: the best one is the
          most frequent held-out token (share `p0`, again in hindsight, and
          at least the uniform guess's `1 / V`); a predictor right at rate
          `p0` gets Binomial(`n`, `p0`) of the `n` tokens right, so the
          model's count must reach that distribution's upper 1e-6 critical
          value (`binomial_upper_critical`, an exact tail sum).

        It returns a dict of the numbers.
    """

    def check(result, hidden=None):
        model, evaluation = result["model"], result["evaluation"]
        labels, weights, logits, hides = [], [], [], []
        for x, y, weight in result["validation"].as_numpy_iterator():
            logits.append(np.asarray(model.predict_on_batch(x), np.float64))
            labels.append(y.reshape(-1))
            weights.append(weight.reshape(-1))
            hides.append(np.ones(y.size, bool) if hidden is None else hidden(x, y).reshape(-1))
        vocabulary_size = logits[0].shape[-1]
        logits = np.concatenate([z.reshape(-1, vocabulary_size) for z in logits])
        labels, weights, hides = map(np.concatenate, (labels, weights, hides))
        assert set(np.unique(weights)) <= {0.0, 1.0}  # Counts, not weights.
        kept = weights == 1
        logits, labels, hides = logits[kept], labels[kept].astype(np.int64), hides[kept]
        n = len(labels)
        assert n >= 500, f"too few held-out tokens ({n}) for the bounds to mean much"

        log_probabilities = logits - logits.max(axis=1, keepdims=True)
        log_probabilities -= np.log(np.exp(log_probabilities).sum(axis=1, keepdims=True))
        correct = int((logits.argmax(axis=1) == labels).sum())
        # `evaluate` ran the same model on the same batches; 1 token of
        # slack for a near-tie that float rounding resolves differently.
        assert abs(evaluation["accuracy"] * n - correct) <= 1, (evaluation, correct, n)

        loss, halfway, unigram_entropy = _loss_bound(log_probabilities, labels)
        hidden_loss, hidden_halfway, _ = _loss_bound(log_probabilities[hides], labels[hides])
        p0 = max(np.bincount(labels).max() / n, 1 / vocabulary_size)
        critical = binomial_upper_critical(n, p0, 1e-6)
        stats = {
            "n": n, "hidden": int(hides.sum()), "correct": correct, "critical": critical,
            "p0": p0, "loss": loss, "uniform_loss": math.log(vocabulary_size),
            "unigram_entropy": unigram_entropy, "halfway": halfway,
            "hidden_loss": hidden_loss, "hidden_halfway": hidden_halfway,
        }
        assert loss < halfway and evaluation["loss"] < halfway, stats
        assert hides.sum() >= n / 2 and hidden_loss < hidden_halfway, stats
        assert correct >= critical, stats
        return stats

    return check


@pytest.fixture(scope="session")
def run_in_plain_tensorflow(plain_tensorflow_with_text):
    """Runs a script where only TensorFlow and tensorflow_text can be imported.

    Returns:
        A function `(script, export_dir, *argv) -> answer`: runs `script`
        (Python source; `tf`, `json` and `sys` are imported for it and
        `BLOCKED` names the refused modules) in the
        `plain_tensorflow_with_text` process, which cannot import
        `keras_dynmask` nor the example scripts, with `sys.argv[1:]` =
        `[export_dir, *argv]`, in the export's parent folder; asserts it
        succeeds and returns the JSON of its last line of output.
    """

    def run(script, export_dir, *argv):
        reply = plain_tensorflow_with_text.run(
            script, export_dir, *argv, cwd=os.path.dirname(export_dir)
        )
        assert reply["returncode"] == 0, reply["stderr"][-3000:]
        return json.loads(reply["stdout"].strip().splitlines()[-1])

    return run


@pytest.fixture(scope="session")
def saved_model_cli_show(plain_tensorflow):
    """`saved_model_cli show --all` of an export, with core TensorFlow only.

    Returns:
        A function `export_dir -> str`, the command's output; asserts that
        it succeeds.
    """

    def show(export_dir):
        reply = plain_tensorflow.saved_model_cli("show", "--all", "--dir", export_dir)
        assert reply["returncode"] == 0, reply["stderr"][-3000:]
        return reply["stdout"]

    return show


@pytest.fixture(scope="session")
def saved_model_cli_run(tmp_path_factory, plain_tensorflow):
    """`saved_model_cli run` of one signature, with core TensorFlow only.

    TensorFlow's own tool runs in the `plain_tensorflow` process, which
    refuses tensorflow_text and the project's modules (`PROJECT_MODULES`),
    in a scratch working folder: an export it serves needs neither.

    Returns:
        A function `(export_dir, signature, inputs, check=True) -> (outputs,
        reply)`: `inputs` maps input keys to NumPy arrays (passed as `.npy`
        files with `--inputs`); `outputs` maps output keys to the arrays the
        command wrote with `--outdir` (empty if it failed); `reply` is the
        `PlainTensorFlow` reply (`"returncode"`, `"stdout"`, `"stderr"`).
        With `check`, it asserts that the command succeeded.
    """

    def run(export_dir, signature, inputs, check=True):
        work = tmp_path_factory.mktemp("saved_model_cli")
        paths = []
        for key, value in inputs.items():
            path = work / f"{key}.npy"
            np.save(path, value)
            paths.append(f"{key}={path}")
        outdir = work / "outputs"
        reply = plain_tensorflow.saved_model_cli(
            "run",
            "--dir", export_dir,
            "--tag_set", "serve",
            "--signature_def", signature,
            "--inputs", ";".join(paths),
            "--outdir", str(outdir),
            cwd=work,
        )
        if check:
            assert reply["returncode"] == 0, reply["stderr"][-3000:]
        outputs = {}
        if outdir.is_dir():
            outputs = {p.stem: np.load(p) for p in outdir.glob("*.npy")}
        return outputs, reply

    return run


@pytest.fixture(scope="session", autouse=True)
def each_vocabulary_learned_once():
    """The examples' `learn_tokenizer`, learning each vocabulary once a worker.

    Tiny runs of several scripts learn the same vocabulary from the same
    passages (2-3 s each); the first learns it through the real function
    (printing as it does), later ones get a tokenizer of the vocabulary it
    learned, with their own `sequence_length`.
    """
    import example_common
    from keras_dynmask.text import WordPieceTokenizer

    learn = example_common.learn_tokenizer
    vocabularies = {}

    def learn_once(corpus, vocabulary_size, sequence_length=None, verbose=True):
        key = (corpus.name, corpus.train, vocabulary_size)
        if key not in vocabularies:
            tokenizer = learn(corpus, vocabulary_size, sequence_length, verbose)
            vocabularies[key] = tokenizer.vocabulary
            return tokenizer
        tokenizer = WordPieceTokenizer(vocabularies[key], sequence_length=sequence_length)
        if verbose:
            print(f"WordPiece vocabulary: {tokenizer.vocabulary_size} tokens")
        return tokenizer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(example_common, "learn_tokenizer", learn_once)
        yield
