"""`SpanCorruption` with fixed output lengths on the active Keras backend.

The same checks under TensorFlow, JAX and PyTorch: the exact round trip
(the targets' spans put back at the inputs' sentinels give each row back),
T5's counts per row exactly, sentinels in order, eos and padding in place,
span lengths distributed as uniformly random compositions (binomial
bounds), call-seed purity; inside a model: corruption only in training,
`fit` with Keras's default jit and with `jit_compile=True`.
"""

import math

import keras
import numpy as np
import pytest
from distribution_bounds import binomial_upper_critical

from keras_dynmask import SpanCorruption
from keras_dynmask.kernels import noise_spans

BACKEND = keras.backend.backend()
VOCABULARY = 100
NUM_SENTINELS = 20
SENTINELS = [VOCABULARY - 1 - i for i in range(NUM_SENTINELS)]
EOS = 1
WIDTH = 32
RNG = np.random.default_rng(11)
IDS = RNG.integers(3, VOCABULARY - NUM_SENTINELS, (256, WIDTH)).astype("int32")
LENGTHS = np.concatenate([[0, 1, 2, 3, WIDTH], RNG.integers(0, WIDTH + 1, 251)])
IDS[np.arange(WIDTH)[None, :] >= LENGTHS[:, None]] = 0  # trailing padding


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def layer(**kwargs):
    options = dict(
        vocabulary_size=VOCABULARY, noise_density=0.3, mean_noise_span_length=3.0,
        num_sentinels=NUM_SENTINELS, eos_id=EOS, inputs_length=WIDTH + 1,
        targets_length=WIDTH + 1,
    )
    options.update(kwargs)
    return SpanCorruption(**options)


def split_row(inputs, targets):
    """`(inputs up to eos, targets up to eos)`, checking eos and padding."""
    parts = []
    for row in (inputs, targets):
        ends = np.flatnonzero(row == EOS)
        assert len(ends) >= 1, row
        end = ends[0]
        assert (row[end + 1:] == 0).all(), row  # padding after eos only
        parts.append(row[:end])
    return parts


def target_spans(targets):
    """The targets' spans: `[(sentinel, tokens)]` in order."""
    starts = np.flatnonzero(np.isin(targets, SENTINELS))
    assert len(targets) == 0 or (len(starts) and starts[0] == 0), targets
    ends = list(starts[1:]) + [len(targets)]
    return [(targets[s], targets[s + 1:e]) for s, e in zip(starts, ends)]


def uncorrupt(inputs, targets):
    """The sequence back: each input sentinel replaced by its target span."""
    spans = dict(target_spans(targets))
    pieces = [spans[t] if t in spans else [t] for t in inputs]
    return np.concatenate([np.asarray(p, inputs.dtype) for p in pieces]) if pieces else inputs


def corrupted(ids=IDS, seed=(3, 4), **kwargs):
    out = layer(**kwargs)(keras.ops.convert_to_tensor(ids), seed=list(seed))
    return numpy(out["inputs"]), numpy(out["targets"])


def test_round_trip_counts_sentinels_eos_padding():
    inputs, targets = corrupted()
    assert inputs.shape == targets.shape == (len(IDS), WIDTH + 1)
    assert inputs.dtype == targets.dtype == IDS.dtype
    num_noise, num_spans = noise_spans.python_span_counts(LENGTHS, 0.3, 3.0, NUM_SENTINELS)
    for row, n, noise, spans in zip(range(len(IDS)), LENGTHS, num_noise, num_spans):
        kept, target = split_row(inputs[row], targets[row])
        np.testing.assert_array_equal(uncorrupt(kept, target), IDS[row, :n])
        pairs = target_spans(target)
        assert [s for s, _ in pairs] == SENTINELS[:spans]  # in order, one a span
        assert sum(len(t) for _, t in pairs) == noise
        assert all(len(t) >= 1 for _, t in pairs)
        assert list(kept[np.isin(kept, SENTINELS)]) == SENTINELS[:spans]
        assert len(kept) == n - noise + spans
        if spans:  # spans alternate, non-noise first: no two sentinels touch
            marks = np.isin(kept, SENTINELS)
            assert not marks[0] and not (marks[1:] & marks[:-1]).any()
            assert marks[-1]  # ... and the last span is noise


