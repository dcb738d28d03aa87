import functools
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from plain_tensorflow import PlainTensorFlow  # noqa: E402

# On CI (`CI` set, as CI services do) hypothesis draws the same examples on
# every run, so a failure replays from a fresh clone; elsewhere it explores,
# and prints the seed of a failing run (`--hypothesis-seed` replays it).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


# Test files that share a session-scoped run or process (tests/examples/
# conftest.py's `tiny_demo`: the demo test and the pretrain_mlm tests read
# one tiny training; the `plain_tensorflow` processes below, which the
# pretrain_mlm tests use too). Under pytest-xdist's `--dist loadfile` (`make
# test`) each worker has its own session, so these files go to one worker, as
# one unit, or the run would be made once per worker.
SHARED_RUN_FILES = {  # under tests/
    "examples/test_demo.py": "examples/test_pretrain_mlm.py",
    "test_plain_tensorflow.py": "examples/test_pretrain_mlm.py",
    # Every other user of the plain-TensorFlow processes (each takes a
    # TensorFlow start-up, 5-6 s, once per worker that needs it).
    "examples/test_pretrain_t5.py": "examples/test_pretrain_mlm.py",
    "examples/test_train_causal_lm.py": "examples/test_pretrain_mlm.py",
    "test_dynamic_mlm_masking.py": "examples/test_pretrain_mlm.py",
    "test_span_corruption.py": "examples/test_pretrain_mlm.py",
    "test_masked_lm_model.py": "examples/test_pretrain_mlm.py",
    "test_causal_mask.py": "examples/test_pretrain_mlm.py",
}


# The longest test files (tens of seconds each: trainings, exports,
# service clusters), run first, longest first, so that the last files a
# worker takes are short ones and both workers finish at about the same
# time. Files not listed follow in collection order.
LONGEST_FILES_FIRST = (  # under tests/
    "examples/test_demo.py",
    "examples/test_pretrain_mlm.py",
    "benchmarks/test_smoke.py",
    "data/test_distribute_masking.py",
    "examples/test_pretrain_mlm_granularity.py",
    "examples/test_static_vs_dynamic.py",
    "test_dynamic_mlm_masking_xla.py",
    "test_dynamic_mlm_masking_granularity.py",
    "examples/test_pretrain_t5.py",
    "examples/test_train_causal_lm.py",
    "kernels/test_word_selection.py",
)


def _under_tests(item):
    return os.path.relpath(str(item.path), os.path.dirname(__file__)).replace(os.sep, "/")


def pytest_collection_modifyitems(config, items):
    """Puts `LONGEST_FILES_FIRST` first; a stable sort keeps each file's order."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(_under_tests(item), len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile`, with each of `SHARED_RUN_FILES` sent where its partner
    goes, and the files in collection order (`LONGEST_FILES_FIRST` first)
    instead of xdist's default, most tests first."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False

    class SharedRunScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid):
            scope = super()._split_scope(nodeid)
            for alone, partner in SHARED_RUN_FILES.items():
                if scope.endswith("/" + alone):
                    return scope[: -len(alone)] + partner
            return scope

    return SharedRunScheduling(config, log)


@pytest.fixture(scope="session", autouse=True)
def core_ops_listed_once_a_run(tmp_path_factory):
    """`keras_dynmask.export.core_ops()` computed once a test run, not once a worker.

    It starts a fresh TensorFlow process (4-5 s) and returns the same set
    each time; under pytest-xdist a worker that finds no list computes it
    for real and writes it beside the workers' temporary folders (named
    for this run), where the others read it. The stand-in keeps the real
    function's docstring, so its examples still run.
    """
    from keras_dynmask import export

    base = tmp_path_factory.getbasetemp()
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    listed = base.parent / f"core_ops-{run}.json" if run else base / "core_ops.json"
    compute = export.core_ops

    @functools.lru_cache(maxsize=1)
    @functools.wraps(compute)
    def core_ops():
        try:
            return frozenset(json.loads(listed.read_text()))
        except (OSError, ValueError):
            ops = compute()
            partial = listed.with_name(f"{listed.name}.{os.getpid()}")
            partial.write_text(json.dumps(sorted(ops)))
            os.replace(partial, listed)  # whole or not at all, for a reader
            return ops

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export, "core_ops", core_ops)
        yield


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
def plain_tensorflow():
    """A `PlainTensorFlow` process with core TensorFlow only.

    It refuses `tensorflow_text` and the project's modules
    (`PROJECT_MODULES`): what a TensorFlow Serving build without
    tensorflow-text has. One per test process, shared by its serving checks.
    """
    process = PlainTensorFlow(("tensorflow_text",) + PROJECT_MODULES, with_tensorflow_text=False)
    yield process
    process.close()


@pytest.fixture(scope="session")
def plain_tensorflow_with_text():
    """A `PlainTensorFlow` process with TensorFlow and tensorflow_text only.

    It refuses the project's modules: what serving a text export (whose
    tokenizer ops are tensorflow-text's) outside this repository has.
    """
    process = PlainTensorFlow(PROJECT_MODULES, with_tensorflow_text=True)
    yield process
    process.close()


@pytest.fixture
def no_keras_dynmask_python(plain_tensorflow):
    """Runs code with plain TensorFlow, where keras_dynmask cannot be imported.

    Returns:
        A function `code -> reply`: runs `code` (Python source) in the
        `plain_tensorflow` process, asserts that it succeeded and returns
        the reply (`"stdout"` holds what the code printed).
    """

    def run(code):
        reply = plain_tensorflow.run(code)
        if reply["returncode"] != 0:
            raise AssertionError(
                f"the code failed ({reply['returncode']}):\n{reply['stdout']}\n{reply['stderr']}"
            )
        return reply

    return run
