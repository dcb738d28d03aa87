"""DynamicMLMMasking: configuration, inputs, randomness, tf.data and models.

The statistical properties of the masks are in
`test_dynamic_mlm_masking_statistics.py`.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask import DynamicMLMMasking

VOCAB = 200
MASK = 4
SPECIALS = [1, 2, 3]


def make_layer(**kwargs):
    config = dict(
        vocabulary_size=VOCAB, mask_token_id=MASK, special_token_ids=SPECIALS
    )
    config.update(kwargs)
    return DynamicMLMMasking(**config)


def random_ids(batch=8, length=32, seed=0, dtype="int32"):
    ids = np.random.RandomState(seed).randint(5, VOCAB, size=(batch, length))
    return ids.astype(dtype)


# Configuration errors name the argument and quote the value.


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(vocabulary_size=1), "vocabulary_size=1"),
        (dict(vocabulary_size=2.5), "vocabulary_size=2.5"),
        (dict(mask_token_id=VOCAB), f"mask_token_id={VOCAB}"),
        (dict(mask_token_id=-1), "mask_token_id=-1"),
        (dict(mask_rate=0.0), "mask_rate=0.0"),
        (dict(mask_rate=1.5), "mask_rate=1.5"),
        (dict(mask_rate="0.1"), "mask_rate='0.1'"),
        (dict(mask_token_rate=-0.1), "mask_token_rate=-0.1"),
        (dict(random_token_rate=2), "random_token_rate=2"),
        (dict(mask_token_rate=0.8, random_token_rate=0.3), "random_token_rate=0.3"),
        (dict(special_token_ids=[1, VOCAB]), f"special_token_ids=[1, {VOCAB}]"),
        (dict(special_token_ids="abc"), "special_token_ids='abc'"),
        (dict(pad_token_id=VOCAB + 3), f"pad_token_id={VOCAB + 3}"),
        (dict(selection="topk"), "selection='topk'"),
        (dict(max_predictions=0), "max_predictions=0"),
        (dict(max_predictions=True), "max_predictions=True"),
        (dict(output_mode="labels"), "output_mode='labels'"),
        (dict(ignore_index=0.5), "ignore_index=0.5"),
        (dict(seed="x"), "seed='x'"),
    ],
)
def test_bad_configuration_raises_value_error_naming_value(kwargs, argument):
    with pytest.raises(ValueError) as error:
        make_layer(**kwargs)
    assert argument in str(error.value)


def test_random_rate_without_any_allowed_replacement_is_rejected():
    with pytest.raises(ValueError, match="random_token_rate"):
        DynamicMLMMasking(
            vocabulary_size=3, mask_token_id=2, special_token_ids=[1], pad_token_id=0
        )
    # With no random replacements the same vocabulary is fine.
    DynamicMLMMasking(
        vocabulary_size=3,
        mask_token_id=2,
        special_token_ids=[1],
        random_token_rate=0.0,
    )


# Input errors.


def test_float_ids_are_rejected():
    with pytest.raises(ValueError, match="int32 or int64.*float32"):
        make_layer()(tf.constant([[1.0, 2.0]]))


def test_rank_three_ids_are_rejected():
    with pytest.raises(ValueError, match="rank 3"):
        make_layer()(tf.zeros([2, 3, 4], tf.int32))


@pytest.mark.parametrize("bad_id", [VOCAB, VOCAB + 50, -1])
def test_ids_outside_vocabulary_raise(bad_id):
    ids = random_ids(2, 6)
    ids[1, 3] = bad_id
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside"):
        make_layer()(tf.constant(ids))


def test_ids_outside_vocabulary_raise_inside_tf_data():
    ids = random_ids(4, 6)
    ids[2, 0] = VOCAB
    ds = tf.data.Dataset.from_tensor_slices(ids).batch(2).map(make_layer())
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside"):
        list(ds)


def test_dict_without_token_ids_and_tuples_are_rejected():
    with pytest.raises(ValueError, match="token_ids"):
        make_layer()({"ids": tf.constant([[5]])})
    with pytest.raises(ValueError, match="tuple"):
        make_layer()((tf.constant([[5]]), tf.constant([[6]])))


# Outputs: shapes, dtypes, kinds.


@pytest.mark.parametrize("dtype", ["int32", "int64"])
@pytest.mark.parametrize("mode", ["ids", "fit", "dict"])
def test_dense_output_structure(dtype, mode):
    ids = tf.constant(random_ids(dtype=dtype))
    out = make_layer(output_mode=mode, max_predictions=5)(ids)
    if mode == "ids":
        assert out.dtype == ids.dtype and out.shape == ids.shape
    elif mode == "fit":
        x, y, weights = out
        assert x.dtype == ids.dtype and x.shape == ids.shape
        np.testing.assert_array_equal(y, ids)
        assert weights.dtype == tf.float32 and weights.shape == ids.shape
        changed = x.numpy() != ids.numpy()
        assert np.all(weights.numpy()[changed] == 1.0)
    else:
        assert set(out) == {
            "token_ids",
            "labels",
            "mask",
            "mask_positions",
            "mask_ids",
            "mask_weights",
        }
        assert out["labels"].dtype == ids.dtype
        assert out["mask"].dtype == tf.bool
        assert out["mask_positions"].dtype == tf.int32
        assert out["mask_positions"].shape == (8, 5)
        assert out["mask_ids"].dtype == ids.dtype
        assert out["mask_weights"].dtype == tf.float32


def test_ragged_input_stays_ragged_with_same_row_lengths():
    ids = tf.ragged.constant([[5, 6, 7, 8, 9, 10], [11, 12], [], [13, 14, 15]], tf.int64)
    for selection in ("bernoulli", "exact"):
        out = make_layer(output_mode="dict", selection=selection, mask_rate=0.5)(ids)
        for key in ("token_ids", "labels", "mask"):
            assert isinstance(out[key], tf.RaggedTensor), key
            np.testing.assert_array_equal(out[key].row_lengths(), ids.row_lengths())
        assert out["token_ids"].dtype == tf.int64
        # "exact" selects round(0.5 * n) >= 1 tokens of each non-empty row.
        if selection == "exact":
            counts = tf.reduce_sum(tf.cast(out["mask"], tf.int32), axis=1).numpy()
            np.testing.assert_array_equal(counts, [3, 1, 0, 2])


def test_ragged_with_max_predictions_gives_dense_targets():
    ids = tf.ragged.constant([[5, 6, 7, 8, 9, 10], [11, 12]])
    out = make_layer(output_mode="dict", mask_rate=1.0, max_predictions=4)(ids)
    assert out["mask_positions"].shape == (2, 4)
    np.testing.assert_array_equal(out["mask_weights"], [[1, 1, 1, 1], [1, 1, 0, 0]])
    np.testing.assert_array_equal(out["mask_positions"][1], [0, 1, 0, 0])
    np.testing.assert_array_equal(out["mask_ids"][1], [11, 12, 0, 0])


def test_rank_one_input():
    ids = tf.constant(random_ids(1, 40)[0])
    out = make_layer(output_mode="dict", max_predictions=6, selection="exact")(ids)
    assert out["token_ids"].shape == (40,)
    assert out["mask_positions"].shape == (6,)
    assert int(tf.reduce_sum(tf.cast(out["mask"], tf.int32))) == 6


def test_dict_input_passes_other_entries_through():
    ids = tf.constant(random_ids())
    segments = tf.ones_like(ids)
    inputs = {"token_ids": ids, "segment_ids": segments}
    x, y, _ = make_layer(output_mode="fit")(inputs)
    assert set(x) == {"token_ids", "segment_ids"}
    assert x["segment_ids"] is segments
    np.testing.assert_array_equal(y, ids)
    out = make_layer(output_mode="dict")(inputs)
    assert out["segment_ids"] is segments


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_numpy_input_is_accepted(dtype):
    ids = random_ids(dtype=dtype)
    layer = make_layer(mask_rate=0.5, output_mode="dict")
    key = tf.constant([3, 4])
    out = layer(ids, seed=key)
    assert isinstance(out["token_ids"], tf.Tensor) and out["token_ids"].dtype == dtype
    # The same masks as for the same ids as a tensor.
    want = layer(tf.constant(ids), seed=key)
    for name in ("token_ids", "labels", "mask"):
        np.testing.assert_array_equal(out[name], want[name])
    assert out["mask"].numpy().any()


# Training flag.


def test_training_false_masks_nothing():
    ids = tf.constant(random_ids())
    layer = make_layer(output_mode="dict", mask_rate=1.0, max_predictions=3)
    out = layer(ids, training=False)
    np.testing.assert_array_equal(out["token_ids"], ids)
    assert not np.any(out["mask"])
    assert np.all(out["labels"].numpy() == -100)
    assert not np.any(out["mask_weights"])


def test_default_training_masks_when_called_on_its_own():
    ids = tf.constant(random_ids())
    assert np.any(make_layer(mask_rate=0.5)(ids).numpy() != ids.numpy())


# Randomness.


def test_call_seed_makes_output_a_pure_function_of_inputs_and_seed():
    ids = tf.constant(random_ids())
    a = make_layer(output_mode="dict")(ids, seed=tf.constant([3, 4]))
    b = make_layer(output_mode="dict", seed=99)(ids, seed=tf.constant([3, 4]))
    c = make_layer(output_mode="dict")(ids, seed=tf.constant([3, 5]))
    for key in ("token_ids", "mask"):
        np.testing.assert_array_equal(a[key], b[key])
    assert np.any(a["mask"].numpy() != c["mask"].numpy())


def test_unseeded_calls_differ():
    layer = make_layer(output_mode="dict")
    ids = tf.constant(random_ids())
    first, second = layer(ids)["mask"].numpy(), layer(ids)["mask"].numpy()
    assert np.any(first != second)


def test_constructor_seed_reproduces_the_sequence_of_masks():
    ids = tf.constant(random_ids())
    runs = []
    for _ in range(2):
        layer = make_layer(output_mode="dict", seed=11)
        runs.append([layer(ids)["mask"].numpy() for _ in range(3)])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    assert np.any(runs[0][0] != runs[0][1])


def test_tf_data_epochs_differ_even_after_set_random_seed():
    # With a global seed, plain tf.random ops in a map replay the same
    # values on every epoch; check first that the pitfall is real here.
    keras.utils.set_random_seed(123)
    ids = tf.data.Dataset.from_tensor_slices(random_ids(32, 16)).batch(8)
    plain = ids.map(lambda x: tf.random.uniform(tf.shape(x)) < 0.15)
    assert np.array_equal(
        np.concatenate(list(plain.as_numpy_iterator())),
        np.concatenate(list(plain.as_numpy_iterator())),
    )
    layer = make_layer(output_mode="dict")
    masked = ids.map(lambda x: layer(x)["mask"], num_parallel_calls=tf.data.AUTOTUNE)
    epochs = [np.concatenate(list(masked.as_numpy_iterator())) for _ in range(3)]
    assert np.any(epochs[0] != epochs[1]) and np.any(epochs[1] != epochs[2])


def test_seeded_layers_reproduce_and_unseeded_stay_fresh_after_set_random_seed():
    ids = tf.constant(random_ids())
    seeded, unseeded = [], []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        seeded.append(make_layer(output_mode="dict", seed=3)(ids)["mask"].numpy())
        unseeded.append(make_layer(output_mode="dict")(ids)["mask"].numpy())
    np.testing.assert_array_equal(seeded[0], seeded[1])
    assert np.any(unseeded[0] != unseeded[1])


# tf.data.


@pytest.mark.parametrize("kind", ["batched", "unbatched", "ragged"])
def test_map_over_datasets(kind):
    ids = random_ids(16, 12)
    ds = tf.data.Dataset.from_tensor_slices(ids)
    if kind == "batched":
        ds = ds.batch(4)
    elif kind == "ragged":
        lengths = np.arange(16) % 12 + 1
        ragged = tf.RaggedTensor.from_tensor(ids, lengths=lengths)
        ds = tf.data.Dataset.from_tensor_slices(ragged).ragged_batch(4)
    layer = make_layer(output_mode="fit", mask_rate=0.5)
    masked = list(ds.map(layer, num_parallel_calls=tf.data.AUTOTUNE))
    assert len(masked) == (16 if kind == "unbatched" else 4)
    for (x, y, weights), original in zip(masked, ds):
        assert type(x) is type(original)
        if kind == "ragged":
            x, y, weights = x.flat_values, y.flat_values, weights.flat_values
            original = original.flat_values
        np.testing.assert_array_equal(y, original)
        unselected = weights.numpy() == 0
        np.testing.assert_array_equal(x.numpy()[unselected], original.numpy()[unselected])


def test_fit_mode_feeds_model_fit_directly():
    ds = tf.data.Dataset.from_tensor_slices(random_ids(32, 12)).batch(8)
    ds = ds.map(make_layer(output_mode="fit"), num_parallel_calls=tf.data.AUTOTUNE)
    model = keras.Sequential(
        [keras.Input((None,), dtype="int32"), keras.layers.Embedding(VOCAB, 8),
         keras.layers.Dense(VOCAB)]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(ds, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # Keras reads the triple as (x, y, sample_weight): with one fixed masking
    # the evaluated loss is the cross-entropy weighted by the selection.
    layer = make_layer(output_mode="fit", mask_rate=0.3)
    batches = tf.data.Dataset.from_tensor_slices(random_ids(32, 12)).batch(8)
    fixed = batches.map(lambda ids: layer(ids, seed=tf.constant([5, 6])))
    want = []
    for x, y, weights in fixed:
        per_token = keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True)
        assert 0 < float(tf.reduce_sum(weights)) < weights.shape.num_elements()
        want.append(float(tf.reduce_sum(per_token * weights)) / weights.shape.num_elements())
    assert model.evaluate(fixed, verbose=0) == pytest.approx(np.mean(want), rel=1e-5)


# Inside a model.


def mask_fraction_model(jit_compile=False):
    """A model whose output is the fraction of ids equal to the mask token.

    With mask_rate=1 and mask_token_rate=1, masking turns every id into the
    mask token (fraction 1), and no masking leaves it at 0.
    """
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            make_layer(mask_rate=1.0, mask_token_rate=1.0, random_token_rate=0.0),
            keras.layers.Lambda(
                lambda x: tf.reduce_mean(tf.cast(tf.equal(x, MASK), "float32"), axis=1, keepdims=True)
            ),
            keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros",
                               trainable=False),
        ]
    )
    model.compile("sgd", "mae", jit_compile=jit_compile)
    return model


@pytest.mark.parametrize("jit_compile", [False, True])
def test_masks_in_fit_but_not_in_predict_evaluate_or_call(jit_compile):
    model = mask_fraction_model(jit_compile)
    ids = random_ids(16, 10)
    zeros = np.zeros((16, 1), "float32")
    # In fit the layer masks: every output is 1, so MAE against 0 is 1.
    history = model.fit(ids, zeros, epochs=1, batch_size=8, verbose=0)
    assert history.history["loss"][0] == pytest.approx(1.0)
    # Elsewhere it does not: the output is 0.
    assert model.evaluate(ids, zeros, verbose=0) == pytest.approx(0.0)
    np.testing.assert_array_equal(model.predict(ids, verbose=0), zeros)
    np.testing.assert_array_equal(model(ids), zeros)


def test_sequential_model_trains_and_round_trips_through_keras_file(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            make_layer(seed=3, max_predictions=4, selection="exact"),
            keras.layers.Embedding(VOCAB, 8),
            keras.layers.Dense(VOCAB),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ids = random_ids(16, 10)
    model.fit(ids, ids, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.layers[0].get_config() == model.layers[0].get_config()
    np.testing.assert_allclose(restored.predict(ids, verbose=0), model.predict(ids, verbose=0))


def test_get_config_round_trips():
    layer = make_layer(
        mask_rate=0.2,
        selection="exact",
        max_predictions=7,
        output_mode="dict",
        ignore_index=-1,
        pad_token_id=None,
        seed=5,
    )
    config = layer.get_config()
    json.dumps(config)
    clone = DynamicMLMMasking.from_config(config)
    assert clone.get_config() == config
    ids = tf.constant(random_ids())
    seed = tf.constant([1, 2])
    for key in ("token_ids", "labels", "mask_positions"):
        np.testing.assert_array_equal(layer(ids, seed=seed)[key], clone(ids, seed=seed)[key])


def test_export_serves_unmasked_ids_in_plain_tensorflow(tmp_path, no_keras_dynmask_python):
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            make_layer(mask_rate=1.0, mask_token_rate=1.0, random_token_rate=0.0),
            keras.layers.Embedding(VOCAB, 4),
        ]
    )
    ids = random_ids(3, 7)
    expected = model.predict(ids, verbose=0)
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "expected.npy", expected)
    model.export(str(tmp_path / "export"), verbose=False)
    no_keras_dynmask_python(
        f"""
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({str(tmp_path / "export")!r})
        ids = np.load({str(tmp_path / "ids.npy")!r})
        expected = np.load({str(tmp_path / "expected.npy")!r})
        served = loaded.serve(tf.constant(ids)).numpy()
        np.testing.assert_allclose(served, expected, rtol=1e-6)
        signature = loaded.signatures["serving_default"]
        out = list(signature(tf.constant(ids)).values())[0].numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-6)
        print("ok")
        """
    )


# keras-hub compatibility (the peer's heads take our targets as they are).


def test_targets_feed_keras_hub_bert_masked_lm():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=16,
    )
    model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["accuracy"],
    )
    masking = make_layer(output_mode="dict", max_predictions=4, pad_token_id=0)
    ids = random_ids(16, 16)
    ids[:, 12:] = 0

    def to_bert(features):
        out = masking(features)
        x = {
            "token_ids": out["token_ids"],
            "segment_ids": tf.zeros_like(out["token_ids"]),
            "padding_mask": tf.not_equal(features, 0),
            "mask_positions": out["mask_positions"],
        }
        return x, out["mask_ids"], out["mask_weights"]

    ds = tf.data.Dataset.from_tensor_slices(ids).batch(8).map(to_bert)
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    x, y, _ = next(iter(ds))
    predictions = model.predict(x, verbose=0)
    assert predictions.shape == (8, 4, VOCAB)
    # The head predicts at our `mask_positions`: reversing them reverses
    # its predictions.
    reversed_x = dict(x, mask_positions=x["mask_positions"][:, ::-1])
    np.testing.assert_allclose(
        model.predict(reversed_x, verbose=0), predictions[:, ::-1], rtol=1e-4, atol=1e-5
    )