def test_rows_under_two_tokens_have_no_noise():
    inputs, targets = corrupted()
    for row in np.flatnonzero(LENGTHS < 2):
        np.testing.assert_array_equal(inputs[row, : LENGTHS[row] + 1],
                                      list(IDS[row, : LENGTHS[row]]) + [EOS])
        assert targets[row, 0] == EOS and (targets[row, 1:] == 0).all()


def test_cut_to_the_set_lengths():
    short_inputs, short_targets = corrupted(inputs_length=10, targets_length=6)
    inputs, targets = corrupted()
    np.testing.assert_array_equal(short_inputs, inputs[:, :10])
    np.testing.assert_array_equal(short_targets, targets[:, :6])


def composition_first_part(total, parts, length):
    """P(first part == length) for a uniformly random composition."""
    return math.comb(total - length - 1, parts - 2) / math.comb(total - 1, parts - 1)


def two_sided(n, p, alpha=1e-6):
    return n - binomial_upper_critical(n, 1 - p, alpha), binomial_upper_critical(n, p, alpha)


def test_span_lengths_are_uniform_compositions():
    # 1024 full rows of 32: 10 noise tokens in 3 spans, 22 kept in 3 spans.
    ids = np.tile(np.arange(3, 3 + WIDTH, dtype="int32"), (1024, 1))
    inputs, targets = corrupted(ids, seed=(5, 6))
    first_noise = np.argmax(np.isin(targets[:, 1:], SENTINELS), axis=1)
    first_kept = np.argmax(np.isin(inputs, SENTINELS), axis=1)
    for lengths, total, length in ((first_noise, 10, 1), (first_kept, 22, 1), (first_kept, 22, 7)):
        hits = int((lengths == length).sum())
        low, high = two_sided(len(ids), composition_first_part(total, 3, length))
        assert low < hits < high, (total, length, hits)
    # The mean noise span length: 10 / 3 in every row, by the counts.
    noise = (targets > EOS) & ~np.isin(targets, SENTINELS)
    assert noise.sum() / np.isin(targets, SENTINELS).sum() == pytest.approx(10 / 3)


def test_call_seed_purity():
    first, second = corrupted(seed=(7, 8)), corrupted(seed=(7, 8))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    other = corrupted(seed=(7, 9))
    assert (other[0] != first[0]).any()


def test_unseeded_calls_draw_afresh_and_return_backend_tensors():
    corrupt = layer(seed=3)
    ids = keras.ops.convert_to_tensor(IDS)
    first, second = corrupt(ids), corrupt(ids)
    module = type(first["inputs"]).__module__.split(".")[0]
    assert module in {"jax": ("jax", "jaxlib"), "torch": ("torch",),
                      "tensorflow": ("tensorflow",)}[BACKEND]
    assert (numpy(first["inputs"]) != numpy(second["inputs"])).any()


def test_single_sequence_and_dict_input():
    out = layer()({"token_ids": keras.ops.convert_to_tensor(IDS[4]),
                   "other": keras.ops.convert_to_tensor(IDS[:2])}, seed=[1, 2])
    assert sorted(out) == ["inputs", "other", "targets"]
    kept, target = split_row(numpy(out["inputs"]), numpy(out["targets"]))
    np.testing.assert_array_equal(uncorrupt(kept, target), IDS[4, : LENGTHS[4]])


def test_training_false_passes_every_row():
    out = layer()(keras.ops.convert_to_tensor(IDS), training=False)
    inputs, targets = numpy(out["inputs"]), numpy(out["targets"])
    for row, n in enumerate(LENGTHS):
        np.testing.assert_array_equal(inputs[row, : n + 1], list(IDS[row, :n]) + [EOS])
        assert (inputs[row, n + 1:] == 0).all()
    assert (targets[:, 0] == EOS).all() and (targets[:, 1:] == 0).all()


def test_scheduled_density_follows_the_step():
    schedule = keras.optimizers.schedules.PolynomialDecay(0.5, 10, 0.1)
    corrupt = layer(noise_density=schedule)
    ids = keras.ops.convert_to_tensor(IDS)
    for step, density in ((0, 0.5), (10, 0.1)):
        targets = numpy(corrupt(ids, step=step, seed=[step, 1])["targets"])
        noise, spans = noise_spans.python_span_counts(LENGTHS, density, 3.0, NUM_SENTINELS)
        np.testing.assert_array_equal(np.isin(targets, SENTINELS).sum(axis=1), spans)
        tokens = (targets > EOS) & ~np.isin(targets, SENTINELS)
        np.testing.assert_array_equal(tokens.sum(axis=1), noise)


