"""sentinels: inputs and targets from span layouts, both ways of building them."""

import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask.kernels import noise_spans
from keras_dynmask.kernels import sentinels

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))
from span_reference import expected_counts  # noqa: E402
from span_reference import restore  # noqa: E402
from span_reference import strip  # noqa: E402

SENTINELS = list(range(299, 279, -1))  # 20, running down
LISTED = [250, 7, 260, 8, 270, 9, 280, 10, 290, 11, 255, 12, 265, 13, 275, 14, 285, 15, 295, 16]


def random_batch(batch=48, width=40, seed=0, dtype=np.int32):
    rng = np.random.default_rng(seed)
    ids = rng.integers(20, 240, size=(batch, width)).astype(dtype)
    lengths = rng.integers(0, width + 1, size=batch)
    lengths[:4] = [0, 1, 2, width]
    for row, n in enumerate(lengths):
        ids[row, n:] = 0
    return tf.constant(ids), lengths


def layout_of(ids, density=0.3, mean=2.0, seed=(1, 2), max_spans=20):
    lengths = sentinels.trailing_lengths(ids, 0)
    num_noise, num_spans = noise_spans.span_counts(lengths, density, mean, max_spans)
    layout = noise_spans.span_layout(lengths, num_noise, num_spans, tf.constant(seed))
    return lengths, num_noise, num_spans, layout


def test_trailing_lengths_count_up_to_the_last_real_token():
    ids = tf.constant([[5, 0, 6, 0, 0], [0, 0, 0, 0, 0], [1, 2, 3, 4, 5]])
    assert sentinels.trailing_lengths(ids, 0).numpy().tolist() == [3, 0, 5]
    assert sentinels.trailing_lengths(ids, None).numpy().tolist() == [5, 5, 5]
    assert sentinels.trailing_lengths(ids, 5).numpy().tolist() == [5, 5, 4]


def test_sentinel_tokens_and_values():
    ids = tf.constant([[299, 280, 279, 7, 0]])
    assert sentinels.sentinel_tokens(ids, SENTINELS).numpy().tolist() == [
        [True, True, False, False, False]
    ]
    index = tf.constant([0, 1, 19, 25])
    assert sentinels.sentinel_values(index, SENTINELS, tf.int32).numpy().tolist() == [
        299, 298, 280, 280
    ]
    assert sentinels.sentinel_values(index, LISTED, tf.int64).numpy().tolist() == [
        250, 7, 16, 16
    ]


@pytest.mark.parametrize("sentinel_ids", [SENTINELS, LISTED])
@pytest.mark.parametrize("eos_id", [None, 1])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_round_trip_and_counts_for_every_row(sentinel_ids, eos_id, dtype):
    ids, lengths = random_batch(dtype=dtype)
    _, num_noise, num_spans, layout = layout_of(ids)
    inputs, inputs_lengths, targets, targets_lengths = sentinels.corrupt_spans(
        ids, layout, num_spans, sentinel_ids, 0, eos_id=eos_id
    )
    assert inputs.dtype == targets.dtype == ids.dtype
    extra = int(eos_id is not None)
    for row, n in enumerate(lengths):
        noise, spans = expected_counts(n, 0.3, 2.0, 20)
        assert (num_noise[row], num_spans[row]) == (noise, spans)
        assert inputs_lengths[row] == n - noise + spans + extra
        assert targets_lengths[row] == noise + spans + extra
        got_inputs = strip(inputs[row].numpy(), eos_id=eos_id, length=inputs_lengths[row])
        got_targets = strip(targets[row].numpy(), eos_id=eos_id, length=targets_lengths[row])
        assert np.all(inputs[row].numpy()[inputs_lengths[row]:] == 0)
        assert restore(got_inputs, got_targets, sentinel_ids) == ids[row, :n].numpy().tolist()


def options_cases():
    yield {}
    yield {"eos_id": 1}
    yield {"eos_id": 1, "inputs_width": 20, "targets_width": 9}
    yield {"inputs_width": 60, "targets_width": 30}
    yield {"eos_id": 1, "inputs_first_ids": tf.range(48) % 3 + 2}
    yield {
        "eos_id": 1,
        "with_sentinels": tf.range(48) % 2 == 0,
        "inputs_first_ids": tf.fill([48], 4),
        "inputs_width": 25,
    }
    # A negative first id puts nothing first in its row.
    yield {"eos_id": 1, "inputs_first_ids": tf.where(tf.range(48) % 3 == 0, -1, 5)}
    yield {"inputs_first_ids": tf.where(tf.range(48) % 4 == 1, -1, 5), "inputs_width": 30}


