"""keras-hub's masked-LM training triple `(x, y, sample_weight)`.

`BertMaskedLM` (and keras-hub's other masked-LM tasks) fit on `x` a dict of
`token_ids`, `padding_mask`, `segment_ids` and `mask_positions`, `y` the
`mask_ids` and `sample_weight` the `mask_weights`: what
`keras_hub.models.BertMaskedLMPreprocessor` yields, here made from a
masking layer's outputs. Written against the op set
(`keras_dynmask.kernels.op_set`) for dense ids; ragged ids (TensorFlow
only) are padded first.
"""

import keras
from keras_dynmask.lazy_tensorflow import tf

KEYS = ("token_ids", "padding_mask", "segment_ids", "mask_positions")


def dense_ids(ids, pad_token_id):
    """A ragged `[B, (T)]` batch padded with `pad_token_id`; dense ids as they are."""
    if isinstance(ids, tf.RaggedTensor):
        return ids.to_tensor(default_value=0 if pad_token_id is None else pad_token_id)
    return ids


def masked_lm_triple(ops, rest, original, corrupted, targets, pad_token_id):
    """`(x, y, sample_weight)` from the corrupted ids and keras-hub's targets.

    Args:
        ops: the op set (a ragged `original` needs TensorFlow's).
        rest: the dict input's other entries, or `None`; its `"segment_ids"`
            (dense, or ragged like the ids) is used when present, else zeros.
        original: the input ids (their padding decides `padding_mask`).
        corrupted: the corrupted ids, shaped like `original`.
        targets: `(mask_positions, mask_ids, mask_weights)`.
        pad_token_id: the padding id, or `None` (every position is real).
    """
    positions, ids, weights = targets
    token_ids = dense_ids(corrupted, pad_token_id)
    if isinstance(original, tf.RaggedTensor):
        padding_mask = tf.sequence_mask(original.row_lengths(), tf.shape(token_ids)[1])
    elif pad_token_id is None:
        padding_mask = ops.ones(ops.shape(original), "bool")
    else:
        padding_mask = ops.not_equal(original, ops.convert(pad_token_id, dtype=ops.dtype_name(original)))
    segment_ids = (rest or {}).get("segment_ids")
    if segment_ids is None:
        segment_ids = ops.zeros_like(token_ids)
    else:
        segment_ids = ops.convert(dense_ids(segment_ids, 0))
    x = {
        "token_ids": token_ids,
        "padding_mask": padding_mask,
        "segment_ids": segment_ids,
        "mask_positions": positions,
    }
    return x, ids, weights


def masked_lm_spec(token_ids, max_predictions):
    """The `KerasTensor` structure `masked_lm_triple` returns."""
    shape = tuple(token_ids.shape)
    width = shape[:-1] + (max_predictions,)
    x = {
        "token_ids": keras.KerasTensor(shape, dtype=token_ids.dtype),
        "padding_mask": keras.KerasTensor(shape, dtype="bool"),
        "segment_ids": keras.KerasTensor(shape, dtype=token_ids.dtype),
        "mask_positions": keras.KerasTensor(width, dtype="int32"),
    }
    return (
        x,
        keras.KerasTensor(width, dtype=token_ids.dtype),
        keras.KerasTensor(width, dtype="float32"),
    )
