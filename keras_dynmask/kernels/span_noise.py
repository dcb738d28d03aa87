"""T5 span corruption written once against the op set, at fixed widths.

What `SpanCorruption` and `DenoiserMixture` compute inside a JAX or
PyTorch model, under jit, and on a backend tensor called eagerly: dense,
static-width ops over a `[B, T]` batch (`keras_dynmask.kernels.op_set`),
no Python loop over tokens and no `[B, T, T]` intermediate (the largest
arrays are `[B, 2T]`).

Per row of `n` real tokens (padding `pad_token_id` at the end), the counts
are `noise_spans.python_span_counts`' (T5's float32 arithmetic, looked up
in a table for a fixed density). The `num_noise` noise tokens, counted in
order, are cut into `num_spans` spans by `num_spans - 1` distinct cut
points among their `num_noise - 1` inner gaps: the gaps with the smallest
uniform draws, a uniformly random subset (`token_masking.draw_ranks`);
the `n - num_noise` non-noise tokens the same way with independent draws.
The spans alternate, non-noise first, so:

- noise token `j` of span `k` sits at sequence position
  `j + (non-noise tokens in spans 0..k)`;
- non-noise token `i` of span `k` at `i + (noise tokens in spans 0..k-1)`.

One argsort of those positions inverts the layout (which token is at each
sequence position); the outputs are then compactions of kept slots (an
argsort of `where(keep, position, position + width)` and one gather):
`inputs` keeps the non-noise tokens and, at each noise span's first token,
its sentinel; `targets` keeps, per noise token, its sentinel slot (first
token of a span only) and the token.

The counts may differ row by row (`corrupt_counted_spans`): a mixture of
denoisers passes each row's own, rows that take no sentinels (a prefix-LM
split) and an id put first in a row's inputs (its mode token).

No value is checked at run time: a token equal to a sentinel id is
corrupted like any other token (the outputs then hold it where a sentinel
could be expected), and ids outside the vocabulary pass unchanged.
"""

import numpy as np

from keras_dynmask.kernels import noise_spans
from keras_dynmask.kernels import token_masking


def real_lengths(ops, token_ids, pad_token_id):
    """Real tokens per row: up to the last non-padding id (int32 `[B]`)."""
    batch, width = ops.shape(token_ids)
    if pad_token_id is None:
        return ops.zeros((batch,), "int32") + width
    positions = ops.arange(width, dtype="int32")[None, :] + 1
    real = ops.not_equal(token_ids, ops.cast(pad_token_id, token_ids.dtype))
    return ops.max(ops.where(real, positions, 0), axis=1)


def span_counts(ops, lengths, width, noise_density, mean_noise_span_length, max_spans):
    """`(num_noise, num_spans)` per row, int32 `[B]`; `lengths` <= `width`.

    Python settings are looked up in a table of `python_span_counts` for
    every length `0 .. width`; a scheduled density (a float32 scalar
    tensor) or per-row settings (float32 `[B]` tensors) are computed in
    float32 as that function does.
    """
    if all(isinstance(v, (int, float)) for v in (noise_density, mean_noise_span_length)):
        noise, spans = noise_spans.python_span_counts(
            np.arange(width + 1), noise_density, mean_noise_span_length, max_spans
        )
        return (
            ops.take(ops.convert(noise.astype(np.int32)), lengths),
            ops.take(ops.convert(spans.astype(np.int32)), lengths),
        )
    if isinstance(mean_noise_span_length, (int, float)):
        mean = float(np.float32(mean_noise_span_length))
    else:
        mean = ops.cast(mean_noise_span_length, "float32")
    product = ops.cast(lengths, "float32") * ops.cast(noise_density, "float32")
    num_noise = ops.minimum(ops.maximum(ops.cast(ops.round(product), "int32"), 1), lengths - 1)
    ratio = ops.cast(num_noise, "float32") / mean
    num_spans = ops.maximum(ops.cast(ops.round(ratio), "int32"), 1)
    num_spans = ops.minimum(num_spans, ops.minimum(num_noise, lengths - num_noise))
    num_spans = ops.minimum(num_spans, max_spans)
    noisy = lengths >= 2
    return ops.where(noisy, num_noise, 0), ops.where(noisy, num_spans, 0)


