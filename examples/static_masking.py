"""BERT-style *static* masking: masks drawn once and stored with the data.

The baseline that dynamic masking is measured against. BERT's data
preparation drew the masked-LM corruption of every sequence once, wrote the
masked copies to disk, and trained on them for the whole run; to show each
sequence with more than one mask it wrote `dupe_factor` (10) differently
masked copies of the data. This module reproduces that honestly:

- `materialize_static_masks` runs a masking layer over the sequences
  `dupe_factor` times (keyed by `(seed, copy, batch)` through
  `keras_dynmask.data.mask_dataset`) and keeps the results as NumPy arrays:
  the masks exist before training starts and never change;
- `static_masked_dataset` feeds those stored copies to `model.fit`, copy
  `epoch % dupe_factor` in epoch `epoch`, in a shuffled order per epoch;
- `epoch_order` is that order, so a dynamic-masking run can see exactly the
  same sequences in exactly the same order.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_dynmask.data import mask_dataset
from keras_dynmask.kernels.seeds import keyed_seed
from keras_dynmask.validation import as_int


@dataclasses.dataclass(frozen=True)
class StaticMasks:
    """Masked copies of a set of sequences, fixed once and for all.

    Args:
        token_ids: int `[dupe_factor, N, T]`, the corrupted ids of each copy.
        labels: int `[N, T]`, the original ids (the same for every copy).
        sample_weight: float32 `[dupe_factor, N, T]`, 1.0 at the positions
            selected in that copy, else 0.0.
    """

    token_ids: np.ndarray
    labels: np.ndarray
    sample_weight: np.ndarray

    @property
    def dupe_factor(self):
        """Number of differently masked copies."""
        return self.token_ids.shape[0]

    @property
    def num_sequences(self):
        """Number of sequences `N` in each copy."""
        return self.token_ids.shape[1]


def materialize_static_masks(token_ids, masker, dupe_factor=1, seed=0, batch_size=256):
    """Masks `token_ids` `dupe_factor` times, once, and stores the results.

    Copy `k` is pass `k` of `mask_dataset(..., seed=seed, num_epochs=
    dupe_factor)` over the sequences in order, so copies differ from one
    another, and the whole set is a pure function of `(token_ids, seed)`.

    Args:
        token_ids: int array `[N, T]` of (packed) sequences.
        masker: a `DynamicMLMMasking` with `output_mode="fit"`.
        dupe_factor: int >= 1, number of masked copies (BERT used 10).
        seed: int, seeds the masks.
        batch_size: int >= 1, sequences masked per call (does not change
            what a copy holds beyond which batch keys each mask).

    Returns:
        A `StaticMasks`.

    Example:

    >>> import numpy as np
    >>> from keras_dynmask import DynamicMLMMasking
    >>> ids = np.arange(5, 45, dtype="int32").reshape(4, 10)
    >>> masker = DynamicMLMMasking(50, mask_token_id=1, output_mode="fit")
    >>> static = materialize_static_masks(ids, masker, dupe_factor=3, seed=7)
    >>> static.token_ids.shape, static.sample_weight.shape
    ((3, 4, 10), (3, 4, 10))
    """
    as_int("dupe_factor", dupe_factor, 1)
    as_int("batch_size", batch_size, 1)
    if getattr(masker, "output_mode", None) != "fit":
        raise ValueError(
            "`masker` must be a DynamicMLMMasking with output_mode='fit'. "
            f"Received: masker={masker!r}"
        )
    token_ids = np.asarray(token_ids)
    if token_ids.ndim != 2 or token_ids.shape[0] < 1:
        raise ValueError(
            "`token_ids` must be a non-empty int array of shape [N, T]. "
            f"Received shape {token_ids.shape}"
        )
    if not np.issubdtype(token_ids.dtype, np.integer):
        raise ValueError(
            f"`token_ids` must hold ints. Received dtype {token_ids.dtype}"
        )
    batches = tf.data.Dataset.from_tensor_slices(token_ids).batch(batch_size)
    masked = mask_dataset(batches, masker, seed=seed, num_epochs=dupe_factor)
    corrupted, weights = [], []
    for x, _, weight in masked.as_numpy_iterator():
        corrupted.append(x)
        weights.append(weight)
    shape = (dupe_factor,) + token_ids.shape
    return StaticMasks(
        token_ids=np.concatenate(corrupted).reshape(shape),
        labels=token_ids.copy(),
        sample_weight=np.concatenate(weights).astype(np.float32).reshape(shape),
    )


def epoch_order(num_sequences, batch_size, epochs, seed):
    """Which sequences make each batch: a fresh permutation every epoch.

    A pure function of its arguments, so runs that should see the same data
    in the same order (static and dynamic masking) do. Each epoch is cut
    into `num_sequences // batch_size` batches; the sequences left over
    (fewer than a batch) sit that epoch out.

    Args:
        num_sequences: int >= 1.
        batch_size: int in [1, num_sequences].
        epochs: int >= 1.
        seed: int.

    Returns:
        A `tf.data.Dataset` of `(epoch, indices)`: an int64 scalar and an
        int64 `[batch_size]` vector, epoch by epoch.
    """
    as_int("num_sequences", num_sequences, 1)
    as_int("batch_size", batch_size, 1)
    as_int("epochs", epochs, 1)
    if batch_size > num_sequences:
        raise ValueError(
            f"`batch_size` must be at most the number of sequences "
            f"({num_sequences}). Received: batch_size={batch_size!r}"
        )
    steps = num_sequences // batch_size

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_sequences, dtype=tf.int64),
            seed=keyed_seed(seed, epoch),
        )
        batches = tf.reshape(order[: steps * batch_size], [steps, batch_size])
        return tf.data.Dataset.from_tensor_slices((tf.fill([steps], epoch), batches))

    return tf.data.Dataset.range(epochs).flat_map(one_epoch)


def static_masked_dataset(static_masks, batch_size, epochs, seed):
    """Batches of stored masks for `model.fit`, copy `epoch % dupe_factor`.

    Holds all `epochs` passes back to back, `N // batch_size` batches each
    (see `epoch_order`): pass `steps_per_epoch=N // batch_size` and
    `epochs` to `fit`. Nothing is masked here: every batch is read from
    `static_masks`.

    Args:
        static_masks: a `StaticMasks`.
        batch_size: int in [1, N].
        epochs: int >= 1.
        seed: int, seeds the order.

    Returns:
        A `tf.data.Dataset` of `(x, y, sample_weight)` batches.
    """
    order = epoch_order(static_masks.num_sequences, batch_size, epochs, seed)
    corrupted = tf.constant(static_masks.token_ids)
    labels = tf.constant(static_masks.labels)
    weights = tf.constant(static_masks.sample_weight)
    dupe_factor = static_masks.dupe_factor

    def lookup(epoch, indices):
        copy = tf.gather(corrupted, epoch % dupe_factor)
        weight = tf.gather(weights, epoch % dupe_factor)
        return (
            tf.gather(copy, indices),
            tf.gather(labels, indices),
            tf.gather(weight, indices),
        )

    return order.map(lookup, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
