"""A local tf.data service cluster: a dispatcher and N worker processes.

For examples, tests and benchmarks on one machine; the masking itself
(`keras_dynmask.data.distribute_masking`) runs on any tf.data service.

This module starts a local cluster — a dispatcher and N workers, each a
separate process listening on the loopback address — for examples, tests
and benchmarks: `LocalDataService`. All addresses the servers advertise and
dial are `127.0.0.1`. TensorFlow 2.21's tf.data service servers offer no
setting for the listening interface: they listen on the wildcard address
(`0.0.0.0` / `[::]`) on an ephemeral port; on a shared host, firewall those
ports or run in a private network namespace.
"""

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence

from keras_dynmask import validation
from keras_dynmask.tools.data_service_server import LOOPBACK_HOST  # noqa: F401
from keras_dynmask.tools.data_service_server import ServerProcess
from keras_dynmask.tools.data_service_server import server_command
from keras_dynmask.tools.data_service_server import server_environment
from keras_dynmask.tools.data_service_server import write_atomically

__all__ = ["LocalDataService", "ServerProcess", "server_command", "server_environment"]


def _check_positive(name, value):
    validation.as_float(name, value, 0, low_open=True)


class LocalDataService:
    """A tf.data service on this machine: a dispatcher and N worker processes.

    Each server is a separate Python process serving on `127.0.0.1` at a
    port the OS picks (port 0), so clusters never clash. Start-up waits at
    most `start_timeout_s`; `stop` ends every process (SIGTERM, then SIGKILL
    after `stop_timeout_s`), and servers end by themselves if this process
    dies or after `max_lifetime_s`. Use it as a context manager so the
    cluster goes away also when the body raises. The dispatcher drops a
    worker that misses heartbeats for `worker_timeout_ms`, but keeps the
    worker's tasks for its address: see `restart_worker`.

    Args:
        num_workers: int >= 0, workers to start with (more with
            `add_workers`).
        start_timeout_s: seconds to wait for a batch of servers to be up.
        stop_timeout_s: seconds between SIGTERM and SIGKILL.
        max_lifetime_s: seconds after which a server exits on its own.
        worker_timeout_ms: how long the dispatcher waits for a worker's
            heartbeat before it reports the worker lost.
        heartbeat_interval_ms: how often workers heartbeat the dispatcher.
        import_modules: modules each server imports before it serves, for
            ops the pipeline uses that TensorFlow does not register itself
            (e.g. `["tensorflow_text"]` for in-graph tokenization).
        log_dir: `None` (a temporary directory, removed by `stop`) or a
            directory to keep the servers' logs in.
        hide_accelerators: hide GPUs from the servers
            (`CUDA_VISIBLE_DEVICES=""`).

    Example:

    >>> with LocalDataService(num_workers=2) as cluster:   # doctest: +SKIP
    ...     ds = tf.data.Dataset.range(6).apply(
    ...         tf.data.experimental.service.distribute(
    ...             "distributed_epoch", cluster.service))
    ...     sorted(int(x) for x in ds)
    [0, 1, 2, 3, 4, 5]
    """

    def __init__(
        self,
        num_workers: int = 1,
        start_timeout_s: float = 120.0,
        stop_timeout_s: float = 10.0,
        max_lifetime_s: float = 3600.0,
        worker_timeout_ms: int = 2000,
        heartbeat_interval_ms: int = 250,
        import_modules: "Sequence[str]" = (),
        log_dir: "str | os.PathLike | None" = None,
        hide_accelerators: bool = True,
    ) -> None:
        num_workers = validation.as_int("num_workers", num_workers, 0)
        for name, value in (
            ("start_timeout_s", start_timeout_s),
            ("stop_timeout_s", stop_timeout_s),
            ("max_lifetime_s", max_lifetime_s),
            ("worker_timeout_ms", worker_timeout_ms),
            ("heartbeat_interval_ms", heartbeat_interval_ms),
        ):
            _check_positive(name, value)
        if isinstance(import_modules, str) or not all(
            isinstance(name, str) and name for name in import_modules
        ):
            raise ValueError(
                "`import_modules` must be a list of module names. "
                f"Received: import_modules={import_modules!r}"
            )
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.max_lifetime_s = max_lifetime_s
        self.worker_timeout_ms = int(worker_timeout_ms)
        self.heartbeat_interval_ms = int(heartbeat_interval_ms)
        self.import_modules = list(import_modules)
        self.hide_accelerators = hide_accelerators
        self._temporary_dir = None
        if log_dir is None:
            self._temporary_dir = tempfile.TemporaryDirectory(prefix="tf-data-service-")
            log_dir = self._temporary_dir.name
        else:
            os.makedirs(log_dir, exist_ok=True)
        self.log_dir = log_dir
        self._dispatcher_address_file = os.path.join(log_dir, "dispatcher.address")
        self.dispatcher = None
        self.workers = []
        try:
            self._start(num_workers)
        except BaseException:
            self.stop()
            raise

    @property
    def service(self) -> str:
        """The dispatcher, as `distribute` takes it: `grpc://127.0.0.1:port`."""
        return f"grpc://{self.dispatcher.address}"

    def _launch(self, role, flags):
        """Starts a server process in its own process group (not yet ready)."""
        fd, ready_file = tempfile.mkstemp(prefix=f"{role}-", suffix=".ready", dir=self.log_dir)
        os.close(fd)
        os.unlink(ready_file)
        log_path = ready_file[: -len(".ready")] + ".log"
        for module in self.import_modules:
            flags = [*flags, "--import", module]
        command = server_command(role, ready_file, os.getpid(), self.max_lifetime_s, flags)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_environment(self.hide_accelerators),
                start_new_session=True,
            )
        server = ServerProcess(role, process, log_path)
        server.ready_file = ready_file
        return server

    def _launch_worker(self, port=0):
        worker = self._launch(
            "worker",
            [
                "--dispatcher-address-file",
                self._dispatcher_address_file,
                "--heartbeat-interval-ms",
                str(self.heartbeat_interval_ms),
                "--port",
                str(port),
            ],
        )
        return worker

    def _start(self, num_workers):
        self.dispatcher = self._launch(
            "dispatcher", ["--worker-timeout-ms", str(self.worker_timeout_ms)]
        )
        # Workers import TensorFlow while the dispatcher starts, then wait
        # for its address in a file before they create their server.
        new_workers = [self._launch_worker() for _ in range(num_workers)]
        self.workers.extend(new_workers)
        deadline = time.monotonic() + self.start_timeout_s
        _await_ready([self.dispatcher], deadline, self.start_timeout_s)
        write_atomically(self._dispatcher_address_file, self.dispatcher.address)
        _await_ready(new_workers, deadline, self.start_timeout_s)

    def add_workers(self, num_workers: int = 1) -> None:
        """Starts `num_workers` more workers and waits until they serve.

        A worker registers with the dispatcher before it reports ready, so
        jobs created afterwards use it.

        Returns:
            The new `ServerProcess`es.
        """
        num_workers = validation.as_int("num_workers", num_workers, 1)
        new_workers = [self._launch_worker() for _ in range(num_workers)]
        self.workers.extend(new_workers)
        deadline = time.monotonic() + self.start_timeout_s
        _await_ready(new_workers, deadline, self.start_timeout_s)
        return new_workers

    def restart_worker(self, worker):
        """Replaces `worker` by a new process serving on the same address.

        This is how a lost worker's share of a job resumes: the dispatcher
        keeps each job's task for a worker address, and readers wait for
        that task until a worker at that address serves it again (as when a
        supervisor such as Kubernetes restarts a worker). In
        `"distributed_epoch"` mode the new worker takes fresh splits; the
        splits the old one held are not redone. The old process is killed
        first if it still runs.

        Args:
            worker: one of `self.workers`.

        Returns:
            The new `ServerProcess`, which takes `worker`'s place in
            `self.workers`.
        """
        if worker not in self.workers:
            raise ValueError(
                f"`worker` must be one of this cluster's workers. Received: worker={worker!r}"
            )
        if worker.is_running():
            worker.kill()
        replacement = self._launch_worker(port=worker.port)
        self.workers[self.workers.index(worker)] = replacement
        _await_ready([replacement], time.monotonic() + self.start_timeout_s, self.start_timeout_s)
        return replacement

    def stop(self) -> None:
        """Ends every server process (workers, then the dispatcher).

        Safe to call more than once.
        """
        try:
            _stop_together(self.workers, self.stop_timeout_s)
        finally:
            try:
                _stop_together([self.dispatcher], self.stop_timeout_s)
            finally:
                if self._temporary_dir is not None:
                    self._temporary_dir.cleanup()
                    self._temporary_dir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()
        return False

    def __repr__(self):
        return f"LocalDataService(dispatcher={self.dispatcher!r}, workers={self.workers!r})"


def _await_ready(servers, deadline, start_timeout_s):
    """Waits until each server has written its ready file (or fails)."""
    for server in servers:
        while not os.path.exists(server.ready_file):
            if not server.is_running():
                raise RuntimeError(
                    f"tf.data service {server.role} exited with code "
                    f"{server.process.returncode} before it served. Log tail:\n"
                    f"{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"tf.data service {server.role} did not serve within "
                    f"start_timeout_s={start_timeout_s}. Log tail:\n{server.log_tail()}"
                )
            time.sleep(0.05)
        with open(server.ready_file) as ready:
            server.address = json.load(ready)["address"]


def _stop_together(servers, timeout_s):
    """SIGTERMs all `servers` at once, then SIGKILLs those left after `timeout_s`."""
    servers = [server for server in servers if server is not None]
    for server in servers:
        if server.is_running():
            server.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for server in servers:
        server.stop(timeout_s=max(0.1, deadline - time.monotonic()))


