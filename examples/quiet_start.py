"""TensorFlow's start-up, without its start-up chatter on a machine without a GPU.

`import tensorflow` loads its libraries, whose static initialisers log
before absl's logging is set up: an absl banner, then INFO lines (oneDNN,
"Could not find cuda drivers on your machine") written to stderr whatever
`TF_CPP_MIN_LOG_LEVEL` says, and once per library that carries them. The
first device probe then calls `cuInit`, which on a machine with no NVIDIA
driver fails and is logged as an ERROR ("failed call to cuInit"), though
nothing is wrong: there is no GPU to find. No environment variable removes
these lines (`CUDA_VISIBLE_DEVICES=""` still probes), so `import_tensorflow`
imports TensorFlow and probes the devices with stderr captured, then writes
back every captured line except:

- absl's banner, and absl-format lines below `TF_CPP_MIN_LOG_LEVEL`
  (default 2: INFO and WARNING), as TensorFlow filters them once started;
- the failed `cuInit`, only where the machine has no NVIDIA driver
  (`/proc/driver/nvidia/version` absent): with a driver it is a real error
  and is shown.

GPUs are neither hidden nor configured: where one exists TensorFlow uses it
as usual.
"""

import os
import re
import sys
import tempfile

_ABSL_BANNER = "All log messages before absl::InitializeLog() is called are written to STDERR"
# absl's prefix: severity letter, date, time, thread, file:line]
_ABSL_LINE = re.compile(r"^(?P<severity>[IWEF])\d{4} [\d:.]+\s+\d+ \S+:\d+\]")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_NO_DRIVER_PROBE = re.compile(r"failed call to cuInit")
NVIDIA_DRIVER = "/proc/driver/nvidia/version"
# What TensorFlow's start-up wrote to stderr, before filtering (for tests).
captured_start_up = None


def has_nvidia_driver():
    """Whether an NVIDIA kernel driver is loaded on this machine."""
    return os.path.exists(NVIDIA_DRIVER)


def kept_lines(text, min_level, driver_present):
    """The lines of captured start-up output that are written back.

    Args:
        text: str, what TensorFlow's start-up wrote to stderr.
        min_level: int, `TF_CPP_MIN_LOG_LEVEL` (0 INFO ... 3 FATAL only).
        driver_present: bool, from `has_nvidia_driver()`.

    Returns:
        A list of str, the lines kept, in order.
    """
    kept = []
    for line in text.splitlines():
        if _ABSL_BANNER in line:
            continue
        match = _ABSL_LINE.match(line)
        if match and _SEVERITY[match["severity"]] < min_level:
            continue
        if match and not driver_present and _NO_DRIVER_PROBE.search(line):
            continue
        kept.append(line)
    return kept


def import_tensorflow():
    """Imports TensorFlow and probes its devices, filtering the chatter.

    A no-op for the output if TensorFlow is already imported (its start-up
    lines are written by then).

    Returns:
        The `tensorflow` module.
    """
    global captured_start_up
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    try:
        min_level = int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        min_level = 0
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # The probe (cuInit) runs here.
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            captured_start_up = text
            lines = kept_lines(text, min_level, has_nvidia_driver())
            if lines:
                sys.stderr.write("\n".join(lines) + "\n")
                sys.stderr.flush()
    return tf
