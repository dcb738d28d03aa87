"""`DynamicMLMMasking` (token granularity) on the active Keras backend.

The same statistical checks as under TensorFlow: selection rates inside
binomial bounds, exact counts exactly, special and padding tokens never
touched, labels equal to the original ids, keras-hub's `"masked_lm"`
triple; inside models: fresh masks at every jitted training step, nothing
masked in `predict`.
"""

import os

import keras
import numpy as np
import pytest
from distribution_bounds import binomial_upper_critical

from keras_dynmask import DynamicMLMMasking

BACKEND = keras.backend.backend()
VOCABULARY = 200
SPECIAL = [1, 2]
MASK = 3
RNG = np.random.default_rng(7)
IDS = RNG.integers(4, VOCABULARY, (256, 40)).astype("int32")
IDS[:, 0] = 1
IDS[:, 30:] = 0  # padding
ELIGIBLE = (IDS != 0) & (IDS != 1)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def two_sided_bounds(n, p, alpha=1e-6):
    upper = binomial_upper_critical(n, p, alpha)
    lower = n - binomial_upper_critical(n, 1 - p, alpha)
    return lower, upper


def layer(**kwargs):
    options = dict(
        vocabulary_size=VOCABULARY, mask_token_id=MASK, special_token_ids=SPECIAL,
        output_mode="dict",
    )
    options.update(kwargs)
    return DynamicMLMMasking(**options)


def test_bernoulli_rates_and_corruption_shares():
    out = layer(mask_rate=0.3)(keras.ops.convert_to_tensor(IDS), seed=[3, 4])
    assert type(out["token_ids"]).__module__.split(".")[0] in {
        "jax": ("jax", "jaxlib"), "torch": ("torch",), "tensorflow": ("tensorflow",)
    }[BACKEND]
    mask, corrupted, labels = numpy(out["mask"]), numpy(out["token_ids"]), numpy(out["labels"])
    assert not (mask & ~ELIGIBLE).any()  # exact: specials and padding never
    np.testing.assert_array_equal(corrupted[~mask], IDS[~mask])
    np.testing.assert_array_equal(labels[mask], IDS[mask])
    assert (labels[~mask] == -100).all()
    n, selected = int(ELIGIBLE.sum()), int(mask.sum())
    low, high = two_sided_bounds(n, 0.3)
    assert low < selected < high
    to_mask = int((corrupted[mask] == MASK).sum())
    low, high = two_sided_bounds(selected, 0.8)
    assert low < to_mask < high
    changed = corrupted[mask & (corrupted != MASK)] != IDS[mask & (corrupted != MASK)]
    low, high = two_sided_bounds(selected, 0.1)
    assert low < int(changed.sum()) < high
    random_ids = corrupted[mask & (corrupted != MASK) & (corrupted != IDS)]
    assert not np.isin(random_ids, SPECIAL + [0, MASK]).any()
    assert ((random_ids >= 0) & (random_ids < VOCABULARY)).all()


def test_exact_counts_and_cap():
    out = layer(selection="exact", mask_rate=0.15)(keras.ops.convert_to_tensor(IDS))
    counts = numpy(out["mask"]).sum(axis=1)
    expected = np.round(0.15 * ELIGIBLE.sum(axis=1))
    np.testing.assert_array_equal(counts, expected)
    capped = layer(mask_rate=0.5, max_predictions=5)(keras.ops.convert_to_tensor(IDS))
    mask = numpy(capped["mask"])
    assert mask.sum(axis=1).max() == 5
    positions, ids, weights = (numpy(capped[k]) for k in ("mask_positions", "mask_ids", "mask_weights"))
    for row in range(len(IDS)):
        chosen = np.flatnonzero(mask[row])
        k = len(chosen)
        np.testing.assert_array_equal(positions[row, :k], chosen)
        np.testing.assert_array_equal(ids[row, :k], IDS[row, chosen])
        assert (positions[row, k:] == 0).all() and (ids[row, k:] == 0).all()
        np.testing.assert_array_equal(weights[row], np.arange(5) < k)


