"""Values listed row by row (as `tf.where` lists them) into a padded batch."""

import tensorflow as tf


def pad_rows(values, row_ids, nrows, width=None, default=0):
    """`[nrows, width]`: row `r` holds, in order, the `values` whose `row_ids` is `r`.

    `row_ids` must be sorted (as `tf.where(mask)[:, 0]` is). One
    `RaggedTensorToTensor` from the row ids, without building a
    `tf.RaggedTensor` (whose row partition costs a bincount and checks).

    Args:
        values: `[N]` values.
        row_ids: int64 `[N]`, non-decreasing, each in `[0, nrows)`.
        nrows: int64 scalar (or Python int), the rows of the result.
        width: `None` (the fullest row's count) or an int / int scalar;
            rows holding more are cut.
        default: the padding, a scalar of `values`' dtype.

    Example:

    >>> pad_rows(tf.constant([5, 6, 7]), tf.constant([0, 0, 2], tf.int64), 3).numpy()
    array([[5, 6],
           [0, 0],
           [7, 0]], dtype=int32)
    """
    nrows = tf.cast(nrows, tf.int64)
    width = -1 if width is None else width
    return tf.raw_ops.RaggedTensorToTensor(
        shape=tf.stack([nrows, tf.cast(width, tf.int64)]),
        values=values,
        default_value=tf.cast(default, values.dtype),
        row_partition_tensors=[nrows, tf.cast(row_ids, tf.int64)],
        row_partition_types=["FIRST_DIM_SIZE", "VALUE_ROWIDS"],
    )
