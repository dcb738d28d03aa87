"""The example scripts import their siblings, as they do when run."""

import os
import sys

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
