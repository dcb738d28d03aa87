"""Spans of frames to mask (wav2vec 2.0's rule), over whole batches.

Written once against the op set (`keras_dynmask.kernels.op_set`): the same
functions run with TensorFlow ops in `tf.data` and under the TensorFlow
backend, and with `keras.ops` inside JAX and PyTorch models under jit. Every
step is a dense, static-width op on the whole batch `[B, T]`; no Python loop
runs over frames.

The rule, per sequence of `L` real frames (`SpanMasking`):

- `n = int(mask_prob * L / mask_length + u)` spans, `u` uniform in `[0, 1)`
  (drawn as `floor(x) + (u < x - floor(x))`, the same law, in float32), at
  least `min_masks`;
- overlapping spans (`allow_overlap=True`): `n` starts drawn without
  replacement among the `L - mask_length + 1` starts that keep a span inside
  the real frames, all of them when fewer exist than asked;
- disjoint spans (`allow_overlap=False`): `n` is capped at `floor(L /
  mask_length)`, and the spans are a uniformly random arrangement of `n`
  disjoint runs: `n` slots drawn without replacement among `L - n *
  (mask_length - 1)`, the `k`-th of them (in ascending order) moved `k *
  (mask_length - 1)` frames right. They cover exactly `n * mask_length`
  frames.
- `L < mask_length`: no span.

Draws without replacement rank one uniform key per candidate
(`token_masking.draw_ranks`, two argsorts) and keep the `n` lowest.
"""

from keras_dynmask.kernels import token_masking


def span_counts(ops, lengths, draws, *, mask_prob, mask_length, min_masks, allow_overlap):
    """The number of spans of each row, int32 `[B]`.

    Args:
        ops: the op set.
        lengths: int `[B]`, real frames per row.
        draws: float32 `[B]` uniform in `[0, 1)`, the `u` of the rule.
        mask_prob, mask_length, min_masks, allow_overlap: as `SpanMasking`'s.
    """
    lengths = ops.cast(lengths, "int32")
    expected = ops.cast(lengths, "float32") * float(mask_prob / mask_length)
    whole = ops.floor(expected)
    counts = ops.cast(whole, "int32") + ops.cast(draws < expected - whole, "int32")
    counts = ops.maximum(counts, min_masks)
    if allow_overlap:
        most = ops.maximum(lengths - (mask_length - 1), 0)
    else:
        most = lengths // mask_length
    return ops.minimum(counts, most)


def span_starts(ops, lengths, counts, keys, *, mask_length, allow_overlap):
    """bool `[B, T]`: True at the first frame of each span.

    Args:
        ops: the op set.
        lengths: int `[B]`, real frames per row (spans lie in `[0, L)`).
        counts: int32 `[B]`, spans per row (`span_counts`).
        keys: float32 `[B, T]` uniform draws ranking the candidate starts.
        mask_length, allow_overlap: as `SpanMasking`'s.
    """
    batch, width = ops.shape(keys)
    positions = ops.arange(width)[None, :]
    lengths = ops.cast(lengths, "int32")[:, None]
    counts = counts[:, None]
    if allow_overlap:
        slots = lengths - (mask_length - 1)
    else:
        slots = lengths - counts * (mask_length - 1)
    candidates = positions < slots
    chosen = candidates & (token_masking.draw_ranks(ops, candidates, keys) < counts)
    if allow_overlap or mask_length == 1:
        return chosen
    # The k-th chosen slot (k from 0, ascending) starts k * (mask_length - 1)
    # frames further right: a scatter onto the frames (unchosen slots go to
    # an extra column, cut off after).
    before = ops.cumsum(ops.cast(chosen, "int32"), axis=1) - 1
    starts = ops.where(chosen, positions + before * (mask_length - 1), width)
    rows = ops.zeros_like(starts) + ops.arange(batch)[:, None]
    indices = ops.reshape(ops.stack([rows, starts], axis=-1), (-1, 2))
    hits = ops.scatter(indices, ops.reshape(ops.cast(chosen, "int32"), (-1,)), (batch, width + 1))
    return hits[:, :width] > 0


