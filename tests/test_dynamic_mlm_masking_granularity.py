"""`DynamicMLMMasking` at "word" and "span" granularity, and output_mode="masked_lm"."""

import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_dynmask
from distribution_bounds import normal_upper_quantile
from keras_dynmask import DynamicMLMMasking

Z = normal_upper_quantile(1e-6)
PAD, CLS, SEP, MASK = 0, 1, 2, 3
VOCABULARY = ["[PAD]", "[CLS]", "[SEP]", "[MASK]"] + [
    f"{'##' if i % 3 == 0 else ''}w{i}" for i in range(4, 120)
]
VOCAB = len(VOCABULARY)
TABLE = keras_dynmask.word_starts(VOCABULARY, "wordpiece")


def make_layer(**kwargs):
    options = dict(
        vocabulary_size=VOCAB,
        mask_token_id=MASK,
        special_token_ids=[CLS, SEP],
        granularity="word",
        word_starts=TABLE,
        seed=1,
    )
    options.update(kwargs)
    return DynamicMLMMasking(**options)


def random_ids(rows=64, length=40, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, VOCAB, (rows, length)).astype(np.int32)
    ids[:, 0] = CLS
    ids[:, length // 2] = SEP
    ids[:, -5:] = PAD
    return ids


def words_of(ids, table=TABLE):
    """Word number per token (-1: no word), from a Python walk."""
    words = np.full(ids.shape, -1)
    for b, row in enumerate(ids):
        current, inside = -1, False
        for t, token in enumerate(row):
            if token in (PAD, CLS, SEP, MASK):
                inside = False
                continue
            if table[token] or not inside:
                current += 1
            words[b, t] = current
            inside = True
    return words


def assert_whole_words(selected, words):
    selected = np.asarray(selected)
    assert not selected[words < 0].any()
    for b in range(words.shape[0]):
        for w in set(words[b][words[b] >= 0].tolist()):
            pieces = selected[b][words[b] == w]
            assert pieces.all() or not pieces.any()


@pytest.mark.parametrize("granularity", ["word", "span"])
@pytest.mark.parametrize("selection", ["bernoulli", "exact"])
def test_whole_words_labels_and_untouched_positions(granularity, selection):
    ids = random_ids()
    out = make_layer(granularity=granularity, selection=selection, output_mode="dict")(ids)
    mask = out["mask"].numpy()
    assert_whole_words(mask, words_of(ids))
    np.testing.assert_array_equal(out["labels"].numpy(), np.where(mask, ids, -100))
    np.testing.assert_array_equal(out["token_ids"].numpy()[~mask], ids[~mask])
    assert mask.any()


def test_word_ids_override_word_starts():
    ids = random_ids(8, 20)
    # Every token its own word per the table, but word_ids pair them up.
    word_ids = np.where(ids > SEP, np.arange(20)[None, :] // 2, -1)
    layer = make_layer(word_starts=np.ones(VOCAB, bool), output_mode="dict", mask_rate=0.5)
    out = layer({"token_ids": ids, "word_ids": word_ids})
    assert_whole_words(out["mask"], np.where(word_ids >= 0, word_ids, -1))
    pairs = out["mask"].numpy()[:, 2:10].reshape(8, 4, 2)
    assert (pairs[..., 0] == pairs[..., 1]).all()
    np.testing.assert_array_equal(out["word_ids"], word_ids)  # passes through
    # Without any table, word_ids alone suffice.
    layer = make_layer(word_starts=None, output_mode="dict", mask_rate=0.5)
    assert_whole_words(layer({"token_ids": ids, "word_ids": word_ids})["mask"], word_ids)


@pytest.mark.parametrize("granularity", ["word", "span"])
def test_neither_word_starts_nor_word_ids_is_a_value_error_naming_both(granularity):
    layer = make_layer(granularity=granularity, word_starts=None)
    with pytest.raises(ValueError, match="word_starts.*word_ids"):
        layer(random_ids(2, 10))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"granularity": "sentence"}, "granularity='sentence'"),
        ({"word_starts": [True, False]}, "word_starts"),
        ({"span_length_p": 0.0}, "span_length_p=0.0"),
        ({"max_span_length": 0}, "max_span_length=0"),
        ({"output_mode": "masked_lm"}, "max_predictions=None"),
    ],
)
def test_bad_granularity_arguments_raise_naming_them(kwargs, argument):
    with pytest.raises(ValueError, match=argument.replace("(", r"\(").replace("[", r"\[")):
        make_layer(**kwargs)


