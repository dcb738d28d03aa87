"""Vectorised kernels for padding and causal attention masks.

`keras_dynmask.PaddingMask` and `keras_dynmask.CausalMask` validate their
inputs and call these functions. Each is a few ops over the whole batch,
written once against the op set (`keras_dynmask.kernels.op_set`): `ops=None`
takes the binding of the inputs (TensorFlow in `tf.data` and under the
TensorFlow backend, `keras.ops` on JAX and PyTorch tensors). No Python loop
runs over tokens, and the masks work at a sequence length known only at run
time (a `None` dimension in a SavedModel) as well as under XLA and jit.

Conventions: a *padding mask* is bool `[B, T]`, True where the token is real;
an *attention mask* is bool `[B, T, T]` (`[B, T_target, T_source]` across
two sequences), True where query `i` (axis 1) may attend key `j` (axis 2),
the `attention_mask` that `keras.layers.MultiHeadAttention` takes.
"""

import numpy as np

from keras_dynmask.kernels import op_set

DIRECTIONS = ("forward", "backward")


def token_padding_mask(token_ids, pad_token_id=0, ops=None):
    """True where a token is real, False where it is padding.

    Args:
        token_ids: integer tensor of any shape, or a `tf.RaggedTensor`
            `[B, (T)]` (TensorFlow only).
        pad_token_id: the padding id, or `None` when no id is padding (then
            only the positions past a ragged row's end are padding).
        ops: the op set; `None` takes the one of `token_ids`.

    Returns:
        A bool tensor of the shape of `token_ids`; for a ragged input the
        dense `[B, T]` mask of the padded batch, False past each row's end.
    """
    ops = ops or op_set.for_values(token_ids)
    if hasattr(token_ids, "flat_values"):  # a tf.RaggedTensor
        real_tokens = token_padding_mask(token_ids.flat_values, pad_token_id, ops)
        return token_ids.with_flat_values(real_tokens).to_tensor(
            default_value=False
        )
    dtype = ops.dtype_name(token_ids)
    if pad_token_id is None or not _representable(pad_token_id, dtype):
        # No token can equal the padding id.
        return ops.ones(ops.shape(token_ids), "bool")
    return ops.not_equal(token_ids, ops.convert(pad_token_id, dtype=dtype))


def length_padding_mask(lengths, sequence_length, ops=None):
    """bool `[B, T]`: True at the first `lengths[b]` positions of row `b`.

    Args:
        lengths: integer `[B]`, each row's number of real frames or tokens.
            Values are clipped to `[0, T]` in their own dtype first (an
            int64 length past int32 means the whole row, not a wrapped
            value): a negative length gives an all-padding row, one past
            `T` an all-real row. `PaddingMask` refuses both before this.
        sequence_length: int or scalar integer tensor, `T`.
        ops: the op set; `None` takes the one of `lengths`.
    """
    ops = ops or op_set.for_values(lengths)
    length = ops.cast(sequence_length, ops.dtype_name(lengths))
    lengths = ops.cast(ops.clip(lengths, 0, length), "int32")
    return ops.arange(sequence_length)[None, :] < lengths[:, None]


def cross_attention_mask(target_padding, source_padding):
    """`[B, T_target, T_source]`: True where the query (a target position)
    and the key (a source position) are both real.

    Args:
        target_padding: bool `[B, T_target]`, True at real target positions.
        source_padding: bool `[B, T_source]`, True at real source positions.
    """
    return target_padding[:, :, None] & source_padding[:, None, :]


def attention_mask_from_padding(padding_mask):
    """`[..., T, T]` mask, True where query and key are both real tokens.

    This is exactly the mask `keras.layers.MultiHeadAttention` derives from
    the Keras masks of its query and value: a padded query's row is all
    False.

    Args:
        padding_mask: bool `[..., T]`, True at real tokens.

    Returns:
        bool `[..., T, T]`.
    """
    return padding_mask[..., :, None] & padding_mask[..., None, :]


def causal_attention_mask(
    batch_size,
    sequence_length,
    direction="forward",
    window=None,
    prefix_length=None,
    segment_ids=None,
    padding_mask=None,
    ops=None,
):
    """Causal attention mask with optional window, prefix, segments, padding.

    Rules, applied in this order:

    1. direction: `"forward"` allows key `j <= i`, `"backward"` allows
       `j >= i`; `window=w` further needs `|i - j| < w`;
    2. prefix: query and key both inside the first `prefix_length` positions
       are allowed whatever rule 1 says (prefix-LM);
    3. segments: query and key must share a segment id;
    4. padding: padded keys are never attended, and a padded query attends
       only itself.

    The diagonal survives rules 1 to 3 and rule 4 keeps it, so every query row
    holds at least one True.

    Args:
        batch_size: int or scalar int32 tensor, `B`.
        sequence_length: int or scalar int32 tensor, `T`.
        direction: `"forward"` or `"backward"`.
        window: `None` or Python int >= 1.
        prefix_length: `None`, or an integer tensor of shape `[]` or `[B]`.
        segment_ids: `None`, or an integer tensor `[B, T]`.
        padding_mask: `None`, or a bool tensor `[B, T]`, True at real tokens.
        ops: the op set; `None` takes the one of the tensor arguments.

    Returns:
        bool `[B, T, T]`.
    """
    if direction not in DIRECTIONS:
        raise ValueError(
            f"`direction` must be one of {DIRECTIONS}. Received: "
            f"direction={direction!r}"
        )
    ops = ops or op_set.for_values(
        batch_size, sequence_length, prefix_length, segment_ids, padding_mask
    )
    positions = ops.arange(sequence_length)
    # offset[i, j] = i - j: how far key j lies behind query i.
    offset = positions[:, None] - positions[None, :]
    if direction == "forward":
        allowed = offset >= 0
    else:
        allowed = offset <= 0
    if window is not None:
        allowed = allowed & (ops.abs(offset) < window)
    allowed = allowed[None]  # [1, T, T], shared by the whole batch.

    if prefix_length is not None:
        # Clipped to [0, T] in its own dtype first: an int64 prefix past
        # int32 means the whole sequence, not a wrapped value.
        prefix_length = ops.convert(prefix_length)
        length = ops.cast(sequence_length, ops.dtype_name(prefix_length))
        prefix_length = ops.clip(prefix_length, 0, length)
        prefix_length = ops.reshape(ops.cast(prefix_length, "int32"), [-1, 1])
        in_prefix = positions[None, :] < prefix_length  # [B or 1, T]
        allowed = allowed | (in_prefix[:, :, None] & in_prefix[:, None, :])

    if segment_ids is not None:
        allowed = allowed & (segment_ids[:, :, None] == segment_ids[:, None, :])

    if padding_mask is not None:
        # Padding groups: every real token shares group -1, every padded
        # position is a group of its own (its position). A query then sees
        # only keys of its group: real keys for a real query, itself for a
        # padded one.
        padding_group = ops.where(padding_mask, -1, positions[None, :])
        allowed = allowed & (padding_group[:, :, None] == padding_group[:, None, :])

    return ops.broadcast_to(allowed, [batch_size, sequence_length, sequence_length])


def _representable(value, dtype):
    info = np.iinfo(dtype) if "int" in dtype else None
    return info is None or info.min <= value <= info.max
