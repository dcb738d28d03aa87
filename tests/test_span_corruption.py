"""SpanCorruption: configuration, inputs, exact round trip, seeds, tf.data,
models, SavedModel served by plain TensorFlow, XLA."""

import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask import SpanCorruption
from keras_dynmask.data import mask_dataset

sys.path.insert(0, os.path.dirname(__file__))
from span_reference import expected_counts  # noqa: E402
from span_reference import restore  # noqa: E402
from span_reference import runs  # noqa: E402
from span_reference import strip  # noqa: E402

VOCAB = 300
EOS = 1
NUM_SENTINELS = 30
SENTINELS = [VOCAB - 1 - i for i in range(NUM_SENTINELS)]


def make_layer(**kwargs):
    config = dict(vocabulary_size=VOCAB, num_sentinels=NUM_SENTINELS, eos_id=EOS)
    config.update(kwargs)
    return SpanCorruption(**config)


def random_rows(batch=40, width=50, seed=0, dtype="int32"):
    """Dense ids with varied padding at the end, and the rows' lengths."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, VOCAB - NUM_SENTINELS, size=(batch, width)).astype(dtype)
    lengths = rng.integers(0, width + 1, size=batch)
    lengths[:3] = [0, 1, width]
    for row, n in enumerate(lengths):
        ids[row, n:] = 0
    return ids, lengths


def check_rows(out, ids, lengths, density=0.15, mean=3.0, eos_id=EOS, sentinel_ids=SENTINELS):
    """Every row: the counts of the formula, well formed, exact round trip."""
    inputs, targets = (np.asarray(_dense(out[k])) for k in ("inputs", "targets"))
    for row, n in enumerate(lengths):
        noise, spans = expected_counts(int(n), density, mean, len(sentinel_ids))
        got_inputs = strip(inputs[row], eos_id=eos_id)
        got_targets = strip(targets[row], eos_id=eos_id)
        assert len(got_inputs) == n - noise + spans
        assert len(got_targets) == noise + spans
        original = [int(v) for v in ids[row][:n]]
        assert restore(got_inputs, got_targets, sentinel_ids) == original


def _dense(value):
    return value.to_tensor() if isinstance(value, tf.RaggedTensor) else value


# Configuration.


@pytest.mark.parametrize(
    "kwargs, quoted",
    [
        (dict(vocabulary_size=1), "vocabulary_size=1"),
        (dict(noise_density=0.0), "noise_density=0.0"),
        (dict(noise_density=1.0), "noise_density=1.0"),
        (dict(mean_noise_span_length=0.5), "mean_noise_span_length=0.5"),
        (dict(sentinel_ids=[5, 5]), "sentinel_ids=[5, 5]"),
        (dict(sentinel_ids=[VOCAB]), f"sentinel_ids=[{VOCAB}]"),
        (dict(num_sentinels=0), "num_sentinels=0"),
        (dict(num_sentinels=VOCAB), f"below vocabulary_size={VOCAB}.*num_sentinels={VOCAB}"),
        (dict(eos_id=VOCAB - 1), f"eos_id={VOCAB - 1}"),
        (dict(pad_token_id=VOCAB - 2), f"pad_token_id={VOCAB - 2}"),
        (dict(eos_id=0, pad_token_id=0), "eos_id=0, pad_token_id=0"),
        (dict(inputs_length=0), "inputs_length=0"),
        (dict(targets_length=2.5), "targets_length=2.5"),
        (dict(seed="x"), "seed='x'"),
    ],
)
def test_bad_configuration_names_the_argument(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted.replace("[", r"\[").replace("]", r"\]")):
        make_layer(**kwargs)


def test_config_round_trips_and_numpy_scalars_are_plain():
    layer = make_layer(noise_density=np.float32(0.25), inputs_length=np.int64(40), seed=3)
    config = layer.get_config()
    json.dumps(config)
    assert config["noise_density"] == pytest.approx(0.25) and config["inputs_length"] == 40
    clone = SpanCorruption.from_config(config)
    assert clone.get_config() == config
    ids, _ = random_rows()
    seed = tf.constant([4, 2])
    for key in ("inputs", "targets"):
        np.testing.assert_array_equal(layer(ids, seed=seed)[key], clone(ids, seed=seed)[key])


def test_t5_sentinel_ids_are_the_released_vocabularys_extra_ids():
    ids = SpanCorruption.T5_SENTINEL_IDS
    # <extra_id_k> = 32099 - k for k = 0 .. 99: just below the 28 unused ids.
    assert len(ids) == 100 and ids[0] == 32099 and ids[99] == 32000
    assert all(ids[k] == 32099 - k for k in range(100))
    assert 32128 - 1 - ids[0] == 28
    layer = SpanCorruption(vocabulary_size=32128, eos_id=1, sentinel_ids=ids, noise_density=0.3)
    assert layer.lengths_for(512) == SpanCorruption(32128, 0.3, eos_id=1).lengths_for(512)
    row = tf.range(10, 70)[None, :]
    out = layer(row, seed=tf.constant([1, 2]))
    inputs, targets = strip(out["inputs"][0], eos_id=1), strip(out["targets"][0], eos_id=1)
    assert targets[0] == 32099 and [t for t in inputs if t >= 32000] == [t for t in targets if t >= 32000]
    assert restore(inputs, targets, list(ids)) == list(range(10, 70))
    assert SpanCorruption.from_config(layer.get_config()).sentinel_ids == list(ids)
    with pytest.raises(ValueError, match="sentinel id"):
        layer(tf.constant([[5, 32050, 7]]))  # an extra id among the tokens


def test_default_sentinels_are_the_top_ids_and_noise_density_is_a_property():
    layer = SpanCorruption(vocabulary_size=32128, eos_id=1)
    assert layer.sentinel_ids[:2] == [32127, 32126] and len(layer.sentinel_ids) == 100
    assert layer.noise_density == 0.15
    assert layer.lengths_for(512) == (568, 114)  # T5's 512-token setting
    # Without an eos the inputs hold one more raw token.
    assert SpanCorruption(vocabulary_size=32128).lengths_for(512) == (569, 114 - 1)


# Inputs.


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_dense_batches_round_trip_exactly_with_the_formula_counts(dtype):
    ids, lengths = random_rows(dtype=dtype)
    for seed in range(5):
        out = make_layer()(ids, seed=tf.constant([seed, 1]))
        assert out["inputs"].dtype == out["targets"].dtype == dtype
        check_rows(out, ids, lengths)


@pytest.mark.parametrize("density, mean", [(0.5, 3.0), (0.5, 64.0), (0.3, 1.0), (0.9, 2.0)])
def test_other_densities_and_span_lengths_round_trip(density, mean):
    ids, lengths = random_rows(seed=2)
    layer = make_layer(noise_density=density, mean_noise_span_length=mean)
    check_rows(layer(ids, seed=tf.constant([0, 9])), ids, lengths, density, mean)


def test_ragged_rank_one_and_dict_inputs():
    ids, lengths = random_rows(batch=12)
    ragged = tf.ragged.constant([row[:n].tolist() for row, n in zip(ids, lengths)])
    layer = make_layer()
    seed = tf.constant([5, 5])
    out = layer(ragged, seed=seed)
    assert isinstance(out["inputs"], tf.RaggedTensor)
    dense = layer(ids, seed=seed)
    for key in ("inputs", "targets"):
        np.testing.assert_array_equal(out[key].to_tensor().numpy(), dense[key].numpy())
    check_rows(out, ids, lengths)
    single = layer(ids[2], seed=seed)
    assert single["inputs"].shape.rank == 1
    check_rows({k: v[None] for k, v in single.items()}, ids[2:3], lengths[2:3])
    passed = layer({"token_ids": tf.constant(ids), "doc_id": tf.range(12)}, seed=seed)
    assert sorted(passed) == ["doc_id", "inputs", "targets"]
    np.testing.assert_array_equal(passed["doc_id"], np.arange(12))
    np.testing.assert_array_equal(passed["inputs"], dense["inputs"])


def test_dict_input_must_hold_token_ids_and_no_output_key():
    layer = make_layer()
    with pytest.raises(ValueError, match="token_ids"):
        layer({"ids": tf.ones([2, 4], tf.int32)})
    with pytest.raises(ValueError, match="must not hold the output keys"):
        layer({"token_ids": tf.ones([2, 4], tf.int32), "targets": tf.ones([2, 4])})


def test_bad_inputs_raise_clear_errors():
    layer = make_layer()
    with pytest.raises(ValueError, match="int32 or int64"):
        layer(tf.ones([2, 4]))
    with pytest.raises(ValueError, match="rank 1 or 2"):
        layer(tf.ones([2, 4, 3], tf.int32))
    with pytest.raises(ValueError, match="sentinel id"):
        layer(tf.constant([[5, 6, SENTINELS[3], 7]]))
    with pytest.raises(ValueError, match="outside"):
        layer(tf.constant([[5, 6, VOCAB + 4, 7]]))
    with pytest.raises(ValueError, match="outside"):
        layer(tf.constant([[5, -3, 7]]))
    ds = tf.data.Dataset.from_tensors(tf.constant([[5, SENTINELS[0], 7]])).map(layer)
    with pytest.raises(tf.errors.InvalidArgumentError, match="sentinel id"):
        next(iter(ds))


def test_custom_sentinels_are_checked_and_used_in_order():
    listed = [40, 12, 77, 3]
    layer = make_layer(sentinel_ids=listed, noise_density=0.5, mean_noise_span_length=1.0)
    ids = tf.constant([[5, 6, 7, 8, 9, 10, 11, 13, 14, 0]])
    out = layer(ids, seed=tf.constant([1, 1]))
    inputs, targets = strip(out["inputs"][0], eos_id=EOS), strip(out["targets"][0], eos_id=EOS)
    assert [t for t in targets if t in listed] == listed
    assert restore(inputs, targets, listed) == [5, 6, 7, 8, 9, 10, 11, 13, 14]
    with pytest.raises(ValueError, match="sentinel id"):
        layer(tf.constant([[5, 12, 7]]))


def test_short_rows_pass_through_with_no_noise():
    out = make_layer()(tf.constant([[7, 0, 0], [0, 0, 0]]), seed=tf.constant([1, 2]))
    assert out["inputs"].numpy().tolist() == [[7, EOS], [EOS, 0]]
    assert out["targets"].numpy().tolist() == [[EOS], [EOS]]


def test_fixed_lengths_pad_and_cut():
    ids, lengths = random_rows()
    layer = make_layer(inputs_length=64, targets_length=24)
    out = layer(ids, seed=tf.constant([3, 3]))
    assert out["inputs"].shape == (40, 64) and out["targets"].shape == (40, 24)
    check_rows(out, ids, lengths)
    cut = make_layer(inputs_length=10, targets_length=3)(ids, seed=tf.constant([3, 3]))
    np.testing.assert_array_equal(cut["inputs"], out["inputs"][:, :10])
    np.testing.assert_array_equal(cut["targets"], out["targets"][:, :3])


def test_lengths_for_fills_the_inputs_exactly():
    layer = make_layer(noise_density=0.15, num_sentinels=100, vocabulary_size=1000)
    tokens_length, targets_length = layer.lengths_for(128)
    ids = np.random.default_rng(0).integers(2, 800, size=(6, tokens_length)).astype("int32")
    out = layer(ids, seed=tf.constant([0, 0]))
    assert out["inputs"].shape == (6, 128) and out["targets"].shape == (6, targets_length)


# Statistics: where the noise falls.


def test_noise_span_lengths_average_the_mean_and_positions_spread_evenly():
    rows, width = 2000, 60
    ids = np.tile(np.arange(2, 2 + width, dtype=np.int32), (rows, 1))
    out = make_layer(noise_density=0.2, mean_noise_span_length=3.0)(ids, seed=tf.constant([8, 8]))
    noise_at = np.zeros(width)
    first_noise_spans = []
    for inputs, targets in zip(out["inputs"].numpy(), out["targets"].numpy()):
        targets = strip(targets, eos_id=EOS)
        nonnoise, noise = runs(strip(inputs, eos_id=EOS), targets, SENTINELS)
        assert len(noise) == 4 and sum(noise) == 12  # round(60 * 0.2), round(12 / 3)
        first_noise_spans.append(noise[0])
        noise_at[[t - 2 for t in targets if t not in SENTINELS]] += 1
    # First span of a uniform composition of 12 into 4: mean 3, variance
    # (12 - 4) * (4 - 1) * 12 / (4**2 * 5) = 1.35 (Dirichlet-multinomial).
    bound = 5.0 * np.sqrt(1.35 / rows)
    assert abs(np.mean(first_noise_spans) - 3.0) < bound
    # The first position is never noise (non-noise comes first), the last
    # always is; inside, each position is noise about 20% of the time.
    assert noise_at[0] == 0 and noise_at[-1] == rows
    inside = noise_at[5:-5] / rows
    spread = 5.0 * np.sqrt(0.2 * 0.8 / rows)
    assert np.all(np.abs(inside - 0.2) < spread + 0.03)


# Randomness.


def test_call_seed_is_pure_and_fresh_draws_differ():
    ids, _ = random_rows()
    layer = make_layer()
    seed = tf.constant([11, 12])
    a, b = layer(ids, seed=seed), layer(ids, seed=seed)
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
    other = layer(ids, seed=tf.constant([11, 13]))
    assert not np.array_equal(a["targets"], other["targets"])
    fresh = [layer(ids)["targets"].numpy().tobytes() for _ in range(3)]
    assert len(set(fresh)) == 3


def test_constructor_seed_repeats_run_to_run():
    ids, _ = random_rows()
    first = [make_layer(seed=5)(ids)["inputs"].numpy() for _ in range(1)]
    layer = make_layer(seed=5)
    again = layer(ids)["inputs"].numpy()
    np.testing.assert_array_equal(first[0], again)
    assert not np.array_equal(again, layer(ids)["inputs"].numpy())


def test_mask_dataset_is_reproducible_and_new_every_epoch():
    ids, _ = random_rows(batch=16)
    ds = tf.data.Dataset.from_tensor_slices(ids).batch(4)
    layer = make_layer()
    masked = mask_dataset(ds, layer, seed=21)
    first = [x["targets"].numpy().tobytes() for x in masked]
    second = [x["targets"].numpy().tobytes() for x in masked]
    again = [x["targets"].numpy().tobytes() for x in mask_dataset(ds, layer, seed=21)]
    assert first == again and first != second


def test_unseeded_tf_data_differs_each_epoch_even_with_a_global_seed():
    keras.utils.set_random_seed(1)
    ids, lengths = random_rows(batch=8)
    ds = tf.data.Dataset.from_tensors(ids).map(make_layer())
    epochs = [next(iter(ds)) for _ in range(2)]
    assert not np.array_equal(epochs[0]["targets"], epochs[1]["targets"])
    check_rows(epochs[0], ids, lengths)


def test_padded_batches_with_unknown_width_in_tf_data():
    rows = [list(range(2, 2 + n)) for n in (0, 1, 5, 30, 12)]
    ds = tf.data.Dataset.from_generator(
        lambda: iter(rows), output_signature=tf.TensorSpec([None], tf.int32)
    ).padded_batch(5)
    out = next(iter(ds.map(make_layer())))
    check_rows(out, [np.array(r) for r in rows], [len(r) for r in rows])


# Models, export, XLA.


def functional_model(layer):
    ids = keras.Input((None,), dtype="int32")
    out = layer(ids)
    return keras.Model(ids, [out["inputs"], out["targets"]])


def test_in_a_model_it_corrupts_only_in_training():
    ids, lengths = random_rows(batch=6)
    model = functional_model(make_layer())
    inputs, targets = model(ids)
    for row, n in enumerate(lengths):
        assert strip(inputs[row].numpy(), eos_id=EOS) == ids[row][:n].tolist()
        assert strip(targets[row].numpy(), eos_id=EOS) == []
    inputs, targets = model(ids, training=True)
    check_rows({"inputs": inputs, "targets": targets}, ids, lengths)
    assert any(SENTINELS[0] in row for row in inputs.numpy().tolist())
    assert make_layer()(ids, training=False)["targets"].shape == (6, 1)


def test_model_with_the_layer_saves_and_loads(tmp_path):
    model = functional_model(make_layer(noise_density=0.3, seed=4))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    layer = [l for l in loaded.layers if isinstance(l, SpanCorruption)][0]
    assert layer.get_config() == model.layers[1].get_config()
    ids, _ = random_rows(batch=5)
    for a, b in zip(model(ids), loaded(ids)):
        np.testing.assert_array_equal(a, b)


def test_saved_model_corrupts_in_plain_tensorflow(tmp_path, no_keras_dynmask_python):
    layer = make_layer(inputs_length=48, targets_length=16)

    class Corrupter(tf.Module):
        @tf.function(input_signature=[
            tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([2], tf.int64)
        ])
        def corrupt(self, ids, seed):
            return layer(ids, seed=seed)

    module = Corrupter()
    ids, lengths = random_rows(batch=10)
    expected = module.corrupt(tf.constant(ids), tf.constant([3, 4], tf.int64))
    check_rows(expected, ids, lengths)
    np.save(tmp_path / "ids.npy", ids)
    for key in ("inputs", "targets"):
        np.save(tmp_path / f"{key}.npy", expected[key].numpy())
    tf.saved_model.save(module, str(tmp_path / "export"))
    no_keras_dynmask_python(
        f"""
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({str(tmp_path / "export")!r})
        ids = np.load({str(tmp_path / "ids.npy")!r})
        out = loaded.corrupt(tf.constant(ids), tf.constant([3, 4], tf.int64))
        for key in ("inputs", "targets"):
            np.testing.assert_array_equal(out[key].numpy(), np.load({str(tmp_path)!r} + f"/{{key}}.npy"))
        bad = ids.copy()
        bad[0, 0] = {SENTINELS[1]}
        try:
            loaded.corrupt(tf.constant(bad), tf.constant([3, 4], tf.int64))
        except tf.errors.InvalidArgumentError as error:
            assert "sentinel" in str(error)
        else:
            raise SystemExit("a sentinel in the input must fail")
        print("ok")
        """
    )


def test_model_export_serves_the_uncorrupted_ids(tmp_path, no_keras_dynmask_python):
    model = functional_model(make_layer())
    ids, _ = random_rows(batch=4)
    expected = [t.numpy() for t in model(ids)]
    model.export(str(tmp_path / "export"), verbose=False)
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "inputs.npy", expected[0])
    no_keras_dynmask_python(
        f"""
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({str(tmp_path / "export")!r})
        out = loaded.serve(tf.constant(np.load({str(tmp_path / "ids.npy")!r})))
        np.testing.assert_array_equal(out[0].numpy(), np.load({str(tmp_path / "inputs.npy")!r}))
        print("ok")
        """
    )


def test_runs_under_xla_with_fixed_lengths():
    layer = make_layer(inputs_length=56, targets_length=24, noise_density=0.3)
    compiled = tf.function(lambda ids, seed: layer(ids, seed=seed), jit_compile=True)
    ids, lengths = random_rows()
    out = compiled(tf.constant(ids), tf.constant([6, 7]))
    assert out["inputs"].shape == (40, 56)
    check_rows(out, ids, lengths, density=0.3)
    assert compiled.experimental_get_compiler_ir(tf.constant(ids), tf.constant([6, 7]))()


@pytest.mark.parametrize("lengths", [{}, {"inputs_length": 6, "targets_length": 4}])
@pytest.mark.parametrize("shape", [(0,), (2, 0)])
@pytest.mark.parametrize("training", [True, False])
def test_rows_of_width_zero_give_just_the_eos(lengths, shape, training):
    # Once a segfault (fixed lengths) or an InvalidArgumentError: the width-0
    # row's length was reduce_max over nothing, INT32_MIN.
    from keras_dynmask import DenoiserMixture

    for layer in (make_layer(**lengths), DenoiserMixture(VOCAB, eos_id=EOS, **lengths)):
        out = layer(tf.zeros(shape, tf.int32), training=training, seed=tf.constant([1, 2]))
        for key in ("inputs", "targets"):
            rows = np.reshape(out[key].numpy(), (-1, out[key].shape[-1]))
            assert rows.shape[0] == (shape[0] if len(shape) == 2 else 1)
            for row in rows:  # no tokens: no mode token either, just the eos
                assert strip(row, eos_id=EOS) == [], (key, row)


@pytest.mark.parametrize("mixture", [False, True])
def test_xla_without_fixed_lengths_is_a_clear_error(mixture):
    # Once an abort of the whole process (an XLA check on an empty literal).
    from keras_dynmask import DenoiserMixture

    layer = DenoiserMixture(VOCAB, eos_id=EOS) if mixture else make_layer()
    compiled = tf.function(lambda x: layer(x, training=True, seed=tf.constant([3, 4])), jit_compile=True)
    with pytest.raises(ValueError, match="needs fixed `inputs_length` and `targets_length`.*inputs_length=None"):
        compiled(tf.constant([[5, 6, 7, 8, 9, 10]]))


def test_explicit_sentinel_ids_in_a_small_vocabulary():
    # The default num_sentinels (100) was checked against the vocabulary first.
    layer = SpanCorruption(100, sentinel_ids=[99, 98, 97], eos_id=1)
    assert layer.num_sentinels == 3 and layer.sentinel_ids == [99, 98, 97]
    restored = SpanCorruption.from_config(layer.get_config())
    assert restored.sentinel_ids == [99, 98, 97]