def prefix_split_noise(ops, lengths, draws):
    """Noise tokens of a prefix-LM split per row: `n - s`, `s` uniform in `[1, n)`.

    `draws`: float32 `[B]` uniform in `[0, 1)`. Rows of fewer than 2 tokens
    get 0. With one span (and no sentinel), the prefix is the non-noise
    span and the rest the noise span.
    """
    choices = ops.maximum(lengths - 1, 0)
    split = 1 + ops.cast(ops.floor(draws * ops.cast(choices, "float32")), "int32")
    split = ops.minimum(split, ops.maximum(choices, 1))  # float32 rounding up
    return ops.where(lengths >= 2, lengths - split, 0)


def _span_starts(ops, totals, parts, draws):
    """Random composition of `totals` items into `parts` spans.

    Returns `(span_ids, starts, span_begins)`: per item `j < totals` (index
    in `[B, T]`) its span (int32), True where it begins a span, and per
    span `k` (`[B, T + 1]`) the index of its first item, `totals` for
    `k >= parts`.
    """
    batch, width = ops.shape(draws)
    items = ops.arange(width, dtype="int32")[None, :]
    inner_gaps = (items >= 1) & (items < totals[:, None])
    ranks = token_masking.draw_ranks(ops, inner_gaps, draws)
    cuts = inner_gaps & (ranks < (parts - 1)[:, None])
    span_ids = ops.cumsum(ops.cast(cuts, "int32"), axis=1)
    starts = cuts | ((items == 0) & (parts > 0)[:, None])
    # The starts in order, then (past `parts`) the total.
    order = ops.argsort(ops.where(starts, items, items + width), axis=-1)
    spans = ops.arange(width, dtype="int32")[None, :]
    begins = ops.where(spans < parts[:, None], ops.cast(order, "int32"), totals[:, None])
    begins = ops.concat([begins, totals[:, None]], axis=1)
    return span_ids, starts, begins


def _compact(ops, values, keep, count, width, eos_id, pad_token_id, first_ids=None):
    """The kept `values` of each row in order, then `eos_id`, then padding,
    cut or padded to `width` columns (`count` = kept per row). `first_ids`
    (int `[B]`, negative: none) go before a row's kept values."""
    if first_ids is not None:
        has_first = first_ids >= 0
        values = ops.concat([ops.cast(first_ids, values.dtype)[:, None], values], axis=1)
        keep = ops.concat([has_first[:, None], keep], axis=1)
        count = count + ops.cast(has_first, "int32")
    batch, columns = ops.shape(values)
    positions = ops.arange(columns, dtype="int32")[None, :]
    order = ops.argsort(ops.where(keep, positions, positions + columns), axis=-1)
    packed = ops.take_along_axis(values, order, axis=1)
    pad = ops.cast(pad_token_id, values.dtype)
    if width > columns:
        packed = ops.concat([packed, ops.zeros((batch, width - columns), values.dtype) + pad], axis=1)
    packed = packed[:, :width]
    slots = ops.arange(width, dtype="int32")[None, :]
    count = count[:, None]
    filler = ops.zeros_like(packed) + pad
    if eos_id is not None:
        filler = ops.where(slots == count, ops.cast(eos_id, values.dtype), filler)
    return ops.where(slots < count, packed, filler)


def corrupt_spans(ops, token_ids, seed, *, noise_density, mean_noise_span_length,
                  sentinel_ids, eos_id, pad_token_id, inputs_length, targets_length,
                  corrupt=True):
    """`(inputs, targets)`: `[B, inputs_length]`, `[B, targets_length]`.

    Args:
        ops: the op set.
        token_ids: int `[B, T]`, `T` static, padding at the end of a row.
        seed: int `[2]`; the output is a pure function of ids and seed.
        noise_density: Python float, or a float32 scalar tensor.
        mean_noise_span_length: float >= 1.
        sentinel_ids: the sentinels in order (a list of ints).
        eos_id: `None` or int, after the inputs and after the targets.
        pad_token_id: `None` (0 for the outputs) or int.
        inputs_length, targets_length: ints, the output widths.
        corrupt: False: no noise (inputs = the tokens, targets empty).
    """
    width = ops.shape(token_ids)[1]
    lengths = real_lengths(ops, token_ids, pad_token_id)
    if corrupt:
        num_noise, num_spans = span_counts(
            ops, lengths, width, noise_density, mean_noise_span_length, len(sentinel_ids)
        )
    else:
        num_noise = num_spans = ops.zeros_like(lengths)
    return corrupt_counted_spans(
        ops, token_ids, seed, lengths, num_noise, num_spans, sentinel_ids=sentinel_ids,
        eos_id=eos_id, pad_token_id=pad_token_id, inputs_length=inputs_length,
        targets_length=targets_length,
    )


