"""A long-lived Python process with plain TensorFlow, for the serving checks.

The serving checks run code where neither `keras_dynmask` nor the example
scripts can be imported (what serving an export outside this repository
has). Each check used to start its own interpreter, and so TensorFlow
(about 6 s of start-up apiece); `PlainTensorFlow` starts one per kind and
test process and runs every check in it, each in a fresh namespace.

In that process an import of a blocked module raises `ImportError` from
the first line on (a meta-path finder, installed before TensorFlow is
imported), so a check passes only if its code never needed one; the reply
also lists any blocked module found in `sys.modules`, which must be none.
Loading many SavedModels in one process is what a model server does.
"""

import atexit
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading

# The child's main loop: one JSON request a line on stdin, one JSON reply a
# line on the stdout it started with (the code's own prints are captured).
_SERVER = textwrap.dedent(
    """
    import contextlib, importlib.abc, io, json, os, sys, traceback

    BLOCKED = set(json.loads(sys.argv[1]))

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(name + " is blocked in this process")
            return None

    sys.meta_path.insert(0, Blocked())
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
    import tensorflow as tf
    if sys.argv[2] == "with_tensorflow_text":
        import tensorflow_text  # noqa: F401

    replies = os.fdopen(os.dup(1), "w")

    first_validators = {}

    def saved_model_cli(argv):
        from absl import flags
        from tensorflow.python.tools import saved_model_cli as cli

        # Each call starts as the tool's first call in a process does: flag
        # values at their defaults, and without the validators a call adds
        # (each command marks its own flags required).
        if not first_validators:
            first_validators.update((n, list(flags.FLAGS[n].validators)) for n in flags.FLAGS)
        flags.FLAGS.unparse_flags()
        for name, validators in first_validators.items():
            flags.FLAGS[name].validators[:] = validators
        sys.argv = ["saved_model_cli", *argv]
        cli.main()

    for line in sys.stdin:
        request = json.loads(line)
        printed, errors, status = io.StringIO(), io.StringIO(), 0
        os.chdir(request["cwd"])
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
            try:
                if "saved_model_cli" in request:
                    saved_model_cli(request["saved_model_cli"])
                else:
                    sys.argv = ["-c", *request["argv"]]
                    namespace = {"__name__": "__main__", "tf": tf, "json": json,
                                 "sys": sys, "BLOCKED": sorted(BLOCKED)}
                    exec(compile(request["code"], "<check>", "exec"), namespace)
            except SystemExit as exit_:
                if exit_.code not in (None, 0):
                    status = exit_.code if isinstance(exit_.code, int) else 1
                    print(exit_.code, file=errors)
            except BaseException:
                status = 1
                traceback.print_exc(file=errors)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        replies.write(json.dumps({
            "returncode": status, "stdout": printed.getvalue(),
            "stderr": errors.getvalue(), "blocked_modules_loaded": loaded,
        }) + "\\n")
        replies.flush()
    """
)


class PlainTensorFlow:
    """One child interpreter with TensorFlow and without the blocked modules.

    Args:
        blocked: module names (top level) the child refuses to import.
        with_tensorflow_text: whether the child imports tensorflow_text
            (what a text export needs) at start-up.

    The child starts on the first call and ends at `close()` (or when this
    process exits).
    """

    def __init__(self, blocked, with_tensorflow_text):
        self.blocked = tuple(blocked)
        self.with_tensorflow_text = with_tensorflow_text
        self._process = None
        self._home = tempfile.mkdtemp(prefix="plain_tensorflow_")
        self._lock = threading.Lock()

    def _start(self):
        kind = "with_tensorflow_text" if self.with_tensorflow_text else "core"
        self._process = subprocess.Popen(
            [sys.executable, "-u", "-c", _SERVER, json.dumps(self.blocked), kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=self._home,
            env={**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        atexit.register(self.close)

    def _request(self, request, timeout):
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            process = self._process
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
            reply = []
            reader = threading.Thread(target=lambda: reply.append(process.stdout.readline()))
            reader.start()
            reader.join(timeout)
            if reader.is_alive() or not reply or not reply[0]:
                process.kill()
                process.wait()
                self._process = None
                raise AssertionError(
                    f"the plain TensorFlow process {'timed out' if reader.is_alive() else 'died'}"
                    f" on {json.dumps(request)[:500]}"
                )
        answer = json.loads(reply[0])
        assert answer["blocked_modules_loaded"] == [], answer
        return answer

    def run(self, code, *argv, cwd=None, timeout=300):
        """Runs Python `code` with `sys.argv[1:] = argv`.

        `tf`, `json`, `sys` and `BLOCKED` (the blocked names) are defined
        for it; it runs in folder `cwd` (default: an empty scratch folder).

        Returns:
            A dict: `"returncode"` (0, the `SystemExit` code, or 1 on an
            exception), `"stdout"`, `"stderr"` (what the code printed; the
            traceback of an exception), `"blocked_modules_loaded"` ([]).
        """
        return self._request(
            {"code": textwrap.dedent(code), "argv": [str(a) for a in argv],
             "cwd": str(cwd or self._home)},
            timeout,
        )

    def saved_model_cli(self, *argv, cwd=None, timeout=300):
        """Runs `saved_model_cli argv...` (TensorFlow's own tool); as `run`."""
        return self._request(
            {"saved_model_cli": [str(a) for a in argv], "cwd": str(cwd or self._home)},
            timeout,
        )

    def close(self):
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