def test_exact_selection_is_uniform_over_positions():
    """Each eligible position of a row is picked with the same chance."""
    row = np.arange(10, 30, dtype="int32")[None, :].repeat(2000, axis=0)
    out = layer(selection="exact", mask_rate=0.25)(keras.ops.convert_to_tensor(row), seed=[5, 6])
    per_position = numpy(out["mask"]).sum(axis=0)
    assert (numpy(out["mask"]).sum(axis=1) == 5).all()
    low, high = two_sided_bounds(2000, 0.25)
    assert ((per_position > low) & (per_position < high)).all()


def test_call_seed_is_a_pure_function():
    masking = layer(output_mode="ids")
    ids = keras.ops.convert_to_tensor(IDS)
    first = numpy(masking(ids, seed=[1, 2]))
    np.testing.assert_array_equal(first, numpy(masking(ids, seed=np.array([1, 2], "int64"))))
    assert (first != numpy(masking(ids, seed=[1, 3]))).any()
    assert (numpy(masking(ids)) != numpy(masking(ids))).any()  # unseeded: fresh


def test_single_sequence_and_training_false():
    masking = layer(output_mode="fit", max_predictions=4)
    x, y, weights = masking(keras.ops.convert_to_tensor(IDS[0]), training=False)
    np.testing.assert_array_equal(numpy(x), IDS[0])
    assert numpy(weights).sum() == 0 and numpy(weights).shape == (40,)
    x, y, weights = masking(keras.ops.convert_to_tensor(IDS[0]), seed=[0, 1])
    np.testing.assert_array_equal(numpy(y), IDS[0])
    assert 0 < numpy(weights).sum() <= 4


def _masked_identity_model(**kwargs):
    """Predicts the corrupted ids' embedding: the loss sees the masks."""
    ids = keras.Input((40,), dtype="int32")
    masked = layer(output_mode="ids", **kwargs)(ids)
    hidden = keras.layers.Embedding(VOCABULARY, 4)(masked)
    return keras.Model(ids, keras.layers.Dense(1)(hidden))


