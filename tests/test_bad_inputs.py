"""Bad input and edge cases across the layers: clear errors, no silent wrong masks."""

import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask import CausalMask
from keras_dynmask import DenoiserMixture
from keras_dynmask import DynamicMLMMasking
from keras_dynmask import PaddingMask
from keras_dynmask import SpanCorruption
from keras_dynmask.data import mask_dataset
from keras_dynmask.kernels import selection
from mlm_reference import expected_exact_count

IDS = np.array([[1, 10, 11, 12, 13, 2, 0, 0], [1, 14, 15, 16, 17, 18, 19, 2]], np.int32)


def make_layer(**kwargs):
    return DynamicMLMMasking(100, 3, special_token_ids=[1, 2], **kwargs)


def unknown_rank(fn):
    return tf.function(fn, input_signature=[tf.TensorSpec(None, tf.int32)])


# Silent wrong results.


@pytest.mark.parametrize("ignore_index", [2**31, 2**40, -(2**31) - 1])
def test_ignore_index_that_does_not_fit_int32_ids_is_refused(ignore_index):
    layer = make_layer(output_mode="dict", ignore_index=ignore_index)
    with pytest.raises(ValueError, match=f"ignore_index={ignore_index}"):
        layer(IDS)
    labels = layer(IDS.astype(np.int64), seed=[1, 2])["labels"].numpy()
    assert set(labels[labels < 4].tolist()) <= {ignore_index}
    assert (labels == ignore_index).any()


def test_ignore_index_beyond_int64_refused_at_construction():
    with pytest.raises(ValueError, match="ignore_index"):
        make_layer(ignore_index=2**63)


@pytest.mark.parametrize("key", ["labels", "mask", "mask_positions"])
def test_dict_keys_that_clash_with_outputs_are_refused(key):
    layer = make_layer(output_mode="dict", max_predictions=3)
    with pytest.raises(ValueError, match=key):
        layer({"token_ids": IDS, key: IDS})
    # Keys that do not clash pass through untouched.
    out = layer({"token_ids": IDS, "segment_ids": IDS * 0 + 7})
    np.testing.assert_array_equal(out["segment_ids"], IDS * 0 + 7)


@pytest.mark.parametrize(
    "kwargs", [dict(selection="exact"), dict(max_predictions=3, output_mode="dict"),
               dict(), dict(output_mode="fit")])
def test_unknown_static_rank_masks_rank_one_and_refuses_rank_three(kwargs):
    layer = make_layer(mask_rate=0.5, **kwargs)
    run = unknown_rank(lambda x: layer(x, seed=tf.constant([4, 5])))
    out = tf.nest.flatten(run(IDS[1]))
    assert out[0].shape == (8,)
    if "selection" in kwargs:
        assert int(tf.reduce_sum(tf.cast(out[0] != IDS[1], tf.int32))) <= 3
    with pytest.raises(tf.errors.InvalidArgumentError, match="rank 1 or 2"):
        run(np.full([2, 2, 8], 10, np.int32))


@pytest.mark.parametrize("mixture", [False, True])
def test_span_layers_under_unknown_static_rank_match_the_known_rank(mixture):
    if mixture:
        layer = DenoiserMixture(100, num_sentinels=10, eos_id=1)
    else:
        layer = SpanCorruption(100, num_sentinels=10, eos_id=1, noise_density=0.3)
    seed = tf.constant([4, 5])
    run = unknown_rank(lambda x: layer(x, seed=seed))
    for ids in (IDS[1], IDS):
        got, known = run(ids), layer(ids, seed=seed)
        assert sorted(got) == sorted(known)
        for key in known:
            assert got[key].shape == known[key].shape, key
            np.testing.assert_array_equal(got[key], known[key])
    with pytest.raises(tf.errors.InvalidArgumentError, match="needs token_ids of rank 1 or 2"):
        run(np.full([2, 2, 8], 10, np.int32))


@pytest.mark.parametrize("layer", [
    SpanCorruption(100, num_sentinels=10, inputs_length=12, targets_length=8),
    DenoiserMixture(100, num_sentinels=10, inputs_length=12, targets_length=8),
    DynamicMLMMasking(100, 3, granularity="word", word_starts=[True] * 100),
    DynamicMLMMasking(100, 3, selection="exact"),
])
def test_ragged_ids_under_xla_are_refused_saying_to_pad_them(layer):
    compiled = tf.function(lambda x: layer(x, training=True), jit_compile=True)
    ragged = tf.ragged.constant([[5, 6, 7, 8], [9, 10]])
    with pytest.raises(ValueError, match="needs dense token_ids.*[Pp]ad it first.*ragged token_ids"):
        compiled(ragged)
    # Padded, the same ids run.
    out = tf.nest.flatten(compiled(ragged.to_tensor()))
    assert out[0].shape[0] == 2


