"""Property tests: drawn configurations, input kinds and execution contexts.

Hypothesis draws a `DynamicMLMMasking` configuration, an input (dense
`[T]` or `[B, T]`, ragged, or a dict; int32 or int64) and a context (eager,
`tf.function`, `tf.data`, XLA), and checks what every mode promises: same
kind, shape and dtype; special, padding and mask ids never selected or
changed; changes only to the mask id or an allowed id; labels and weights
that match the selection; exact counts and the `max_predictions` cap.

A second test draws `SpanCorruption`, `DenoiserMixture` and whole-word /
span `DynamicMLMMasking` configurations, fixed or scheduled rates, dict
inputs with extra keys, ragged / dense / `[T]` ids, and eager, tf.function,
XLA or functional-model calls, and checks: the exact span round trip with
T5's counts, no special or padding token touched, whole words, rates within
binomial bounds (exact counts where exact), extra keys passed through, and
the same output for the same call seed.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from distribution_bounds import binomial_upper_critical
from keras_dynmask import DenoiserMixture
from keras_dynmask import DynamicMLMMasking
from keras_dynmask import SpanCorruption
from mlm_reference import expected_exact_count
from span_reference import expected_counts
from span_reference import restore
from span_reference import strip

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


# Span corruption, mixtures of denoisers and whole-word masking, drawn with
# schedules, dict inputs with extra keys, ragged / dense / [T] ids, and run
# eagerly, in a tf.function, under XLA or in a functional model.

SPAN_VOCAB, EOS, NUM_SENTINELS = 60, 1, 10
SPAN_SENTINELS = list(range(SPAN_VOCAB - 1, SPAN_VOCAB - 1 - NUM_SENTINELS, -1))
TOKENS = (4, 47)  # drawn ids: below the mixture's mode tokens 47..49 and the sentinels
LINEAR = (0.5, 4, 0.1)  # PolynomialDecay(0.5, 4, 0.1)


def schedule_at(step):
    start, steps, end = LINEAR
    return float(np.float32(start + (end - start) * min(step, steps) / steps))


@st.composite
def drawn_layers(draw, layer, context):
    kind = draw(st.sampled_from(["rank1", "rank2", "ragged", "dict"]))
    if context == "model" and kind in ("rank1", "ragged"):
        context = "function"  # a functional model takes a [B, T] batch
    step = draw(st.one_of(st.none(), st.integers(0, 6)))
    config = {}
    if layer == "mlm":
        config = dict(
            granularity=draw(st.sampled_from(["token", "word", "span"])),
            selection=draw(st.sampled_from(["bernoulli", "exact"])),
            max_predictions=draw(st.sampled_from([None, 3])),
            mask_rate=0.3,
        )
    elif layer == "span":
        config = dict(
            noise_density=draw(st.sampled_from([0.15, 0.5])),
            mean_noise_span_length=draw(st.sampled_from([1.0, 3.0])),
        )
    rows = 1 if kind == "rank1" else draw(st.integers(1, 4))
    width = draw(st.integers(1, 14))
    ids = np.array(
        draw(st.lists(st.integers(*TOKENS), min_size=rows * width, max_size=rows * width)),
        np.int32,
    ).reshape(rows, width)
    lengths = [draw(st.integers(0, width)) for _ in range(rows)]
    if layer == "mlm":  # a few special tokens among the words
        specials = draw(st.lists(st.integers(0, rows * width - 1), max_size=3))
        ids.reshape(-1)[specials] = 2
    words = np.array(
        draw(st.lists(st.integers(0, 2), min_size=rows * width, max_size=rows * width))
    ).reshape(rows, width)
    seed = draw(st.integers(0, 2**31 - 1))
    return layer, config, context, kind, step, ids, lengths, np.cumsum(words, axis=1), seed


def make_drawn_layer(layer, config, context, step, width):
    rate = keras.optimizers.schedules.PolynomialDecay(*LINEAR) if step is not None else None
    if layer == "mlm":
        if rate is not None:
            config = dict(config, mask_rate=rate)
        starts = np.arange(SPAN_VOCAB) % 3 == 1  # word starts by id, when no word_ids
        return DynamicMLMMasking(
            SPAN_VOCAB, MASK, special_token_ids=SPECIALS, output_mode="dict",
            word_starts=starts, **config)
    lengths = {}
    if context == "xla" or width % 2:  # XLA needs fixed lengths; they hold every row
        lengths = dict(inputs_length=width + 2, targets_length=width + 1)
    common = dict(num_sentinels=NUM_SENTINELS, eos_id=EOS, **lengths)
    if layer == "span":
        if rate is not None:
            config = dict(config, noise_density=rate)
        return SpanCorruption(SPAN_VOCAB, **config, **common)
    return DenoiserMixture(SPAN_VOCAB, **common)


def drawn_input(kind, layer, ids, lengths, words):
    padded = np.where(np.arange(ids.shape[1])[None, :] < np.array(lengths)[:, None], ids, 0)
    word_ids = np.where(padded > 0, words, -1).astype(np.int32)
    extra = "word_ids" if layer == "mlm" else "segment_ids"
    if kind == "rank1":
        return tf.constant(padded[0]), padded[:1], word_ids[:1]
    if kind == "ragged":
        ragged = tf.RaggedTensor.from_tensor(tf.constant(ids), lengths=lengths)
        return ragged, padded, word_ids
    if kind == "dict":
        return {"token_ids": tf.constant(padded), extra: tf.constant(word_ids)}, padded, word_ids
    return tf.constant(padded), padded, word_ids


def drawn_call(layer, inputs, context, seed, step):
    """A function of the inputs: `layer` called with a call-time seed in `context`."""
    options = {"seed": tf.constant([seed, 7], tf.int64)}
    if step is not None:
        options["step"] = step
    if context == "eager":
        return lambda x: layer(x, **options)
    if context == "model":
        symbolic = tf.nest.map_structure(
            lambda x: keras.Input((None,), dtype="int32"), inputs)
        model = keras.Model(symbolic, layer(symbolic, training=True, **options))
        return lambda x: model(x, training=True)
    return tf.function(lambda x: layer(x, training=True, **options), jit_compile=context == "xla")


def real_rows(value, padded):
    """Each row's output as a list (ragged rows as they are, `[T]` as one row)."""
    if isinstance(value, tf.RaggedTensor):
        return value.to_list()
    return np.reshape(np.asarray(value), (len(padded), -1)).tolist()