def test_word_bernoulli_rate_and_corruption_shares():
    ids = random_ids(400, 40)
    words = words_of(ids)
    out = make_layer(output_mode="dict", mask_rate=0.2)(ids)
    mask = out["mask"].numpy()
    firsts = (words >= 0) & (np.pad(words, [(0, 0), (1, 0)], constant_values=-1)[:, :-1] != words)
    n, hits = firsts.sum(), mask[firsts].sum()
    assert abs(hits - 0.2 * n) < Z * math.sqrt(n * 0.2 * 0.8)
    # 80/10/10 per selected token, random replacement included.
    corrupted = out["token_ids"].numpy()[mask]
    original = ids[mask]
    m = mask.sum()
    for share, count in (
        (0.8, (corrupted == MASK).sum()),
        (0.1 + 0.1 / (VOCAB - 4), (corrupted == original).sum()),
    ):
        assert abs(count - share * m) < Z * math.sqrt(m * share * (1 - share))
    randomised = (corrupted != MASK) & (corrupted != original)
    assert randomised.sum() > 0 and (corrupted[randomised] > SEP).all()


@pytest.mark.parametrize("granularity", ["word", "span"])
def test_max_predictions_caps_without_cutting_words(granularity):
    ids = random_ids(32, 60)
    out = make_layer(granularity=granularity, output_mode="dict", mask_rate=0.4, max_predictions=6)(ids)
    mask = out["mask"].numpy()
    assert (mask.sum(1) <= 6).all()
    assert_whole_words(mask, words_of(ids))
    np.testing.assert_array_equal(out["mask_weights"].numpy().sum(1), mask.sum(1))
    positions = out["mask_positions"].numpy()
    for b in range(32):
        np.testing.assert_array_equal(positions[b, : mask[b].sum()], np.nonzero(mask[b])[0])


def test_ranks_ragged_and_seeds():
    layer = make_layer(granularity="span", output_mode="dict")
    ids = random_ids(4, 30)
    seed = tf.constant([3, 4])
    a, b = layer(ids, seed=seed), layer(ids, seed=seed)
    np.testing.assert_array_equal(a["mask"], b["mask"])
    single = layer(ids[0], seed=seed)["mask"].numpy()
    assert single.shape == (30,)
    assert_whole_words(single[None], words_of(ids[:1]))
    ragged = tf.ragged.constant([ids[0, :12].tolist(), ids[1, :25].tolist()])
    out = layer(ragged)
    assert isinstance(out["mask"], tf.RaggedTensor)
    np.testing.assert_array_equal(out["mask"].row_lengths(), [12, 25])
    assert not layer(ids, training=False)["mask"].numpy().any()


def test_tf_data_map_and_get_config_round_trip():
    layer = make_layer(granularity="span", span_length_p=0.3, max_span_length=4, selection="exact")
    config = layer.get_config()
    json.dumps(config)
    # The table is saved with a model's assets, not in the config: given
    # again, the copy masks as the layer does.
    assert config["word_starts"] is None and config["word_starts_in_assets"] is True
    clone = DynamicMLMMasking.from_config({**config, "word_starts": TABLE})
    assert clone.get_config() == config
    ids = random_ids(8, 30)
    seed = tf.constant([5, 6])
    np.testing.assert_array_equal(layer(ids, seed=seed), clone(ids, seed=seed))
    ds = tf.data.Dataset.from_tensor_slices(ids).batch(4).map(layer)
    for batch in ds:
        assert batch.shape == (4, 30)


BERT_VOCABULARY_SIZE = 30_522
OLD_FILE = os.path.join(os.path.dirname(__file__), "data", "word_masking_saved_before_assets.keras")
# `get_config()` of a word-masking layer before tables moved to the assets
# (the table inline), as that code wrote it; and its table.
OLD_TABLE = [True, True, True, True, True, False, True, False, False, True, True, False]
OLD_CONFIG = {
    "name": "word_masking", "trainable": True,
    "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
              "registered_name": None},
    "vocabulary_size": 12, "mask_token_id": 3, "mask_rate": 0.3, "mask_token_rate": 0.8,
    "random_token_rate": 0.1, "special_token_ids": [1, 2], "pad_token_id": 0, "selection": "exact",
    "max_predictions": None, "output_mode": "ids", "ignore_index": -100, "seed": 5,
    "granularity": "word", "word_starts": OLD_TABLE, "span_length_p": 0.2, "max_span_length": 10,
}


