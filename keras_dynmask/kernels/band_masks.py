"""SpecAugment's time and frequency band masks, written once against the op set.

A *band* is a run of consecutive positions `[start, start + width)` along
one axis (frames or frequency bins). Each band has an integer width uniform
on `{0, ..., max_width}` and a start uniform on `{0, ..., length - width}`,
independently per example and per band; a position is masked when any of
its example's bands covers it. Every step is a few dense ops over the
whole batch (the bands compared with an `arange`), so the kernels run with
TensorFlow (in `tf.data`, in TF models and SavedModels, under XLA, at a
length known only at run time) and with `keras.ops` inside JAX and PyTorch
models, under jit. `keras_dynmask.SpecAugment` validates its inputs and
calls `spectrogram_band_masks`.
"""

import fractions

import numpy as np

# Denominator bound for a ratio read as a fraction (0.7 is 7/10, not the
# binary float just below it): `floor(ratio * length)` is then computed
# in integers, exactly.
RATIO_DENOMINATOR_LIMIT = 10**6


def ratio_as_fraction(ratio):
    """`(numerator, denominator)` of the decimal a float ratio was written as."""
    fraction = fractions.Fraction(repr(float(ratio))).limit_denominator(RATIO_DENOMINATOR_LIMIT)
    return fraction.numerator, fraction.denominator


def widest_band(ops, length, mask_param, max_ratio=1.0):
    """`W = floor(min(mask_param, max_ratio * length))`, exactly.

    Args:
        ops: the op set.
        length: Python int, or an integer scalar tensor (a length known
            only at run time, TensorFlow).
        mask_param: Python int >= 0.
        max_ratio: Python float in `(0, 1]`, read as the decimal it was
            written as (0.7 is 7/10).

    Returns:
        A Python int when `length` is one, else an int32 scalar tensor.
    """
    numerator, denominator = ratio_as_fraction(max_ratio)
    if isinstance(length, int):
        return min(mask_param, length * numerator // denominator)
    capped = ops.cast(length, "int64") * numerator // denominator
    return ops.cast(ops.minimum(capped, mask_param), "int32")


def widest_bands_per_example(ops, lengths, num_frames, mask_param, max_ratio=1.0):
    """`widest_band` of each example's own length: int32 `[B, 1]`.

    Args:
        lengths: integer `[B]`, in `[0, num_frames]`.
        num_frames: the padded length `T`: a Python int (then the widths of
            every length `0..T` are worked out exactly in NumPy and looked
            up, so no backend needs 64-bit integers under jit) or an integer
            scalar tensor (TensorFlow: int64 arithmetic).
    """
    numerator, denominator = ratio_as_fraction(max_ratio)
    if isinstance(num_frames, int):
        table = np.minimum(mask_param, np.arange(num_frames + 1) * numerator // denominator)
        widths = ops.take(ops.convert(table.astype(np.int32)), ops.cast(lengths, "int32"))
    else:
        capped = ops.cast(lengths, "int64") * numerator // denominator
        widths = ops.cast(ops.minimum(capped, mask_param), "int32")
    return ops.reshape(widths, (-1, 1))


def draw_bands(ops, width_draws, start_draws, length, max_width):
    """Band widths and starts from uniform draws in `[0, 1)`.

    `width = floor(u * (max_width + 1))`: uniform on `{0, ..., max_width}`;
    `start = floor(v * (length - width + 1))`: uniform on `{0, ...,
    length - width}`. Both are clipped once more for the float draw closest
    to 1.

    Args:
        width_draws, start_draws: float32 `[B, M]`, uniform in `[0, 1)`.
        length: int or int32 scalar tensor, the axis length; or int32
            `[B, 1]`, each example's own.
        max_width: int, int32 scalar tensor or `[B, 1]`, at most `length`.

    Returns:
        `(widths, starts)`, int32 `[B, M]`.
    """
    widths = ops.cast(ops.floor(width_draws * ops.cast(max_width + 1, "float32")), "int32")
    widths = ops.minimum(widths, max_width)
    room = length - widths  # >= 0: max_width <= length
    starts = ops.cast(ops.floor(start_draws * ops.cast(room + 1, "float32")), "int32")
    return widths, ops.minimum(starts, room)


def bands_to_mask(ops, widths, starts, length):
    """bool `[B, length]`: True where one of an example's bands covers the position.

    Args:
        widths, starts: int32 `[B, M]` (`M` may be 0: nothing is masked).
        length: int or int32 scalar tensor.
    """
    positions = ops.arange(length)[None, None, :]
    ends = starts + widths
    inside = (positions >= starts[:, :, None]) & (positions < ends[:, :, None])
    return ops.any(inside, axis=1)


def spectrogram_band_masks(
    ops,
    batch_size,
    num_frames,
    num_bins,
    seed,
    num_time_masks,
    time_mask_param,
    max_time_ratio,
    num_freq_masks,
    freq_mask_param,
    lengths=None,
):
    """SpecAugment's masks of a batch: `(time_mask [B, T], freq_mask [B, F])`.

    Time bands have widths uniform on `{0, ..., W}`, `W = floor(min(
    time_mask_param, max_time_ratio * T))`; frequency bands on `{0, ...,
    min(freq_mask_param, F)}`. Each draw is independent per example.

    Args:
        ops: the op set.
        batch_size, num_frames, num_bins: ints or int32 scalar tensors:
            `B`, `T` and `F`.
        seed: shape-`[2]` int seed; the masks are a pure function of it and
            the shape.
        num_time_masks, time_mask_param, num_freq_masks, freq_mask_param:
            Python ints >= 0.
        max_time_ratio: Python float in `(0, 1]`.
        lengths: `None`, or int32 `[B]` in `[0, T]`: each example's real
            frames. Time bands then lie inside them, and their widest is
            worked out from each example's own length.

    Returns:
        Two bool tensors, True where masked.
    """
    draws_per_example = 2 * (num_time_masks + num_freq_masks)
    draws = ops.uniform((batch_size, max(draws_per_example, 1)), seed)
    if lengths is None:
        time_length = num_frames
        time_width = widest_band(ops, num_frames, time_mask_param, max_time_ratio)
    else:
        time_length = ops.reshape(ops.cast(lengths, "int32"), (-1, 1))
        time_width = widest_bands_per_example(
            ops, lengths, num_frames, time_mask_param, max_time_ratio
        )
    freq_width = widest_band(ops, num_bins, freq_mask_param)
    masks = []
    offset = 0
    for count, length, axis_length, max_width in (
        (num_time_masks, time_length, num_frames, time_width),
        (num_freq_masks, num_bins, num_bins, freq_width),
    ):
        width_draws = draws[:, offset : offset + count]
        start_draws = draws[:, offset + count : offset + 2 * count]
        offset += 2 * count
        if count == 0:
            masks.append(ops.zeros((batch_size, axis_length), "bool"))
            continue
        widths, starts = draw_bands(ops, width_draws, start_draws, length, max_width)
        masks.append(bands_to_mask(ops, widths, starts, axis_length))
    return tuple(masks)