def check_spans(layer, out, padded, step):
    inputs, targets = real_rows(out["inputs"], padded), real_rows(out["targets"], padded)
    denoisers = np.reshape(np.asarray(out["denoiser"]), -1) if "denoiser" in out else None
    for row, original in enumerate(padded):
        tokens = [int(t) for t in original if t != 0]
        got_inputs, got_targets = strip(inputs[row], eos_id=EOS), strip(targets[row], eos_id=EOS)
        density, mean = None, None
        if denoisers is not None:
            if not tokens:  # padding only: left as SpanCorruption leaves it
                assert denoisers[row] == -1 and got_inputs == got_targets == []
                continue
            mode, mean, density = layer.denoisers[denoisers[row]]
            assert got_inputs[0] == layer.mode_token_ids["RXS".index(mode)]
            got_inputs = got_inputs[1:]
            if mode == "S":  # a prefix-LM split: no sentinels
                assert got_inputs + got_targets == tokens
                assert (len(tokens) < 2 and not got_targets) or 1 <= len(got_inputs) < len(tokens)
                continue
        else:
            density = schedule_at(step) if step is not None else layer.noise_density
            mean = layer.mean_noise_span_length
        noise, spans = expected_counts(len(tokens), density, mean, NUM_SENTINELS)
        assert len(got_targets) == noise + spans
        assert sum(t in SPAN_SENTINELS for t in got_inputs) == spans
        assert restore(got_inputs, got_targets, SPAN_SENTINELS) == tokens