def covered_frames(ops, starts, mask_length):
    """bool `[B, T]`: True where a span that starts in `starts` covers the frame.

    A frame `t` is covered when a span starts in `[t - mask_length + 1, t]`:
    a difference of running counts.
    """
    batch, width = ops.shape(starts)
    started = ops.cumsum(ops.cast(starts, "int32"), axis=1)
    shifted = ops.concat([ops.zeros((batch, mask_length), "int32"), started], axis=1)
    return started > shifted[:, :width]


def span_mask(ops, lengths, width, seed, *, mask_prob, mask_length, min_masks, allow_overlap):
    """bool `[B, width]`: the frames wav2vec 2.0's rule masks, in `[0, L)`.

    Args:
        ops: the op set.
        lengths: int `[B]`, the real frames of each row, at most `width`.
        width: the padded length (an int, or a scalar tensor under TF).
        seed: a shape-`[2]` integer seed; the mask is a pure function of
            `(lengths, seed)`.
        mask_prob, mask_length, min_masks, allow_overlap: the rule's.

    Returns:
        True at masked frames; frames from `L` on are never masked.
    """
    batch = ops.shape(lengths)[0]
    draws = ops.uniform((batch,), ops.fold_seed(seed, 0))
    keys = ops.uniform((batch, width), ops.fold_seed(seed, 1))
    counts = span_counts(
        ops, lengths, draws, mask_prob=mask_prob, mask_length=mask_length,
        min_masks=min_masks, allow_overlap=allow_overlap,
    )
    starts = span_starts(
        ops, lengths, counts, keys, mask_length=mask_length, allow_overlap=allow_overlap
    )
    return covered_frames(ops, starts, mask_length)


def onto_real_frames(ops, mask, padding_mask):
    """Puts a mask drawn over real frames `0 .. L-1` onto the frames of the row.

    The `k`-th real frame of a row (in order, wherever the padding lies)
    takes entry `k` of `mask`; padded frames are False. With padding at
    the end this is `mask & padding_mask`.
    """
    real_index = ops.maximum(ops.cumsum(ops.cast(padding_mask, "int32"), axis=1) - 1, 0)
    return padding_mask & ops.take_along_axis(mask, real_index, axis=1)


def mask_frames(ops, features, padding_mask, seed, mask_value, time_rule, feature_rule=None):
    """`(masked_features, mask)` for features `[B, T, D]`: the whole layer.

    Args:
        ops: the op set.
        features: float `[B, T, D]`.
        padding_mask: `None` (every frame real) or bool `[B, T]`, True at
            real frames.
        seed: a shape-`[2]` integer seed.
        mask_value: a Python float or a `[D]` vector, put at masked frames.
        time_rule: dict of `span_mask`'s rule arguments for the time axis.
        feature_rule: `None`, or the rule for the feature axis: masked
            columns (the same for every frame of a row) become 0.

    Returns:
        `masked_features` (features' dtype) and `mask`, bool `[B, T]`, True
        at time-masked frames.
    """
    batch, width, depth = ops.shape(features)
    if padding_mask is None:
        lengths = ops.zeros((batch,), "int32") + width
        mask = span_mask(ops, lengths, width, ops.fold_seed(seed, 0), **time_rule)
    else:
        lengths = ops.sum(ops.cast(padding_mask, "int32"), axis=1)
        drawn = span_mask(ops, lengths, width, ops.fold_seed(seed, 0), **time_rule)
        mask = onto_real_frames(ops, drawn, padding_mask)
    dtype = ops.dtype_name(features)
    masked = ops.where(mask[:, :, None], ops.cast(mask_value, dtype), features)
    if feature_rule is not None:
        depths = ops.zeros((batch,), "int32") + depth
        columns = span_mask(ops, depths, depth, ops.fold_seed(seed, 1), **feature_rule)
        masked = ops.where(columns[:, None, :], ops.cast(0.0, dtype), masked)
    return masked, mask
