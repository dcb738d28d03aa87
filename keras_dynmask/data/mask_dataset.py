"""`mask_dataset`: reproducible dynamic masking over a `tf.data.Dataset`."""

import keras
import tensorflow as tf

from keras_dynmask import rate_schedules
from keras_dynmask import validation
from keras_dynmask.kernels.seeds import element_seed


def layer_or_given_seed(layer, seed):
    """The base seed of a masking entry point: `seed`, else the layer's own.

    Every entry point (`mask_dataset`, `masking_pipeline`,
    `distribute_masking`) treats a layer built with a `seed` alike: with no
    `seed` of their own they key the masks by the layer's.
    """
    seed = validation.as_seed(seed)
    if seed is None:
        seed = getattr(layer, "seed", None)
        seed = validation.as_seed(seed) if validation.is_integer(seed) else None
    return seed


def mask_dataset(
    dataset: "tf.data.Dataset",
    layer: "keras.layers.Layer",
    seed: int | None = None,
    num_parallel_calls: int | None = tf.data.AUTOTUNE,
    num_epochs: int | None = None,
) -> "tf.data.Dataset":
    """Maps a masking layer over `dataset`, reproducibly when seeded.

    With a `seed`, each element's mask is a pure function of
    `(seed, epoch, element index)`: the same run to run, different from
    epoch to epoch, and independent of `num_parallel_calls` and of which
    process (e.g. a tf.data service worker) computes it. With `seed=None`
    a layer built with a `seed` keys its masks by that seed the same way;
    an unseeded layer draws fresh masks on every call.

    The epoch is counted in one of two ways. By default the returned dataset
    counts how many times it has been iterated (each `for` loop or each
    epoch of `model.fit` is one pass), in a small `tf.Variable`, so it must
    be iterated in the process that built it. With `num_epochs=N` it holds
    the N passes back to back and takes the epoch from the position, with
    no state: use that for pipelines that are serialised and run elsewhere
    (tf.data service), with `steps_per_epoch` in `model.fit`. Under tf.data
    service's `"distributed_epoch"` mode each worker enumerates only its own
    share of the elements, so an index here would name a worker's position:
    use `keras_dynmask.data.distribute_masking`, which carries
    each element's global index from the dispatcher to the worker.

    Args:
        dataset: a `tf.data.Dataset` whose elements the layer takes (ids,
            ragged ids, or dicts with `"token_ids"`).
        layer: a `DynamicMLMMasking` (or any layer with a call-time `seed`).
        seed: `None` (the layer's own seed, if any) or int.
        num_parallel_calls: as for `tf.data.Dataset.map`.
        num_epochs: `None` or int >= 1 (see above).

    With a scheduled rate (`mask_rate` a Keras schedule) and a seed, element
    `i` of epoch `e` is masked at the schedule's value for step `e * N + i`
    (`N` the dataset's length, which must be known): stateless, so the same
    run to run, on every tf.data service worker and whatever
    `num_parallel_calls` is. The returned dataset tells
    `keras_dynmask.MaskRateLogger` where its next pass starts, so that the
    logger shows the rates these steps had.

    Returns:
        The masked `tf.data.Dataset`.

    Example:

    >>> import tensorflow as tf
    >>> from keras_dynmask import DynamicMLMMasking
    >>> ids = tf.data.Dataset.from_tensor_slices(tf.ones([4, 8], tf.int32) * 9)
    >>> layer = DynamicMLMMasking(vocabulary_size=16, mask_token_id=3,
    ...                           mask_rate=0.5, output_mode="fit")
    >>> ds = mask_dataset(ids.batch(2), layer, seed=42)
    >>> first = [x.numpy().tolist() for x, y, w in ds]
    >>> again = [x.numpy().tolist() for x, y, w in mask_dataset(
    ...     ids.batch(2), layer, seed=42)]
    >>> first == again
    True
    """
    validation.as_dataset(dataset)
    num_epochs = validation.as_int("num_epochs", num_epochs, 1, allow_none=True)
    seed = layer_or_given_seed(layer, seed)
    if seed is None:
        if num_epochs is not None:
            dataset = dataset.repeat(num_epochs)
        return dataset.map(layer, num_parallel_calls=num_parallel_calls)

    steps_per_epoch = rate_schedules.schedule_steps(layer, dataset)

    def mask_pass(epoch):
        def mask_element(index, element):
            key = element_seed(seed, epoch, index)
            if steps_per_epoch is None:
                return layer(element, seed=key)
            return layer(element, seed=key, step=epoch * steps_per_epoch + index)

        return dataset.enumerate().map(
            mask_element,
            num_parallel_calls=num_parallel_calls,
            deterministic=True,
        )

    if num_epochs is not None:
        epochs = tf.data.Dataset.range(num_epochs)

        def next_epoch():  # every iteration starts at epoch 0
            return 0

    else:
        passes = tf.Variable(0, dtype=tf.int64, trainable=False, name="mask_dataset_passes")
        # One element per iteration: reading it advances the pass counter.
        epochs = tf.data.Dataset.range(1).map(lambda _: passes.assign_add(1) - 1)

        def next_epoch():
            return int(passes.numpy())

    masked = epochs.flat_map(mask_pass)
    # flat_map hides the length; a known one is put back for `fit`.
    cardinality = int(dataset.cardinality())
    if cardinality >= 0:
        masked = masked.apply(
            tf.data.experimental.assert_cardinality(cardinality * (num_epochs or 1))
        )
    if steps_per_epoch is not None:
        # Where the next iteration's steps start, for `MaskRateLogger`.
        rate_schedules.record_keyed_steps(
            masked, layer, lambda: next_epoch() * steps_per_epoch
        )
    return masked