@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_fresh_masks_every_training_step(tmp_path, jit_compile):
    """Same batch, zero learning rate: only the masks can change the loss."""
    keras.utils.set_random_seed(3)
    model = _masked_identity_model(mask_rate=0.5)
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    batch = IDS[:16]
    y = np.zeros((16, 40, 1), "float32")
    # Each call runs the compiled train step once and returns that step's
    # own loss (metrics reset): identical masks would give identical losses,
    # bit for bit.
    losses = [float(model.train_on_batch(batch, y)) for _ in range(6)]
    assert len(set(losses)) >= 5, losses
    # predict and evaluate never mask: the output equals the unmasked model's.
    hidden = model.layers[2](keras.ops.convert_to_tensor(batch))
    expected = numpy(model.layers[3](hidden))
    np.testing.assert_allclose(model.predict(batch, verbose=0), expected, rtol=1e-5, atol=1e-6)
    model.evaluate(batch, y[:16], verbose=0)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(batch, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert restored.layers[1].get_config() == model.layers[1].get_config()


def test_sequential_fit():
    model = keras.Sequential([
        keras.Input((40,), dtype="int32"),
        layer(output_mode="ids", selection="exact"),
        keras.layers.Embedding(VOCABULARY, 4),
        keras.layers.Dense(1),
    ])
    model.compile("adam", "mse")
    history = model.fit(IDS[:32], np.zeros((32, 40, 1)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_in_tf_data_whatever_the_backend():
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(IDS).batch(64).map(layer(output_mode="fit"))
    x, y, weights = next(iter(ds))
    assert isinstance(x, tf.Tensor)
    np.testing.assert_array_equal(y.numpy(), IDS[:64])
    assert not (weights.numpy().astype(bool) & ~ELIGIBLE[:64]).any()


def test_in_a_grain_pipeline():
    grain = pytest.importorskip("grain")
    dataset = grain.MapDataset.source([IDS[:8], IDS[8:16]]).map(layer(output_mode="fit"))
    x, y, weights = dataset[1]
    np.testing.assert_array_equal(numpy(y), IDS[8:16])
    assert 0 < numpy(weights).sum()
    assert not (numpy(weights).astype(bool) & ~ELIGIBLE[8:16]).any()


def test_masked_lm_output_is_the_dict_outputs_in_keras_hub_form():
    """keras-hub's `(x, mask_ids, mask_weights)`: the "dict" mode's masking
    (same seed, same draws), padding from the ids, segment ids passed."""
    options = dict(mask_rate=0.3, max_predictions=6)
    segments = (np.arange(40)[None, :] >= 20).astype("int32").repeat(len(IDS), axis=0)
    inputs = {"token_ids": keras.ops.convert_to_tensor(IDS),
              "segment_ids": keras.ops.convert_to_tensor(segments)}
    x, mask_ids, mask_weights = layer(output_mode="masked_lm", **options)(inputs, seed=[3, 4])
    expected = layer(**options)(keras.ops.convert_to_tensor(IDS), seed=[3, 4])
    assert sorted(x) == ["mask_positions", "padding_mask", "segment_ids", "token_ids"]
    np.testing.assert_array_equal(numpy(x["token_ids"]), numpy(expected["token_ids"]))
    np.testing.assert_array_equal(numpy(x["mask_positions"]), numpy(expected["mask_positions"]))
    np.testing.assert_array_equal(numpy(mask_ids), numpy(expected["mask_ids"]))
    np.testing.assert_array_equal(numpy(mask_weights), numpy(expected["mask_weights"]))
    np.testing.assert_array_equal(numpy(x["padding_mask"]), IDS != 0)
    np.testing.assert_array_equal(numpy(x["segment_ids"]), segments)
    assert numpy(mask_weights).dtype == np.float32 and numpy(x["padding_mask"]).dtype == bool
    # At the selected positions the labels are the original ids.
    positions, weights = numpy(x["mask_positions"]), numpy(mask_weights).astype(bool)
    np.testing.assert_array_equal(numpy(mask_ids)[weights],
                                  np.take_along_axis(IDS, positions, axis=1)[weights])


def test_masked_lm_rate_single_sequence_and_training_false():
    masking = layer(output_mode="masked_lm", mask_rate=0.3, max_predictions=40)
    x, mask_ids, weights = masking(keras.ops.convert_to_tensor(IDS), seed=[5, 6])
    n, selected = int(ELIGIBLE.sum()), int(numpy(weights).sum())  # never capped: 28 eligible
    low, high = two_sided_bounds(n, 0.3)
    assert low < selected < high
    np.testing.assert_array_equal(numpy(x["segment_ids"]), np.zeros_like(IDS))
    x, mask_ids, weights = masking(keras.ops.convert_to_tensor(IDS[0]), training=False)
    np.testing.assert_array_equal(numpy(x["token_ids"]), IDS[0])
    assert numpy(weights).shape == (40,) and not numpy(weights).any()
    assert not numpy(x["mask_positions"]).any() and not numpy(mask_ids).any()


@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_masked_lm_output_in_a_functional_model_fit(tmp_path, jit_compile):
    """Same batch, zero learning rate: only fresh masks change the loss;
    predict never masks, before and after a `.keras` round trip."""
    if BACKEND == "torch" and jit_compile is True:
        pytest.skip("torch.compile of a fit takes a minute")
    if BACKEND == "jax" and jit_compile is True:
        pytest.skip("on JAX jit_compile='auto' is True: the [auto] case runs it (and checks so)")
    if BACKEND == "tensorflow" and jit_compile is True:
        pytest.skip("XLA fit: tests/test_dynamic_mlm_masking_xla.py::test_fit_with_jit_compile")
    keras.utils.set_random_seed(5)
    ids = keras.Input((40,), dtype="int32")
    x, mask_ids, mask_weights = layer(output_mode="masked_lm", mask_rate=0.3,
                                      max_predictions=8, seed=1)(ids)
    embed = keras.layers.Embedding(VOCABULARY, 4)
    pooled = [keras.layers.GlobalAveragePooling1D()(embed(t))
              for t in (x["token_ids"], x["mask_positions"], mask_ids)]
    features = keras.layers.Concatenate()(pooled + [mask_weights])
    model = keras.Model(ids, keras.layers.Dense(1)(features))
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    assert model.jit_compile or BACKEND != "jax"
    batch, y = IDS[:16], np.ones((16, 1), "float32")
    losses = [float(model.train_on_batch(batch, y)) for _ in range(6)]
    assert np.isfinite(losses).all() and len(set(losses)) >= 5, losses
    expected = model.predict(batch, verbose=0)
    np.testing.assert_allclose(model.predict(batch, verbose=0), expected, rtol=1e-6)
    path = os.path.join(tmp_path, "masked_lm.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(batch, verbose=0), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_masked_lm_model_fit_evaluate_predict(tmp_path, jit_compile):
    from keras_dynmask import MaskedLMModel

    if BACKEND == "torch" and jit_compile is True:
        pytest.skip("torch.compile of a fit takes a minute; the masking layer's jit test covers it")
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential([
        keras.Input((None,), dtype="int32"),
        keras.layers.Embedding(50, 16),
        keras.layers.Conv1D(32, 3, padding="same", activation="relu"),
        keras.layers.Dense(50),
    ])
    model = MaskedLMModel(backbone, DynamicMLMMasking(50, 4, output_mode="fit", mask_rate=0.3))
    model.compile(keras.optimizers.Adam(0.02), jit_compile=jit_compile)
    # Each id follows from its left neighbour: learnable from context.
    ids = ((np.arange(256)[:, None] + np.arange(12)[None]) % 45 + 5).astype("int32")
    history = model.fit(ids, epochs=6, batch_size=32, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 0.3
    first, second = model.evaluate(ids, verbose=0), model.evaluate(ids, verbose=0)
    assert first == second  # the held-out masking is fixed by content
    logits = model.predict(ids[:2], verbose=0)
    assert logits.shape == (2, 12, 50)
    np.testing.assert_allclose(logits, numpy(backbone(ids[:2])), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("selection", ["bernoulli", "exact"])
def test_scheduled_rate_follows_the_step(selection):
    schedule = keras.optimizers.schedules.PolynomialDecay(0.5, 10, 0.1)
    masking = layer(mask_rate=schedule, selection=selection)
    ids = keras.ops.convert_to_tensor(IDS)
    n = int(ELIGIBLE.sum())
    for step, rate in ((0, 0.5), (5, 0.3), (10, 0.1)):
        selected = int(numpy(masking(ids, step=step, seed=[step + 10, 1])["mask"]).sum())
        if selection == "exact":
            assert selected == int(np.round(rate * ELIGIBLE.sum(axis=1)).sum())
        else:
            low, high = two_sided_bounds(n, rate)
            assert low < selected < high, (step, selected)
    with pytest.raises(ValueError, match="step=-3"):
        masking(ids, step=-3)
    # Without a step the layer's own counter advances once a masked batch.
    before = int(numpy(masking.schedule_step))
    masking(ids)
    masking(ids, training=False)
    assert int(numpy(masking.schedule_step)) == before + 1


def test_masked_lm_model_fits_on_batches_masked_in_a_grain_pipeline():
    """A `MaskedLMModel`'s masking configuration mapped over NumPy batches by
    grain; `fit` takes the `(x, y, sample_weight)` batches as they come.

    The pipeline maps a layer of its own: during a JAX `fit` Keras releases
    the values of the model's variables (the model's masking layer's seed
    generator among them), so the model's own layer cannot draw there.
    """
    grain = pytest.importorskip("grain")
    from keras_dynmask import MaskedLMModel

    backbone = keras.Sequential([keras.Input((None,), dtype="int32"),
                                 keras.layers.Embedding(VOCABULARY, 8), keras.layers.Dense(VOCABULARY)])
    model = MaskedLMModel(backbone, layer(output_mode="fit", mask_rate=0.3))
    pipeline_masking = DynamicMLMMasking.from_config(model.masking.get_config())
    batches = grain.MapDataset.source([IDS, IDS]).map(pipeline_masking)  # the shapes above
    chosen = []
    for index in range(2):
        x, y, w = (numpy(value) for value in batches[index])
        np.testing.assert_array_equal(y, IDS)
        selected = w.astype(bool)
        assert not (selected & ~ELIGIBLE).any()
        np.testing.assert_array_equal(x[~selected], IDS[~selected])
        chosen.append(selected)
    low, high = two_sided_bounds(int(ELIGIBLE.sum()), 0.3)
    assert all(low < int(selected.sum()) < high for selected in chosen)
    assert (chosen[0] != chosen[1]).any()  # fresh per element
    model.compile(keras.optimizers.Adam(0.01))
    history = model.fit(batches, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
