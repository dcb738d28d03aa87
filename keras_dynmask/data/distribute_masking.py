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

For trying it on one machine, `keras_dynmask.tools.local_data_service`
starts a local cluster (a dispatcher and N worker processes).
"""

from collections.abc import Callable

import keras
import tensorflow as tf

from keras_dynmask import rate_schedules
from keras_dynmask import validation
from keras_dynmask.data.mask_dataset import layer_or_given_seed
from keras_dynmask.data.mask_dataset import mask_dataset
from keras_dynmask.kernels.seeds import element_seed
from keras_dynmask.kernels.seeds import fresh_seed

PROCESSING_MODES = ("parallel_epochs", "distributed_epoch")


def _check_processing_mode(processing_mode):
    validation.as_choice("processing_mode", processing_mode, PROCESSING_MODES)


def masking_pipeline(
    dataset: "tf.data.Dataset",
    layer: "keras.layers.Layer",
    processing_mode: str = "distributed_epoch",
    seed: int | None = None,
    num_epochs: int = 1,
    num_parallel_calls: int | None = tf.data.AUTOTUNE,
    elements_per_split: int = 1,
    preprocess: "Callable | None" = None,
) -> "tf.data.Dataset":
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
    validation.as_dataset(dataset)
    _check_processing_mode(processing_mode)
    num_epochs = validation.as_int("num_epochs", num_epochs, 1)
    elements_per_split = validation.as_int("elements_per_split", elements_per_split, 1)
    seed = layer_or_given_seed(layer, seed)
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

    scheduled = rate_schedules.layer_is_scheduled(layer)

    def mask_fetched(position, element):
        epoch = position // num_elements
        index = position % num_elements
        key = element_seed(seed, epoch, index)
        if scheduled:  # the step is the global position, epoch * n + index
            return layer(prepare(element), seed=key, step=position)
        return layer(prepare(element), seed=key)

    # The dispatcher splits the outer range only: one split is a run of
    # `elements_per_split` consecutive positions. Elements are fetched one
    # at a time: TensorFlow 2.21 crashes (SIGSEGV) when
    # `tf.data.experimental.at` reads a `map` dataset from several threads.
    splits = tf.data.Dataset.range(-(-num_positions // elements_per_split))
    fetched = splits.flat_map(positions_in_split).map(fetch)
    masked = fetched.map(
        mask_fetched, num_parallel_calls=num_parallel_calls, deterministic=True
    )
    if scheduled:  # every iteration starts at position 0 (for MaskRateLogger)
        rate_schedules.record_keyed_steps(masked, layer, lambda: 0)
    return masked


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
    dataset: "tf.data.Dataset",
    layer: "keras.layers.Layer",
    service: str,
    processing_mode: str = "distributed_epoch",
    seed: int | None = None,
    num_epochs: int = 1,
    job_name: str | None = None,
    num_parallel_calls: int | None = tf.data.AUTOTUNE,
    compression: str | None = "AUTO",
    max_outstanding_requests: int | None = None,
    options: "tf.data.Options | None" = None,
    elements_per_split: int = 1,
    preprocess: "Callable | None" = None,
) -> "tf.data.Dataset":
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