def test_a_vocabulary_sized_table_stays_out_of_the_config():
    table = np.random.default_rng(1).random(BERT_VOCABULARY_SIZE) < 0.8
    layer = DynamicMLMMasking(BERT_VOCABULARY_SIZE, 103, special_token_ids=[101, 102],
                              granularity="word", word_starts=table)
    size = len(json.dumps(layer.get_config()))
    assert size < 1000, size  # the table inline made it about 204 KB


def test_a_copy_from_the_config_alone_says_how_to_get_its_table():
    """`from_config` and `clone_model` carry no table: a clear error, never a wrong mask."""
    layer = make_layer(output_mode="dict")
    copy = DynamicMLMMasking.from_config(layer.get_config())
    assert copy.word_starts is None and copy.get_config() == layer.get_config()
    ids = random_ids(4, 20)
    with pytest.raises(ValueError, match="config alone.*load_model.*word_starts\": table"):
        copy(ids)
    with pytest.raises(ValueError, match="config alone"):
        tf.data.Dataset.from_tensor_slices(ids).batch(2).map(copy)
    model = keras.Sequential([keras.Input((20,), dtype="int32"), layer])
    clone = keras.models.clone_model(model)
    with pytest.raises(ValueError, match="config alone"):
        clone.layers[0](ids)
    # Its word_ids still give the boundaries, as for a layer built without a table.
    word_ids = words_of(ids)
    out = copy({"token_ids": ids, "word_ids": word_ids}, seed=tf.constant([1, 2]))
    assert_whole_words(out["mask"], word_ids)


def test_keras_file_carries_the_table_exactly(tmp_path):
    table = np.random.default_rng(2).random(VOCAB) < 0.6
    table[:4] = True
    layer = make_layer(word_starts=table, output_mode="dict")
    model = keras.Sequential([keras.Input((30,), dtype="int32"), layer])
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path).layers[0]
    assert restored.word_starts.dtype == bool
    np.testing.assert_array_equal(restored.word_starts, table)
    ids, seed = random_ids(8, 30), tf.constant([3, 4])
    np.testing.assert_array_equal(restored(ids, seed=seed)["mask"], layer(ids, seed=seed)["mask"])
    # Saved again, the restored model still carries it.
    keras.Sequential([keras.Input((30,), dtype="int32"), restored]).save(tmp_path / "again.keras")
    again = keras.saving.load_model(tmp_path / "again.keras").layers[0]
    np.testing.assert_array_equal(again.word_starts, table)


def test_old_configs_and_keras_files_with_the_table_inline_still_load(tmp_path):
    layer = DynamicMLMMasking.from_config(OLD_CONFIG)
    np.testing.assert_array_equal(layer.word_starts, OLD_TABLE)
    now = layer.get_config()
    assert now["word_starts"] is None and now["word_starts_in_assets"] is True
    assert {k: v for k, v in now.items() if not k.startswith("word_starts")} == {
        k: v for k, v in OLD_CONFIG.items() if k != "word_starts"}
    rng = np.random.default_rng(3)
    ids = rng.integers(4, 12, (16, 10)).astype("int32")
    ids[:, 0] = 1
    seed = tf.constant([7, 8])
    built_today = DynamicMLMMasking(**{**OLD_CONFIG, "name": "today", "dtype": "float32"})
    np.testing.assert_array_equal(layer(ids, seed=seed), built_today(ids, seed=seed))
    # A .keras file written by the old code (config with the table, no assets).
    restored = keras.saving.load_model(OLD_FILE).layers[0]
    np.testing.assert_array_equal(restored.word_starts, OLD_TABLE)
    np.testing.assert_array_equal(restored(ids, seed=seed), built_today(ids, seed=seed))