def like_padded(value, padded):
    """An output as the padded `[B, T]` batch (ragged rows padded to `T`)."""
    if isinstance(value, tf.RaggedTensor):
        return value.to_tensor(shape=padded.shape).numpy()
    return np.reshape(np.asarray(value), padded.shape)


def check_mlm(layer, out, padded, words, dict_input, step):
    before = padded
    after = like_padded(out["token_ids"], padded)
    selected = like_padded(out["mask"], padded)
    inside = before != 0
    eligible = ~np.isin(before, list(EXCLUDED)) & inside
    changed = before != after
    assert not selected[~eligible].any() and not changed[~selected].any()
    assert ((after[changed] == MASK) | ~np.isin(after[changed], list(EXCLUDED))).all()
    labels = like_padded(out["labels"], padded)
    np.testing.assert_array_equal(labels[selected], before[selected])
    assert (labels[~selected & inside] == -100).all()
    counts, row_eligible = selected.sum(1), eligible.sum(1)
    if layer.max_predictions is not None:
        assert (counts <= layer.max_predictions).all()
    rate = schedule_at(step) if step is not None else layer.mask_rate
    if layer.granularity != "token":  # whole words: every piece or none
        if dict_input:
            pieces = np.where(eligible, words, -1)
        else:  # words from the id table: a start, then the pieces that follow
            starts = (before % 3 == 1) | ~np.roll(eligible, 1, axis=1)
            starts[:, 0] = True
            pieces = np.where(eligible, np.cumsum(starts, axis=1), -1)
        for row in range(len(before)):
            for word in set(pieces[row][pieces[row] >= 0].tolist()):
                at = pieces[row] == word
                assert selected[row][at].all() or not selected[row][at].any()
    elif layer.selection == "exact":
        np.testing.assert_array_equal(
            counts, expected_exact_count(row_eligible, rate, layer.max_predictions))
    elif layer.max_predictions is None:  # Bernoulli: within binomial bounds
        total, chosen = int(row_eligible.sum()), int(counts.sum())
        assert chosen <= binomial_upper_critical(total, rate)
        assert total - chosen <= binomial_upper_critical(total, 1 - rate)


@pytest.mark.parametrize("context", ["eager", "function", "xla", "model"])
@pytest.mark.parametrize("kind_of_layer", ["mlm", "span", "mixture"])
@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_span_mixture_and_word_layers_keep_their_invariants(kind_of_layer, context, data):
    case = data.draw(drawn_layers(kind_of_layer, context))
    _, config, context, kind, step, ids, lengths, words, seed = case
    layer = make_drawn_layer(kind_of_layer, config, context, step, ids.shape[1])
    inputs, padded, word_ids = drawn_input(kind, kind_of_layer, ids, lengths, words)
    per_row = kind_of_layer != "mlm" or layer._per_sequence
    call = drawn_call(layer, inputs, context, seed, step)
    if context == "xla" and kind == "ragged" and per_row:
        with pytest.raises(ValueError, match="Pad it first"):
            call(inputs)
        return
    out = call(inputs)
    again = call(inputs)
    for key in out:  # the same call seed, the same output
        np.testing.assert_array_equal(dense(out[key]), dense(again[key]))
    if kind == "dict":  # the extra key passes through
        extra = "word_ids" if kind_of_layer == "mlm" else "segment_ids"
        np.testing.assert_array_equal(out[extra], word_ids)
    if kind == "ragged":
        assert isinstance(out["token_ids" if kind_of_layer == "mlm" else "inputs"], tf.RaggedTensor) or (
            kind_of_layer != "mlm" and layer.inputs_length is not None)
    if kind_of_layer == "mlm":
        check_mlm(layer, out, padded, word_ids, kind == "dict", step)
    else:
        check_spans(layer, out, padded, step)