def test_lengths_are_required_off_tensorflow():
    if BACKEND == "tensorflow":
        pytest.skip("TensorFlow tensors take unset lengths")
    with pytest.raises(ValueError, match="inputs_length"):
        layer(inputs_length=None)(keras.ops.convert_to_tensor(IDS))


def test_sentinel_in_the_input_is_not_checked_under_jit():
    if BACKEND == "tensorflow":
        pytest.skip("TensorFlow checks: tests/test_span_corruption.py")
    ids = IDS.copy()
    ids[:, 0] = SENTINELS[0]
    out = layer()(keras.ops.convert_to_tensor(ids), seed=[1, 2])
    assert numpy(out["inputs"]).shape == (len(ids), WIDTH + 1)


def corruption_model():
    tokens = keras.Input((WIDTH,), dtype="int32")
    return keras.Model(tokens, layer(seed=1)(tokens))


def test_inside_a_model_only_training_corrupts():
    model = corruption_model()
    out = model.predict(IDS, verbose=0, batch_size=64)
    assert (out["targets"][:, 0] == EOS).all()
    trained = model(keras.ops.convert_to_tensor(IDS), training=True)
    assert np.isin(numpy(trained["targets"]), SENTINELS).any()


@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_fit_in_a_functional_model(tmp_path, jit_compile):
    """Same batch, zero learning rate: only fresh corruption changes the loss."""
    if BACKEND == "torch" and jit_compile is True:
        pytest.skip("torch.compile of a fit takes a minute")
    keras.utils.set_random_seed(4)
    tokens = keras.Input((WIDTH,), dtype="int32")
    spans = layer(seed=2)(tokens)
    embed = keras.layers.Embedding(VOCABULARY, 8)
    inputs = keras.layers.GlobalAveragePooling1D()(embed(spans["inputs"]))
    targets = keras.layers.GlobalAveragePooling1D()(embed(spans["targets"]))
    score = keras.layers.Dense(1)(keras.layers.Concatenate()([inputs, targets]))
    model = keras.Model(tokens, score)
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    x = np.concatenate([IDS[:16]] * 6)
    losses = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda step, logs: losses.append(float(logs["loss"]))
    )
    model.fit(x, np.ones((len(x), 1)), batch_size=16, shuffle=False, verbose=0,
              callbacks=[callback])
    running = np.array(losses) * np.arange(1, 7)  # Keras logs the running mean
    per_batch = np.diff(np.concatenate([[0.0], running]))
    assert np.isfinite(per_batch).all()
    assert len(np.unique(np.round(per_batch, 5))) > 3
    # predict never corrupts: the same output every time, and after a reload.
    expected = model.predict(IDS[:8], verbose=0)
    np.testing.assert_allclose(model.predict(IDS[:8], verbose=0), expected, rtol=1e-6)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(IDS[:8], verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_in_tf_data_whatever_the_backend():
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(IDS).batch(64).map(layer(noise_density=0.5))
    out = next(iter(ds))
    assert isinstance(out["inputs"], tf.Tensor)
    inputs, targets = out["inputs"].numpy(), out["targets"].numpy()
    for row in range(64):
        kept, target = split_row(inputs[row], targets[row])
        np.testing.assert_array_equal(uncorrupt(kept, target), IDS[row, : LENGTHS[row]])


def test_in_a_grain_pipeline():
    """A grain `MapDataset.map` on NumPy batches: the active backend's ops (TensorFlow's under TensorFlow)."""
    grain = pytest.importorskip("grain")
    dataset = grain.MapDataset.source([IDS, IDS]).map(layer())  # the shapes of the tests above
    first = dataset[0]  # each read of an element maps it again, with fresh draws
    inputs, targets = numpy(first["inputs"]), numpy(first["targets"])
    assert inputs.shape == targets.shape == (256, WIDTH + 1)
    for row in range(256):
        kept, target = split_row(inputs[row], targets[row])
        np.testing.assert_array_equal(uncorrupt(kept, target), IDS[row, : LENGTHS[row]])
        if LENGTHS[row] >= 2:  # T5's noise count: round(n * 0.3), within [1, n - 1]
            noise = len(target) - len(target_spans(target))
            assert noise == min(max(round(LENGTHS[row] * 0.3), 1), LENGTHS[row] - 1)
    # Each element draws its own masks: the same rows are not corrupted alike.
    assert (numpy(dataset[1]["inputs"]) != inputs).any()