def corrupt_counted_spans(ops, token_ids, seed, lengths, num_noise, num_spans, *,
                          sentinel_ids, eos_id, pad_token_id, inputs_length,
                          targets_length, with_sentinels=None, inputs_first_ids=None):
    """`corrupt_spans` for given per-row counts, and per-row options.

    Args:
        lengths, num_noise, num_spans: int32 `[B]`: real tokens (`real_lengths`),
            noise tokens and noise spans per row (`span_counts`; 0 and 0: no
            noise). Each row's counts may differ: a mixture of denoisers
            passes each row's own.
        with_sentinels: `None` (every row) or bool `[B]`: rows without take no
            sentinels (with one span, a prefix-LM split: inputs the non-noise
            prefix, targets the noise rest).
        inputs_first_ids: `None` or int `[B]`, an id put first in a row's
            inputs (negative: none).
        The other arguments: as for `corrupt_spans`.
    """
    batch, width = ops.shape(token_ids)
    dtype = ops.dtype_name(token_ids)
    pad = 0 if pad_token_id is None else pad_token_id
    num_kept = lengths - num_noise
    noise_draws = ops.uniform((batch, width), ops.fold_seed(seed, 1))
    kept_draws = ops.uniform((batch, width), ops.fold_seed(seed, 2))
    noise_span, noise_starts, noise_begins = _span_starts(ops, num_noise, num_spans, noise_draws)
    kept_span, _, kept_begins = _span_starts(ops, num_kept, num_spans, kept_draws)

    # Sequence positions of the noise and the non-noise tokens, in order.
    items = ops.arange(width, dtype="int32")[None, :]
    noise_at = items + ops.take_along_axis(kept_begins, noise_span + 1, axis=1)
    kept_at = items + ops.take_along_axis(noise_begins, kept_span, axis=1)
    # Unused items go last (stable argsort keeps them in order).
    noise_at = ops.where(items < num_noise[:, None], noise_at, items + 2 * width)
    kept_at = ops.where(items < num_kept[:, None], kept_at, items + 3 * width)
    # Which item sits at each sequence position: the inverse permutation.
    source = ops.argsort(ops.concat([noise_at, kept_at], axis=1), axis=-1)[:, :width]
    source = ops.cast(source, "int32")
    real = items < lengths[:, None]
    is_noise = real & (source < width)
    padding = ops.zeros((batch, width), "int32")
    span = ops.take_along_axis(ops.concat([noise_span, padding], axis=1), source, axis=1)
    begins = ops.take_along_axis(
        ops.concat([ops.cast(noise_starts, "int32"), padding], axis=1), source, axis=1
    )
    first = is_noise & (begins > 0)
    sentinel_spans = num_spans
    if with_sentinels is not None:
        first = first & with_sentinels[:, None]
        sentinel_spans = ops.where(with_sentinels, num_spans, 0)

    table = ops.convert(np.asarray(sentinel_ids, np.int64))
    sentinels = ops.cast(ops.take(table, ops.clip(span, 0, len(sentinel_ids) - 1)), dtype)
    inputs = _compact(
        ops,
        ops.where(first, sentinels, token_ids),
        real & (ops.logical_not(is_noise) | first),
        num_kept + sentinel_spans,
        inputs_length,
        eos_id,
        pad,
        first_ids=inputs_first_ids,
    )
    # Two slots per position: the span's sentinel (first tokens), the token.
    slot_values = ops.reshape(ops.stack([sentinels, token_ids], axis=2), (batch, 2 * width))
    slot_kept = ops.reshape(ops.stack([first, is_noise], axis=2), (batch, 2 * width))
    targets = _compact(
        ops, slot_values, slot_kept, num_noise + sentinel_spans, targets_length, eos_id, pad
    )
    return inputs, targets
