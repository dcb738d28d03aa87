"""Property test: drawn configurations, input kinds and execution contexts.

Hypothesis draws a `DynamicMLMMasking` configuration, an input (dense
`[T]` or `[B, T]`, ragged, or a dict; int32 or int64) and a context (eager,
`tf.function`, `tf.data`, XLA), and checks what every mode promises: same
kind, shape and dtype; special, padding and mask ids never selected or
changed; changes only to the mask id or an allowed id; labels and weights
that match the selection; exact counts and the `max_predictions` cap.
"""

import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_dynmask import DynamicMLMMasking
from mlm_reference import expected_exact_count

VOCAB, MASK, SPECIALS = 50, 3, (1, 2)
EXCLUDED = {0, 1, 2, 3}


@st.composite
def cases(draw):
    config = dict(
        selection=draw(st.sampled_from(["bernoulli", "exact"])),
        max_predictions=draw(st.sampled_from([None, 1, 3])),
        output_mode=draw(st.sampled_from(["ids", "fit", "dict"])),
        mask_rate=draw(st.sampled_from([0.15, 0.5, 1.0])),
        random_token_rate=draw(st.sampled_from([0.0, 0.1, 0.5])),
        mask_token_rate=0.5,
    )
    kind = draw(st.sampled_from(["rank1", "rank2", "ragged", "dict"]))
    context = draw(st.sampled_from(["eager", "function", "data", "xla"]))
    if kind == "ragged" and context == "xla":
        context = "function"
    dtype = draw(st.sampled_from([np.int32, np.int64]))
    rows = 1 if kind == "rank1" else draw(st.integers(1, 4))
    length = draw(st.integers(1, 12))
    ids = np.array(draw(st.lists(st.integers(0, VOCAB - 1), min_size=rows * length,
                                 max_size=rows * length)), dtype).reshape(rows, length)
    lengths = [draw(st.integers(0, length)) for _ in range(rows)]
    return config, kind, context, ids, lengths, draw(st.integers(0, 2**31 - 1))


def make_input(kind, ids, lengths):
    if kind == "rank1":
        return tf.constant(ids[0])
    if kind == "ragged":
        return tf.RaggedTensor.from_tensor(tf.constant(ids), lengths=lengths)
    if kind == "dict":
        return {"token_ids": tf.constant(ids), "extra": tf.constant(ids) * 2}
    return tf.constant(ids)


def run(layer, inputs, context, seed):
    seed = tf.constant([seed, 1], tf.int64)
    if context == "eager":
        return layer(inputs, seed=seed)
    if context == "data":
        ds = tf.data.Dataset.from_tensors(inputs).map(lambda x: layer(x, seed=seed))
        return next(iter(ds))
    call = tf.function(lambda x: layer(x, training=True, seed=seed),
                       jit_compile=context == "xla")
    return call(inputs)


def dense(value):
    return value.to_tensor().numpy() if isinstance(value, tf.RaggedTensor) else np.asarray(value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_every_mode_keeps_its_promises(case):
    config, kind, context, ids, lengths, seed = case
    layer = DynamicMLMMasking(VOCAB, MASK, special_token_ids=SPECIALS, **config)
    inputs = make_input(kind, ids, lengths)
    out = run(layer, inputs, context, seed)
    mode = config["output_mode"]
    if mode == "fit":
        x, y, weights = out
        selected = dense(weights) > 0
    elif mode == "dict":
        x, selected = out, dense(out["mask"])
    else:
        x, selected = out, None
    if kind == "dict":
        np.testing.assert_array_equal(x["extra"], ids * 2)
    corrupted = x["token_ids"] if isinstance(x, dict) else x
    original = inputs["token_ids"] if kind == "dict" else inputs
    assert type(corrupted) is type(original) and corrupted.dtype == original.dtype
    if kind == "ragged":
        np.testing.assert_array_equal(corrupted.row_splits, original.row_splits)
    assert tuple(corrupted.shape) == tuple(original.shape)
    before, after = dense(original), dense(corrupted)
    inside = np.ones(before.shape, bool)
    if kind == "ragged":
        inside = np.arange(before.shape[1])[None, :] < np.array(lengths)[:, None]
    eligible = ~np.isin(before, list(EXCLUDED)) & inside
    changed = before != after
    assert not changed[~eligible].any()
    assert ((after[changed] == MASK) | ~np.isin(after[changed], list(EXCLUDED))).all()
    if selected is None:
        return
    assert not selected[~eligible].any() and not changed[~selected].any()
    if mode == "dict":
        labels = dense(out["labels"])
        np.testing.assert_array_equal(labels[selected], before[selected])
        assert (labels[~selected & inside] == -100).all()
    counts = np.atleast_2d(selected).sum(-1)
    row_eligible = np.atleast_2d(eligible).sum(-1)
    if config["max_predictions"] is not None:
        assert (counts <= config["max_predictions"]).all()
    if config["selection"] == "exact":
        np.testing.assert_array_equal(
            counts, expected_exact_count(row_eligible, config["mask_rate"],
                                         config["max_predictions"]))
