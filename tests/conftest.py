import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# On CI (`CI` set, as CI services do) hypothesis draws the same examples on
# every run, so a failure replays from a fresh clone; elsewhere it explores,
# and prints the seed of a failing run (`--hypothesis-seed` replays it).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


# Test files that share a session-scoped run (tests/examples/conftest.py's
# `tiny_demo`: the demo test and the pretrain_mlm tests read one tiny
# training). Under pytest-xdist's `--dist loadfile` (`make test`) each worker
# has its own session, so these files go to one worker, as one unit, or the
# run would be trained once per worker.
SHARED_RUN_FILES = {"examples/test_demo.py": "examples/test_pretrain_mlm.py"}  # under tests/


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile`, with each of `SHARED_RUN_FILES` sent where its partner goes."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedRunScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid):
            scope = super()._split_scope(nodeid)
            for alone, partner in SHARED_RUN_FILES.items():
                if scope.endswith("/" + alone):
                    return scope[: -len(alone)] + partner
            return scope

    return SharedRunScheduling(config, log)


def run_without_keras_dynmask(code, timeout=300):
    """Runs `code` in a fresh Python that cannot import keras_dynmask.

    The package is blocked in `sys.modules` before anything else runs, so
    any import of it fails: what the code does is plain TensorFlow.
    Returns the completed process (stdout holds what the code printed).
    """
    prelude = textwrap.dedent(
        """
        import sys
        sys.modules["keras_dynmask"] = None
        try:
            import keras_dynmask
        except ImportError:
            pass
        else:
            raise SystemExit("keras_dynmask must not be importable here")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if result.returncode != 0:
        raise AssertionError(
            f"subprocess failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture
def no_keras_dynmask_python():
    return run_without_keras_dynmask