def test_dict_entries_passed_through_stay_connected_in_functional_models():
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    word_ids = keras.Input((None,), dtype="int32", name="word_ids")
    inputs = {"token_ids": token_ids, "word_ids": word_ids}
    masking = DynamicMLMMasking(50, 3, granularity="word", mask_rate=0.5, output_mode="dict")
    out = masking(inputs)
    model = keras.Model(inputs, {"mask": out["mask"], "word_ids": out["word_ids"]})
    ids = np.arange(5, 29, dtype=np.int32).reshape(2, 12)
    words = np.tile(np.arange(12, dtype=np.int32) // 3, (2, 1))  # words of three pieces
    got = model({"token_ids": ids, "word_ids": words}, training=True)
    np.testing.assert_array_equal(got["word_ids"], words)
    mask = got["mask"].numpy().reshape(2, 4, 3)  # whole words: all pieces or none
    assert np.all(mask.all(axis=2) == mask.any(axis=2)) and mask.any()
    ids_only = keras.Model(inputs, masking(inputs)["token_ids"])
    assert ids_only({"token_ids": ids, "word_ids": words}).shape == (2, 12)

    segment_ids = keras.Input((None,), dtype="int32", name="segment_ids")
    spans = SpanCorruption(100, num_sentinels=10)({"token_ids": token_ids, "segment_ids": segment_ids})
    model = keras.Model([token_ids, segment_ids], [spans["inputs"], spans["segment_ids"]])
    corrupted, segments = model([ids, words], training=True)
    np.testing.assert_array_equal(segments, words)
    assert corrupted.shape[0] == 2 and np.isin(corrupted.numpy(), np.arange(90, 100)).any()


def test_unknown_rank_exact_counts_equal_the_known_rank_ones():
    layer = make_layer(mask_rate=0.5, selection="exact", output_mode="dict")
    out = unknown_rank(lambda x: layer(x, seed=tf.constant([4, 5])))(IDS)
    np.testing.assert_array_equal(out["mask"].numpy().sum(1),
                                  expected_exact_count([4, 6], 0.5, None))


@pytest.mark.parametrize("layer, bad", [
    (PaddingMask(), np.zeros([2, 2, 2], np.int32)),
    (PaddingMask(), np.zeros([], np.int32)),
    (CausalMask(), np.zeros([2, 2, 2, 2], np.int32)),
    (CausalMask(), np.zeros([], np.int32)),
])
def test_attention_layers_check_rank_when_unknown_statically(layer, bad):
    run = unknown_rank(lambda x: layer(x))
    with pytest.raises(tf.errors.InvalidArgumentError, match="rank"):
        run(bad)
    assert run(IDS).shape[:2] == (2, 8)


def test_exact_count_rounds_the_real_product():
    # 190 * 0.15 = 28.5 exactly in real numbers: round half to even gives 28.
    counts = selection.exact_counts(tf.constant([190, 10, 1, 0]), 0.15)
    np.testing.assert_array_equal(counts, [28, 2, 1, 0])
    np.testing.assert_array_equal(counts, expected_exact_count([190, 10, 1, 0], 0.15, None))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_int64_prefix_beyond_int32_means_the_whole_sequence(jit_compile):
    run = tf.function(lambda x, p: CausalMask()(x, prefix_length=p), jit_compile=jit_compile)
    mask = run(IDS, tf.constant([2**32 + 1, 2**33], tf.int64)).numpy()
    assert mask.all()


def test_negative_prefix_is_refused_eagerly_and_in_graphs():
    with pytest.raises(ValueError, match="prefix_length"):
        CausalMask()(IDS, prefix_length=-1)
    run = tf.function(lambda x, p: CausalMask()(x, prefix_length=p))
    with pytest.raises(tf.errors.InvalidArgumentError, match="prefix_length"):
        run(IDS, tf.constant(-1))


# Reproducibility.


def parallel_masks(layer, seed=None):
    ds = tf.data.Dataset.from_tensor_slices(np.tile(IDS, (32, 1))).batch(2)
    return np.stack([x.numpy() for x in mask_dataset(ds, layer, seed=seed,
                                                     num_parallel_calls=8)])


def test_constructor_seed_reproducible_under_parallel_mask_dataset():
    first = parallel_masks(make_layer(seed=11, mask_rate=0.5))
    again = parallel_masks(make_layer(seed=11, mask_rate=0.5))
    np.testing.assert_array_equal(first, again)
    assert (first != parallel_masks(make_layer(seed=12, mask_rate=0.5))).any()


def test_call_seed_value_not_dtype_decides():
    layer = make_layer(mask_rate=0.5)
    as_int32 = layer(IDS, seed=tf.constant([7, 42], tf.int32))
    as_int64 = layer(IDS, seed=tf.constant([7, 42], tf.int64))
    as_numpy = layer(IDS, seed=np.array([7, 42], np.uint16))
    np.testing.assert_array_equal(as_int32, as_int64)
    np.testing.assert_array_equal(as_int32, as_numpy)


@pytest.mark.parametrize("seed", [7, [1.5, 2.0], np.array([1, 2, 3]), "7"])
def test_bad_call_seed_names_the_argument(seed):
    with pytest.raises(ValueError, match="seed"):
        make_layer()(IDS, seed=seed)
    with pytest.raises(ValueError, match="seed"):
        make_layer()(IDS, seed=tf.constant([1.0, 2.0]))


def test_mask_dataset_keeps_cardinality():
    ds = tf.data.Dataset.from_tensor_slices(np.tile(IDS, (2, 1))).batch(2)
    assert int(mask_dataset(ds, make_layer(), seed=3).cardinality()) == 2
    assert int(mask_dataset(ds, make_layer(), seed=3, num_epochs=3).cardinality()) == 6
    assert len(list(mask_dataset(ds, make_layer(), seed=3, num_epochs=3))) == 6


# Scale and types.


@pytest.mark.parametrize("vocabulary_size", [2**31 - 1, 250_000, 2**24])
def test_construction_costs_o_excluded_ids(vocabulary_size):
    start = time.perf_counter()
    layer = DynamicMLMMasking(vocabulary_size, 3, special_token_ids=list(range(1000)))
    assert time.perf_counter() - start < 0.5
    ids = np.array([[vocabulary_size - 1, 5000, 7000, 9000]] * 64, np.int64)
    out = layer(ids, seed=[1, 2]).numpy()
    changed = out[out != ids]
    assert ((changed >= 1000) & (changed < vocabulary_size) | (changed == 3)).all()


def test_numpy_configuration_values_are_taken_as_python_values():
    layer = DynamicMLMMasking(np.int64(100), np.int32(3), mask_rate=np.float32(0.5),
                              special_token_ids=np.array([1, 2]), max_predictions=np.int64(4),
                              ignore_index=np.int64(-1), seed=np.int64(5))
    assert layer.get_config()["special_token_ids"] == [1, 2]
    assert type(layer.vocabulary_size) is int and type(layer.mask_rate) is float
    assert PaddingMask(pad_token_id=np.int64(0)).pad_token_id == 0
    assert CausalMask(window=np.int64(3)).window == 3
    with pytest.raises(ValueError, match="pad_token_id=1.5"):
        PaddingMask(pad_token_id=1.5)


@pytest.mark.parametrize("kwargs", [dict(), dict(selection="exact"),
                                    dict(max_predictions=2, output_mode="dict")])
def test_ragged_int32_row_splits_kept_also_with_a_tensor_training_flag(kwargs):
    ragged = tf.RaggedTensor.from_row_splits(
        tf.constant([5, 6, 7, 8, 9], tf.int32), tf.constant([0, 2, 5], tf.int32))
    layer = make_layer(**kwargs)
    for training in (True, tf.constant(True), tf.constant(False)):
        run = tf.function(lambda x, t: layer(x, training=t, seed=tf.constant([1, 2])))
        out = run(ragged, training)
        ids = out["token_ids"] if isinstance(out, dict) else out
        assert ids.row_splits.dtype == tf.int32
        np.testing.assert_array_equal(ids.row_splits, [0, 2, 5])


@pytest.mark.parametrize("token", ["new\nline", "\r", "", "tail\n"])
def test_tokenizer_refuses_tokens_a_vocabulary_file_cannot_hold(token):
    from keras_dynmask.text import WordPieceTokenizer

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", token]
    with pytest.raises(ValueError, match="line breaks"):
        WordPieceTokenizer(vocabulary)
