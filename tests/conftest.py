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
