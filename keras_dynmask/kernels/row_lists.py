"""Row-wise helpers: a mask's entries listed row by row (as `tf.where`
lists them), such lists into a padded batch, and running counts along
each row."""

from keras_dynmask.lazy_tensorflow import tf


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


def listed_rows(mask):
    """The True entries of a bool `[B, T]`, listed flat, and where each row begins.

    A flat `tf.where` writes half the coordinates of a 2-D one; each row's
    first entry is found by a binary search for the row's first flat
    position (`r * T`).

    Args:
        mask: bool `[B, T]`.

    Returns:
        `(flat_positions, row_splits)`: int64 `[N]`, the ascending flat
        positions `r * T + t` of the True entries, and int64 `[B + 1]`, row
        `r`'s entries being `flat_positions[row_splits[r]:row_splits[r + 1]]`.

    Example:

    >>> positions, splits = listed_rows(tf.constant([[True, False, True], [False, True, False]]))
    >>> positions.numpy(), splits.numpy()
    (array([0, 2, 4]), array([0, 2, 3]))
    """
    flat_positions = tf.where(tf.reshape(mask, [-1]))[:, 0]
    shape = tf.shape(mask, tf.int64)
    row_splits = tf.concat(
        [tf.searchsorted(flat_positions, tf.range(shape[0]) * shape[1], out_type=tf.int64),
         tf.shape(flat_positions, tf.int64)], 0)
    return flat_positions, row_splits


def pad_split_rows(values, row_splits, width, default=0):
    """`[B, width]`: row `r` holds `values[row_splits[r]:row_splits[r + 1]]`.

    `pad_rows` for rows given by their splits (as `listed_rows` returns
    them): each row cut to `width` and padded with `default`.

    Args:
        values: `[N]` values.
        row_splits: int64 `[B + 1]`, non-decreasing, from 0 to `N`.
        width: an int or int scalar.
        default: the padding, a scalar of `values`' dtype.

    Example:

    >>> pad_split_rows(tf.constant([5, 6, 7]), tf.constant([0, 2, 2, 3], tf.int64), 2).numpy()
    array([[5, 6],
           [0, 0],
           [7, 0]], dtype=int32)
    """
    nrows = tf.shape(row_splits, tf.int64)[0] - 1
    return tf.raw_ops.RaggedTensorToTensor(
        shape=tf.stack([nrows, tf.cast(width, tf.int64)]),
        values=values,
        default_value=tf.cast(default, values.dtype),
        row_partition_tensors=[row_splits],
        row_partition_types=["ROW_SPLITS"],
    )


# Block width of `row_counts`' matrix product.
COUNT_BLOCK = 32


def row_counts(flags, float_dtype="float32"):
    """int32 `[B, T]`: the number of True flags at or before each position.

    `flags` may also hold small non-negative integers: their running sums.
    A cumulative sum, computed as a product with a `COUNT_BLOCK`-wide
    triangular matrix inside blocks plus a cumulative sum over the block
    totals: a third of `tf.cumsum`'s time on a CPU. Exact while every sum
    stays below 2**24 (float32's integers); with `float_dtype=tf.float64`,
    below 2**53, and the sums come back as int64.
    """
    shape = tf.shape(flags)
    padded = -(-shape[1] // COUNT_BLOCK) * COUNT_BLOCK
    values = tf.pad(tf.cast(flags, float_dtype), [[0, 0], [0, padded - shape[1]]])
    triangle = tf.linalg.band_part(tf.ones([COUNT_BLOCK, COUNT_BLOCK], float_dtype), 0, -1)
    inner = tf.matmul(tf.reshape(values, [-1, COUNT_BLOCK]), triangle)
    inner = tf.reshape(inner, [shape[0], padded // COUNT_BLOCK, COUNT_BLOCK])
    before = tf.cumsum(inner[:, :, -1], axis=1, exclusive=True)
    counts = tf.reshape(inner + before[:, :, None], [shape[0], padded])
    return tf.cast(counts[:, : shape[1]], tf.int32 if tf.as_dtype(float_dtype) == tf.float32 else tf.int64)