@pytest.mark.parametrize("options", list(options_cases()))
def test_cut_and_gathered_spans_agree_exactly(options):
    ids, _ = random_batch(seed=3)
    _, _, num_spans, layout = layout_of(ids, 0.5, 3.0)
    if "with_sentinels" in options:
        # A prefix-LM row is one span with no sentinels (the others keep
        # their spans: no real layout has an empty span).
        prefix = tf.logical_not(options["with_sentinels"])[:, None]
        num_spans = tf.where(options["with_sentinels"], num_spans, tf.minimum(num_spans, 1))
        layout = noise_spans.SpanLayout(*(
            tf.where(prefix, tf.concat([before[:, :1], before[:, -1:] + 0 * before[:, 1:]], 1), before)
            for before in layout
        ))
    cut = sentinels.cut_spans(ids, layout, num_spans, SENTINELS, 0, **options)
    gathered = sentinels.gathered_spans(ids, layout, num_spans, SENTINELS, 0, **options)
    for a, b in zip(cut, gathered):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_fixed_widths_pad_and_cut_the_batch_padded_outputs():
    ids, _ = random_batch(seed=5)
    _, _, num_spans, layout = layout_of(ids)
    full = sentinels.corrupt_spans(ids, layout, num_spans, SENTINELS, 0, eos_id=1)
    for inputs_width, targets_width in ((10, 4), (80, 40)):
        fixed = sentinels.corrupt_spans(
            ids, layout, num_spans, SENTINELS, 0, eos_id=1,
            inputs_width=inputs_width, targets_width=targets_width,
        )
        for (a, a_lengths), (b, b_lengths), width in (
            ((full[0], full[1]), (fixed[0], fixed[1]), inputs_width),
            ((full[2], full[3]), (fixed[2], fixed[3]), targets_width),
        ):
            assert b.shape[1] == width
            padded = np.pad(a.numpy(), [[0, 0], [0, max(0, width - a.shape[1])]])
            np.testing.assert_array_equal(b.numpy(), padded[:, :width])
            np.testing.assert_array_equal(b_lengths.numpy(), np.minimum(a_lengths.numpy(), width))


def test_rows_without_sentinels_split_into_prefix_and_rest():
    ids = tf.constant([[5, 6, 7, 8, 9, 0], [5, 6, 7, 0, 0, 0]])
    lengths = tf.constant([5, 3])
    num_noise = tf.constant([2, 1])
    layout = noise_spans.span_layout(lengths, num_noise, tf.constant([1, 1]), tf.constant([0, 0]))
    inputs, _, targets, _ = sentinels.corrupt_spans(
        ids, layout, tf.constant([1, 1]), SENTINELS, 0, eos_id=1,
        with_sentinels=tf.constant([False, False]), inputs_first_ids=tf.constant([3, 3]),
    )
    assert inputs.numpy().tolist() == [[3, 5, 6, 7, 1], [3, 5, 6, 1, 0]]
    assert targets.numpy().tolist() == [[8, 9, 1], [7, 1, 0]]


@pytest.mark.parametrize("options", [{}, {"eos_id": 1, "inputs_first_ids": tf.zeros([0], tf.int32)}])
def test_a_batch_of_no_rows_gives_empty_outputs(options):
    ids = tf.zeros([0, 40], tf.int32)
    _, _, num_spans, layout = layout_of(ids)
    inputs, inputs_lengths, targets, targets_lengths = sentinels.cut_spans(
        ids, layout, num_spans, SENTINELS, 0, **options
    )
    assert inputs.shape[0] == targets.shape[0] == 0
    assert inputs_lengths.shape == targets_lengths.shape == (0,)


def test_negative_first_ids_leave_their_rows_as_without_first_ids():
    ids, _ = random_batch(seed=4)
    _, _, num_spans, layout = layout_of(ids)
    first_ids = tf.where(tf.range(48) % 2 == 0, -1, 5)
    for build in (sentinels.cut_spans, sentinels.gathered_spans):
        plain = build(ids, layout, num_spans, SENTINELS, 0, eos_id=1)
        mixed = build(ids, layout, num_spans, SENTINELS, 0, eos_id=1, inputs_first_ids=first_ids)
        for row in range(48):
            inputs, length = mixed[0][row].numpy().tolist(), int(mixed[1][row])
            expected = plain[0][row].numpy().tolist()[: int(plain[1][row])]
            if row % 2:
                expected = [5] + expected
            assert inputs[:length] == expected and set(inputs[length:]) <= {0}
            np.testing.assert_array_equal(mixed[2][row], plain[2][row])


@pytest.mark.parametrize("options", [{}, {"eos_id": 1}, {"eos_id": 1, "inputs_first_ids": tf.constant([4, -1])}])
def test_rows_of_width_zero_give_the_same_outputs_both_ways(options):
    ids = tf.zeros([2, 0], tf.int32)
    zeros = tf.zeros([2, 2], tf.int32)
    layout = noise_spans.SpanLayout(zeros, zeros)
    num_spans = tf.zeros([2], tf.int32)
    cut = sentinels.cut_spans(ids, layout, num_spans, SENTINELS, 0, **options)
    gathered = sentinels.gathered_spans(ids, layout, num_spans, SENTINELS, 0, **options)
    for a, b in zip(cut, gathered):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    if options:  # just the eos (after the first id, if any)
        assert cut[0][1, : int(cut[1][1])].numpy().tolist() == [1]
        assert cut[0][0, : int(cut[1][0])].numpy().tolist() == ([4, 1] if len(options) == 2 else [1])
