"""Dynamic masking on tf.data service workers, reproducibly.

When one machine's CPUs cannot feed the accelerators, the masking pipeline
moves onto tf.data service workers (`tf.data.experimental.service`): a
dispatcher hands out work, many worker processes run the pipeline, and the
trainer reads the masked elements over RPC. This module builds the pipeline
the workers run and applies `tf.data.experimental.service.distribute` to it,
in either processing mode:

- `"parallel_epochs"` (`ShardingPolicy.OFF`): every worker runs the whole
  pipeline, so with N workers the trainer receives every element N times per
  pass. With a `seed` the N copies of an element carry the same mask (the
  mask is keyed by the element, not by the worker); without one, each worker
  draws its own masks.
- `"distributed_epoch"` (`ShardingPolicy.DYNAMIC`): the dispatcher hands out
  the elements' positions in splits (`elements_per_split` each) and each
  split is processed by exactly one worker, so without failures every
  element of every pass is delivered exactly once. If a worker dies
  mid-epoch, the positions it had been handed and not yet delivered are
  lost (never handed out again), the other workers carry on with the rest,
  and no element is delivered twice: *at most once* per element. In
  TensorFlow 2.21 the dispatcher keeps the dead worker's task, and readers
  wait for it: the job finishes once a worker serves that address again
  (`LocalDataService.restart_worker`; a supervisor such as Kubernetes
  restarts workers the same way), which then takes fresh splits.

Reproducibility: with a `seed`, an element's mask is a pure function of
`(seed, epoch, element index)` — the key `keras_dynmask.data.mask_dataset`
uses — and so does not depend on which worker made it, how many workers
there are, or the parallelism. In `"distributed_epoch"` mode the index and
the epoch travel with the position the dispatcher hands out (each worker
fetches the element by random access), because indices counted on a worker
(`Dataset.enumerate`) would count that worker's share only. Without a seed
every element gets a fresh mask, new each epoch and on each worker, also
after `keras.utils.set_random_seed` (the layer's own random state would be
copied into the serialised pipeline and replayed by every worker).

The module also starts a local cluster — a dispatcher and N workers, each a
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
import sys
import tempfile
import time

import tensorflow as tf

from keras_dynmask.data.mask_dataset import element_seed
from keras_dynmask.data.mask_dataset import mask_dataset
from keras_dynmask.kernels.seeds import fresh_seed

PROCESSING_MODES = ("parallel_epochs", "distributed_epoch")
LOOPBACK_HOST = "127.0.0.1"


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_processing_mode(processing_mode):
    if processing_mode not in PROCESSING_MODES:
        raise ValueError(
            f"`processing_mode` must be one of {PROCESSING_MODES}. "
            f"Received: processing_mode={processing_mode!r}"
        )


def _check_seed(seed):
    if seed is not None and not _is_int(seed):
        raise ValueError(f"`seed` must be None or an int. Received: seed={seed!r}")


def _check_num_epochs(num_epochs):
    if not _is_int(num_epochs) or num_epochs < 1:
        raise ValueError(
            f"`num_epochs` must be an int >= 1. Received: num_epochs={num_epochs!r}"
        )


def _check_dataset(dataset):
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            "`dataset` must be a tf.data.Dataset. "
            f"Received: dataset={dataset!r} of type {type(dataset).__name__}"
        )


def masking_pipeline(
    dataset,
    layer,
    processing_mode="distributed_epoch",
    seed=None,
    num_epochs=1,
    num_parallel_calls=tf.data.AUTOTUNE,
    elements_per_split=1,
    preprocess=None,
):
    """The dataset tf.data service workers run: `num_epochs` masked passes.

    Iterated in-process it yields what the workers would make (in order);
    `distribute_masking` hands it to a tf.data service. Each element of
    `dataset` (a sequence, a batch, a dict), after `preprocess` if given, is
    masked by one call of `layer`.

    - `seed=None`: `layer(preprocess(element), seed=fresh_seed())` over
      `dataset.repeat(num_epochs)`: fresh masks on every worker, every pass
      (in `"distributed_epoch"` mode the dispatcher splits `dataset`'s own
      source, as TensorFlow does for any pipeline).
    - a seed, `"parallel_epochs"`: `mask_dataset(dataset, layer, seed,
      num_epochs=num_epochs)`, which each worker runs whole.
    - a seed, `"distributed_epoch"`: the positions `0 .. num_epochs * n - 1`
      are the only source the dispatcher splits, `elements_per_split`
      consecutive positions a split; a worker turns position `p` into epoch
      `p // n` and index `p % n`, fetches that element with
      `tf.data.experimental.at` and masks it with
      `element_seed(seed, epoch, index)`. `dataset` must therefore have a
      known, finite cardinality `n` and support random access
      (`from_tensor_slices`, `range`, `map`, `batch`, `zip`, `take`, ... or
      anything followed by `.cache()`).

    Args:
        dataset: a finite `tf.data.Dataset` of elements `layer` takes.
        layer: a `DynamicMLMMasking` (or any layer with a call-time `seed`).
        processing_mode: `"distributed_epoch"` or `"parallel_epochs"`.
        seed: `None` or int.
        num_epochs: int >= 1, passes laid out back to back in one job (the
            pipeline holds no state, so it can be serialised).
        num_parallel_calls: as for `tf.data.Dataset.map`.
        preprocess: `None` or a function applied to each element before
            masking (e.g. a tokenizer), in the same parallel map as the
            masking. With a seed in `"distributed_epoch"` mode, put costly
            per-element work here rather than in `dataset`: elements of
            `dataset` are fetched one at a time (concurrent random access
            into a `map` dataset crashes TensorFlow 2.21), `preprocess` runs
            `num_parallel_calls` at a time.
        elements_per_split: int >= 1, elements a worker asks the dispatcher
            for at a time (seeded `"distributed_epoch"` only). A worker
            makes one RPC per split, so with cheap elements a larger value
            raises throughput; in exchange a lost worker loses up to that
            many elements per split it held, and the tail of an epoch is
            balanced more coarsely. The masks do not depend on it.

    Returns:
        The masked `tf.data.Dataset` with `num_epochs` passes.

    Example:

    >>> import numpy as np, tensorflow as tf
    >>> from keras_dynmask import DynamicMLMMasking
    >>> from keras_dynmask.data import mask_dataset
    >>> ids = tf.data.Dataset.from_tensor_slices(
    ...     np.arange(5, 69, dtype="int32").reshape(8, 8)).batch(2)
    >>> layer = DynamicMLMMasking(vocabulary_size=80, mask_token_id=3,
    ...                           mask_rate=0.5)
    >>> pipeline = masking_pipeline(ids, layer, "distributed_epoch", seed=7,
    ...                             num_epochs=2)
    >>> same = mask_dataset(ids, layer, seed=7, num_epochs=2)
    >>> all(np.array_equal(a, b) for a, b in zip(pipeline, same))
    True
    """
    _check_dataset(dataset)
    _check_processing_mode(processing_mode)
    _check_seed(seed)
    _check_num_epochs(num_epochs)
    if not _is_int(elements_per_split) or elements_per_split < 1:
        raise ValueError(
            "`elements_per_split` must be an int >= 1. "
            f"Received: elements_per_split={elements_per_split!r}"
        )
    if not callable(layer):
        raise ValueError(f"`layer` must be callable. Received: layer={layer!r}")
    if preprocess is not None and not callable(preprocess):
        raise ValueError(
            f"`preprocess` must be None or callable. Received: preprocess={preprocess!r}"
        )
    prepare = preprocess if preprocess is not None else (lambda element: element)
    if seed is None:

        def mask_with_fresh_seed(element):
            return layer(prepare(element), seed=fresh_seed())

        return dataset.repeat(num_epochs).map(
            mask_with_fresh_seed, num_parallel_calls=num_parallel_calls
        )
    if processing_mode == "parallel_epochs":
        if preprocess is not None:
            dataset = dataset.map(preprocess, num_parallel_calls=num_parallel_calls)
        return mask_dataset(
            dataset,
            layer,
            seed=seed,
            num_parallel_calls=num_parallel_calls,
            num_epochs=num_epochs,
        )
    num_elements = _finite_cardinality(dataset)
    _check_random_access(dataset, num_elements)
    num_positions = num_epochs * num_elements

    def positions_in_split(split):
        start = split * elements_per_split
        return tf.data.Dataset.range(start, tf.minimum(start + elements_per_split, num_positions))

    def fetch(position):
        return position, tf.data.experimental.at(dataset, position % num_elements)

    def mask_fetched(position, element):
        epoch = position // num_elements
        index = position % num_elements
        return layer(prepare(element), seed=element_seed(seed, epoch, index))

    # The dispatcher splits the outer range only: one split is a run of
    # `elements_per_split` consecutive positions. Elements are fetched one
    # at a time: TensorFlow 2.21 crashes (SIGSEGV) when
    # `tf.data.experimental.at` reads a `map` dataset from several threads.
    splits = tf.data.Dataset.range(-(-num_positions // elements_per_split))
    fetched = splits.flat_map(positions_in_split).map(fetch)
    return fetched.map(
        mask_fetched, num_parallel_calls=num_parallel_calls, deterministic=True
    )


def _finite_cardinality(dataset):
    cardinality = int(dataset.cardinality())
    if cardinality < 0:
        kind = "infinite" if cardinality == tf.data.INFINITE_CARDINALITY else "unknown"
        raise ValueError(
            "A seeded 'distributed_epoch' pipeline needs a dataset of known, "
            "finite cardinality (each element is fetched by its index). "
            f"Received a dataset of {kind} cardinality ({cardinality}); use "
            "`dataset.apply(tf.data.experimental.assert_cardinality(n))` "
            "or drop `.repeat()` and pass `num_epochs`."
        )
    return cardinality


def _check_random_access(dataset, num_elements):
    """Fetches element 0 once, so a missing random access fails here."""
    if num_elements == 0:
        return
    try:
        tf.data.experimental.at(dataset, 0)
    except (tf.errors.UnimplementedError, tf.errors.FailedPreconditionError) as error:
        raise ValueError(
            "A seeded 'distributed_epoch' pipeline fetches each element by "
            "its index, and this dataset does not support random access: "
            f"{error.message.strip()} Add `.cache()` at the end of the "
            "dataset, or use processing_mode='parallel_epochs'."
        ) from None


def distribute_masking(
    dataset,
    layer,
    service,
    processing_mode="distributed_epoch",
    seed=None,
    num_epochs=1,
    job_name=None,
    num_parallel_calls=tf.data.AUTOTUNE,
    compression="AUTO",
    max_outstanding_requests=None,
    options=None,
    elements_per_split=1,
    preprocess=None,
):
    """Masks `dataset` on tf.data service workers; returns what they send.

    Builds `masking_pipeline(dataset, layer, processing_mode, seed,
    num_epochs)` and applies `tf.data.experimental.service.distribute` to it:
    the masking runs on the workers, the returned dataset reads their output
    in the calling process. See the module docstring for what each mode
    delivers, also when a worker fails.

    Iterate the result once: it holds all `num_epochs` passes (with
    `model.fit`, pass `epochs=num_epochs` and `steps_per_epoch`). Iterating
    it again starts a new job that replays the same passes when seeded.

    Args:
        dataset: a finite `tf.data.Dataset` of elements `layer` takes; with
            a seed in `"distributed_epoch"` mode it must support random
            access (see `masking_pipeline`).
        layer: a `DynamicMLMMasking` (or any layer with a call-time `seed`).
        service: the dispatcher, `"grpc://host:port"` or `"host:port"` (e.g.
            `LocalDataService.service`).
        processing_mode: `"distributed_epoch"` (each element once, split
            across workers) or `"parallel_epochs"` (each worker makes every
            element).
        seed: `None` (fresh masks everywhere) or int (masks keyed by
            `(seed, epoch, element index)`).
        num_epochs: int >= 1, passes in the job.
        job_name: `None` or a name shared by consumers that read one job.
        num_parallel_calls: parallelism of the masking map on each worker.
        compression: as for `distribute`: `"AUTO"`, `"SNAPPY"` or `None`.
        max_outstanding_requests: as for `distribute`.
        options: `None` or a `tf.data.Options` for the pipeline the workers
            run (e.g. `threading.private_threadpool_size`).
        elements_per_split: as for `masking_pipeline`.
        preprocess: as for `masking_pipeline`: a per-element function run on
            the workers before masking (e.g. a tokenizer).

    Returns:
        A `tf.data.Dataset` of the masked elements, read from the workers.

    Example:

    >>> import numpy as np, tensorflow as tf
    >>> from keras_dynmask import DynamicMLMMasking
    >>> ids = tf.data.Dataset.from_tensor_slices(
    ...     np.arange(5, 69, dtype="int32").reshape(8, 8)).batch(2)
    >>> layer = DynamicMLMMasking(vocabulary_size=80, mask_token_id=3,
    ...                           output_mode="fit")
    >>> with LocalDataService(num_workers=2) as cluster:   # doctest: +SKIP
    ...     masked = distribute_masking(ids, layer, cluster.service, seed=1)
    ...     batches = [x for x, y, w in masked]
    >>> len(batches)                                        # doctest: +SKIP
    4
    """
    if not isinstance(service, str) or not service:
        raise ValueError(
            "`service` must be the dispatcher address, 'grpc://host:port' or "
            f"'host:port'. Received: service={service!r}"
        )
    if job_name is not None and (not isinstance(job_name, str) or not job_name):
        raise ValueError(
            f"`job_name` must be None or a non-empty str. Received: job_name={job_name!r}"
        )
    pipeline = masking_pipeline(
        dataset,
        layer,
        processing_mode=processing_mode,
        seed=seed,
        num_epochs=num_epochs,
        num_parallel_calls=num_parallel_calls,
        elements_per_split=elements_per_split,
        preprocess=preprocess,
    )
    if options is not None:
        if not isinstance(options, tf.data.Options):
            raise ValueError(
                f"`options` must be None or a tf.data.Options. Received: options={options!r}"
            )
        pipeline = pipeline.with_options(options)
    return pipeline.apply(
        tf.data.experimental.service.distribute(
            processing_mode=processing_mode,
            service=service,
            job_name=job_name,
            max_outstanding_requests=max_outstanding_requests,
            compression=compression,
        )
    )


# Local clusters: a dispatcher and workers as separate processes.


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
        "from keras_dynmask.data.data_service import serve_main; serve_main()",
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


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")


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
        num_workers=1,
        start_timeout_s=120.0,
        stop_timeout_s=10.0,
        max_lifetime_s=3600.0,
        worker_timeout_ms=2000,
        heartbeat_interval_ms=250,
        import_modules=(),
        log_dir=None,
        hide_accelerators=True,
    ):
        if not _is_int(num_workers) or num_workers < 0:
            raise ValueError(
                f"`num_workers` must be an int >= 0. Received: num_workers={num_workers!r}"
            )
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
    def service(self):
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
        _write_atomically(self._dispatcher_address_file, self.dispatcher.address)
        _await_ready(new_workers, deadline, self.start_timeout_s)

    def add_workers(self, num_workers=1):
        """Starts `num_workers` more workers and waits until they serve.

        A worker registers with the dispatcher before it reports ready, so
        jobs created afterwards use it.

        Returns:
            The new `ServerProcess`es.
        """
        if not _is_int(num_workers) or num_workers < 1:
            raise ValueError(
                f"`num_workers` must be an int >= 1. Received: num_workers={num_workers!r}"
            )
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

    def stop(self):
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


def _write_atomically(path, text):
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
    _write_atomically(args.ready_file, json.dumps({"address": address, "pid": os.getpid()}))
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
