"""`kernels.frame_spans` on given draws: counts, starts, coverage, padding layouts."""

import numpy as np
import tensorflow as tf

from keras_dynmask.kernels import frame_spans
from keras_dynmask.kernels import op_set

OPS = op_set.tensorflow_ops()


def counts(lengths, draws, **rule):
    return frame_spans.span_counts(
        OPS, tf.constant(lengths), tf.constant(draws, tf.float32), **rule
    ).numpy().tolist()


def test_counts_round_with_the_draw_then_floor_and_cap():
    rule = dict(mask_prob=0.3, mask_length=5, min_masks=0, allow_overlap=True)
    # 0.3 * 40 / 5 = 2.4: one more span when u < 0.4 (int(2.4 + u)).
    assert counts([40] * 4, [0.0, 0.39, 0.41, 0.99], **rule) == [3, 3, 2, 2]
    assert counts([40] * 2, [0.0, 0.99], **{**rule, "min_masks": 3}) == [3, 3]
    # What fits: L - 4 starts overlapping, L // 5 disjoint, none below 5 frames.
    many = {**rule, "mask_prob": 1.0, "min_masks": 30}
    assert counts([40, 12, 5, 4, 0], [0.5] * 5, **many) == [30, 8, 1, 0, 0]
    assert counts([40, 12, 5, 4, 0], [0.5] * 5, **{**many, "allow_overlap": False}) == [8, 2, 1, 0, 0]


def test_disjoint_starts_move_right_by_the_spans_before():
    # 10 frames, 2 spans of 3: 6 slots; keys rank slots 4 and 1 first.
    keys = tf.constant([[0.9, 0.2, 0.8, 0.7, 0.1, 0.6, 0.5, 0.4, 0.3, 0.95]])
    starts = frame_spans.span_starts(
        OPS, tf.constant([10]), tf.constant([2]), keys, mask_length=3, allow_overlap=False
    )
    assert np.flatnonzero(starts.numpy()[0]).tolist() == [1, 6]  # slot 4 + 1 span * 2
    covered = frame_spans.covered_frames(OPS, starts, 3).numpy()[0]
    assert np.flatnonzero(covered).tolist() == [1, 2, 3, 6, 7, 8]
    overlapping = frame_spans.span_starts(
        OPS, tf.constant([10]), tf.constant([2]), keys, mask_length=3, allow_overlap=True
    )
    assert np.flatnonzero(overlapping.numpy()[0]).tolist() == [1, 4]  # 8 candidates


def test_a_mask_over_real_frames_lands_on_them_wherever_the_padding_is():
    drawn = tf.constant([[True, False, True, True, False, False]])
    padding = tf.constant([[False, True, True, False, True, True]])
    placed = frame_spans.onto_real_frames(OPS, drawn, padding).numpy()[0]
    assert placed.tolist() == [False, True, False, False, True, True]
