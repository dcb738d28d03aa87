"""One tf.data service server process: its command line, environment and main.

`keras_dynmask.tools.local_data_service.LocalDataService` starts these
processes; each serves a dispatcher or a worker on the loopback address
and ends when asked (SIGTERM), when its parent dies, or after a lifetime.
"""

import json
import os
import signal
import subprocess
import sys
import time

import tensorflow as tf

LOOPBACK_HOST = "127.0.0.1"


class ServerProcess:
    """One tf.data service server (dispatcher or worker) in its own process.

    The process leads its own process group; `stop` ends the group (SIGTERM,
    then SIGKILL after `timeout_s`). The server also ends by itself when the
    process that started it goes away or `max_lifetime_s` passes, so none
    outlives a crashed parent.

    Args:
        role: `"dispatcher"` or `"worker"`.
        process: the `subprocess.Popen` running it.
        log_path: file holding the server's stdout and stderr.
        address: `"127.0.0.1:port"` it serves on, once known.
    """

    def __init__(self, role, process, log_path, address=None):
        self.role = role
        self.process = process
        self.log_path = log_path
        self.address = address

    @property
    def pid(self):
        return self.process.pid

    @property
    def port(self):
        return int(self.address.rsplit(":", 1)[1])

    def is_running(self):
        """True while the server process has not exited."""
        return self.process.poll() is None

    def kill(self):
        """SIGKILLs the process group at once (a crash, as in a fault test)."""
        self.signal_group(signal.SIGKILL)
        self.wait(timeout_s=10)

    def stop(self, timeout_s=10.0):
        """SIGTERMs the process group; SIGKILLs it after `timeout_s` seconds.

        Returns:
            The process's exit code.
        """
        if self.is_running():
            self.signal_group(signal.SIGTERM)
        if not self.wait(timeout_s):
            self.signal_group(signal.SIGKILL)
            self.wait(timeout_s=10)
        # The leader is gone; end anything it left in its group.
        self.signal_group(signal.SIGKILL)
        return self.process.returncode

    def signal_group(self, signum):
        """Sends `signum` to the server's process group, if it still exists."""
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout_s):
        """Waits at most `timeout_s` seconds for exit; True if it exited."""
        try:
            self.process.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False

    def log_tail(self, num_chars=4000):
        """The last `num_chars` characters of the server's log."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - num_chars))
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def __repr__(self):
        state = "running" if self.is_running() else f"exited {self.process.returncode}"
        return f"ServerProcess({self.role}, {self.address}, pid={self.pid}, {state})"


def server_command(role, ready_file, parent_pid, max_lifetime_s=3600.0, flags=()):
    """The command line of one server process (see `serve_main`).

    Args:
        role: `"dispatcher"` or `"worker"`.
        ready_file: where the server writes its address once it serves.
        parent_pid: the server stops when this process is no longer its
            parent (the parent died and the server was re-parented).
        max_lifetime_s: the server stops after this many seconds.
        flags: more `serve_main` flags, e.g. `["--port", "0"]`.

    Returns:
        A list of str for `subprocess.Popen`.
    """
    return [
        sys.executable,
        "-c",
        "from keras_dynmask.tools.data_service_server import serve_main; serve_main()",
        "--role",
        role,
        "--ready-file",
        ready_file,
        "--parent-pid",
        str(parent_pid),
        "--max-lifetime-s",
        str(max_lifetime_s),
        *flags,
    ]


def server_environment(hide_accelerators=True):
    """The environment server processes run in.

    The package's parent directory is put on `PYTHONPATH` (so the server
    imports this same `keras_dynmask`), TensorFlow's C++ logging defaults to
    warnings, and with `hide_accelerators` GPUs are hidden: servers only
    run the input pipeline, and TensorFlow would otherwise reserve
    accelerator memory in each of them.

    Returns:
        A dict for `subprocess.Popen(env=...)`.
    """
    import keras_dynmask

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(keras_dynmask.__file__)))
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    if hide_accelerators:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def write_atomically(path, text):
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def _parent_gone(parent_pid):
    return os.getppid() != parent_pid


def serve_main(argv=None):
    """Entry point of a server process (see `server_command`).

    Creates a dispatcher or a worker on `127.0.0.1` (port 0 unless
    `--port`), writes its address to `--ready-file`, and serves until
    SIGTERM, until `--parent-pid` is no longer its parent, or until
    `--max-lifetime-s` has passed.

    Args:
        argv: command-line arguments (default `sys.argv[1:]`).
    """
    import argparse
    import importlib

    parser = argparse.ArgumentParser(description="A tf.data service server.")
    parser.add_argument("--role", choices=("dispatcher", "worker"), required=True)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--max-lifetime-s", type=float, default=3600.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--import", dest="import_modules", action="append", default=[])
    parser.add_argument("--worker-timeout-ms", type=int, default=2000)
    parser.add_argument("--heartbeat-interval-ms", type=int, default=250)
    parser.add_argument("--dispatcher-address-file")
    args = parser.parse_args(argv)

    stop_requested = []
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.append(True))
    deadline = time.monotonic() + args.max_lifetime_s
    for module in args.import_modules:
        importlib.import_module(module)
    service = tf.data.experimental.service
    if args.role == "dispatcher":
        server = service.DispatchServer(
            service.DispatcherConfig(
                port=args.port,
                worker_timeout_ms=args.worker_timeout_ms,
                # Also how often lost workers are looked for (and logged).
                job_gc_check_interval_ms=args.worker_timeout_ms,
            )
        )
        port = int(server.target.rsplit(":", 1)[1])
    else:
        while not os.path.exists(args.dispatcher_address_file):
            if stop_requested or _parent_gone(args.parent_pid) or time.monotonic() > deadline:
                os._exit(1)
            time.sleep(0.05)
        with open(args.dispatcher_address_file) as handle:
            dispatcher_address = handle.read().strip()
        server = service.WorkerServer(
            service.WorkerConfig(
                dispatcher_address=dispatcher_address,
                worker_address=f"{LOOPBACK_HOST}:%port%",
                port=args.port,
                heartbeat_interval_ms=args.heartbeat_interval_ms,
                dispatcher_timeout_ms=60_000,
                data_transfer_address=f"{LOOPBACK_HOST}:%dts_port%",
            )
        )
        port = int(server._address.rsplit(":", 1)[1])  # pylint: disable=protected-access
    address = f"{LOOPBACK_HOST}:{port}"
    write_atomically(args.ready_file, json.dumps({"address": address, "pid": os.getpid()}))
    print(f"{args.role} serving on {address}", flush=True)
    while not stop_requested:
        if _parent_gone(args.parent_pid):
            print(f"{args.role}: parent {args.parent_pid} is gone, stopping", flush=True)
            break
        if time.monotonic() > deadline:
            print(f"{args.role}: max_lifetime_s reached, stopping", flush=True)
            break
        time.sleep(0.1)
    server.stop()
    print(f"{args.role}: stopped", flush=True)
    # Nothing is left to clean up; skipping interpreter teardown (seconds
    # of TensorFlow finalisers) keeps shutdown quick.
    os._exit(0)