def test_model_graph_keras_file_and_export(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            make_layer(granularity="span", max_predictions=8),
            keras.layers.Embedding(VOCAB, 8),
            keras.layers.Dense(VOCAB),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ids = random_ids(16, 20)
    model.fit(ids, ids, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.layers[0].get_config() == model.layers[0].get_config()
    np.testing.assert_allclose(restored.predict(ids, verbose=0), model.predict(ids, verbose=0))
    model.export(str(tmp_path / "export"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    served = loaded.serve(tf.constant(ids))
    np.testing.assert_allclose(served, model.predict(ids, verbose=0), rtol=1e-5)


@pytest.mark.parametrize("granularity", ["word", "span"])
def test_runs_under_xla(granularity):
    layer = make_layer(granularity=granularity, output_mode="dict", max_predictions=8)
    ids = tf.constant(random_ids(16, 40))
    compiled = tf.function(lambda x, s: layer(x, seed=s), jit_compile=True)
    out = compiled(ids, tf.constant([1, 2]))
    assert_whole_words(out["mask"], words_of(ids.numpy()))
    assert (out["mask"].numpy().sum(1) <= 8).all()


@pytest.mark.parametrize(
    "granularity, selection, max_predictions",
    [("word", "bernoulli", None), ("word", "bernoulli", 6), ("word", "exact", None),
     ("word", "exact", 6), ("span", "exact", 6)],
)
def test_a_call_seed_selects_the_same_words_whatever_is_known_of_the_length(
    granularity, selection, max_predictions
):
    # A pure function of (inputs, seed): eager, a graph of unknown length (a
    # `keras.Input((None,))` model, a SavedModel signature) and XLA agree.
    layer = make_layer(granularity=granularity, selection=selection, mask_rate=0.3,
                       max_predictions=max_predictions, output_mode="dict")
    ids, seed = tf.constant(random_ids(8, 40)), tf.constant([3, 5])
    signature = [tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([2], tf.int32)]
    eager = layer(ids, seed=seed)["mask"].numpy()
    assert eager.any()
    for jit_compile in (False, True):
        unknown_length = tf.function(
            lambda x, s: layer(x, seed=s)["mask"], input_signature=signature,
            jit_compile=jit_compile,
        )
        np.testing.assert_array_equal(unknown_length(ids, seed), eager)
    known_length = tf.function(lambda x, s: layer(x, seed=s)["mask"])
    np.testing.assert_array_equal(known_length(ids, seed), eager)


def test_masked_lm_triple():
    ids = random_ids(4, 20)
    segments = np.zeros_like(ids)
    segments[:, 10:] = 1
    layer = make_layer(output_mode="masked_lm", max_predictions=5, mask_rate=0.3)
    x, y, weights = layer({"token_ids": ids, "segment_ids": segments})
    assert sorted(x) == ["mask_positions", "padding_mask", "segment_ids", "token_ids"]
    np.testing.assert_array_equal(x["padding_mask"], ids != PAD)
    np.testing.assert_array_equal(x["segment_ids"], segments)
    positions = x["mask_positions"].numpy()
    np.testing.assert_array_equal(y, np.take_along_axis(ids, positions, 1) * weights.numpy())
    assert weights.shape == (4, 5) and weights.dtype == tf.float32
    x, _, _ = layer(ids)
    np.testing.assert_array_equal(x["segment_ids"], np.zeros_like(ids))
    unmasked_x, _, unmasked_w = layer(ids, training=False)
    np.testing.assert_array_equal(unmasked_x["token_ids"], ids)
    assert not unmasked_w.numpy().any()


def test_keras_hub_bert_masked_lm_learns_from_masked_lm_output():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB, num_layers=1, num_heads=2, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=24,
    )
    model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[],
    )
    # A learnable corpus: each row repeats one short phrase.
    rng = np.random.default_rng(0)
    phrases = rng.integers(4, VOCAB, (8, 4))
    ids = np.tile(phrases[rng.integers(0, 8, 256)], (1, 6)).astype(np.int32)
    ids[:, 0] = CLS
    layer = make_layer(output_mode="masked_lm", max_predictions=6, mask_rate=0.2, seed=None)
    ds = tf.data.Dataset.from_tensor_slices(ids).batch(32).map(layer).repeat()
    history = model.fit(ds, steps_per_epoch=16, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses
