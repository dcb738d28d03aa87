"""keras_dynmask.export: the ops a SavedModel needs, and which are not core."""

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask import CausalMask
from keras_dynmask import DenoiserMixture
from keras_dynmask import DynamicMLMMasking
from keras_dynmask import PaddingMask
from keras_dynmask import SpanCorruption
from keras_dynmask import SpecAugment
from keras_dynmask import export
from saved_model_samples import WHITESPACE_OP
from saved_model_samples import whitespace_tokenizer_export

IDS = tf.TensorSpec([None, None], tf.int32, name="token_ids")
SEED = tf.TensorSpec([2], tf.int64, name="seed")
# A word-start table over the 50 ids: every third id continues a word.
WORD_STARTS = [i % 3 != 2 for i in range(50)]
# Ops of tensorflow-text's tokenizers: registered only where it is loaded.
TEXT_OPS = ("RegexSplitWithOffsets", "NormalizeUTF8", "CaseFoldUTF8", WHITESPACE_OP)


def masking_module():
    """Every layer of the package, training-mode, behind serving signatures."""
    module = tf.Module()
    layers = {
        "bernoulli": DynamicMLMMasking(50, 4, special_token_ids=[1, 2], output_mode="dict"),
        "exact": DynamicMLMMasking(
            50, 4, selection="exact", max_predictions=3, output_mode="dict"
        ),
        "fit": DynamicMLMMasking(50, 4, output_mode="fit"),
        "word": DynamicMLMMasking(
            50, 4, granularity="word", word_starts=WORD_STARTS, output_mode="dict"
        ),
        "span": SpanCorruption(50, num_sentinels=5, eos_id=1),
        "ul2": DenoiserMixture(50, num_sentinels=5),
    }
    spec_augment = SpecAugment(2, 5, 0.5, 2, 3, mask_value="mean")
    module.layers = list(layers.values()) + [spec_augment]

    @tf.function(input_signature=[IDS, SEED])
    def mask(token_ids, seed):
        out = {}
        for name, layer in layers.items():
            result = layer(token_ids, training=True, seed=seed)
            if isinstance(result, tuple):
                result = dict(zip(("x", "y", "w"), result))
            out.update({f"{name}_{key}": value for key, value in result.items()})
        fresh = layers["bernoulli"](token_ids, training=True)
        out["fresh_ids"] = fresh["token_ids"]
        spectrogram = tf.cast(token_ids[:, :, None], tf.float32) * tf.ones([1, 1, 8])
        out["spec_augment"] = spec_augment(spectrogram, training=True, seed=seed)
        return out

    @tf.function(input_signature=[IDS])
    def attention(token_ids):
        padding = PaddingMask()(token_ids)
        segments = tf.cast(token_ids > 20, tf.int32)
        return {
            "padding": padding,
            "pairs": PaddingMask(output_mode="attention")(token_ids),
            "causal": CausalMask(window=3)(
                token_ids, padding_mask=padding, segment_ids=segments, prefix_length=2
            ),
            "backward": CausalMask(direction="backward")(token_ids),
            "frames": PaddingMask(output_mode="attention")(
                tf.cast(token_ids[:, :, None], tf.float32),
                lengths=tf.reduce_sum(tf.cast(padding, tf.int32), axis=1),
            ),
            "cross": PaddingMask(output_mode="cross")((token_ids, padding[:, :2])),
        }

    module.mask, module.attention = mask, attention
    return module


@pytest.fixture(scope="module")
def layers_export(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("layers"))
    module = masking_module()
    tf.saved_model.save(
        module, path, signatures={"mask": module.mask, "attention": module.attention}
    )
    return path


@pytest.fixture(scope="module")
def keras_export(tmp_path_factory):
    """A Keras model with the layers inside, through `model.export`."""
    ids = keras.Input((None,), dtype="int32")
    corrupted = DynamicMLMMasking(50, 4)(ids)
    mask = CausalMask()(corrupted, padding_mask=PaddingMask()(ids))
    model = keras.Model(ids, {"ids": corrupted, "attention": mask})
    path = str(tmp_path_factory.mktemp("keras") / "model")
    model.export(path, verbose=False)
    return path


@pytest.fixture(scope="module")
def tokenizer_export(tmp_path_factory):
    """A SavedModel that tokenizes with tensorflow-text."""
    return whitespace_tokenizer_export(str(tmp_path_factory.mktemp("text")))


def test_the_package_layers_need_only_core_ops(layers_export):
    ops = export.saved_model_ops(layers_export)
    # The kernels are in the export: random draws, top-k ranking, scatters.
    for op in ("StatelessRandomUniformFullIntV2", "TopKV2", "TensorScatterUpdate", "Cumsum"):
        assert op in ops
    assert export.required_ops(layers_export) == []


def test_a_keras_model_export_needs_only_core_ops(keras_export):
    assert "Placeholder" in export.saved_model_ops(keras_export)
    assert export.required_ops(keras_export) == []


def test_word_masking_loaded_from_a_keras_file_exports_with_its_table(tmp_path):
    """The table comes back from the `.keras` assets and lives on in the SavedModel as a constant."""
    layer = DynamicMLMMasking(50, 4, special_token_ids=[1, 2], granularity="span",
                              selection="exact", word_starts=WORD_STARTS, output_mode="dict")
    keras.Sequential([keras.Input((None,), dtype="int32"), layer]).save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras").layers[0]
    module = tf.Module()
    module.layer = restored
    module.mask = tf.function(
        lambda token_ids, seed: restored(token_ids, training=True, seed=seed)["mask"],
        input_signature=[IDS, SEED])
    path = str(tmp_path / "export")
    tf.saved_model.save(module, path, signatures={"mask": module.mask})
    assert export.required_ops(path) == []
    ids = np.random.default_rng(0).integers(5, 50, (16, 24)).astype("int32")
    ids[:, 0], ids[:, -3:] = 1, 0
    seed = tf.constant([3, 9], tf.int64)
    served = tf.saved_model.load(path).signatures["mask"](token_ids=tf.constant(ids), seed=seed)
    mask = list(served.values())[0].numpy()
    # A TF tensor takes the TensorFlow kernels whatever the Keras backend, as the export does.
    np.testing.assert_array_equal(mask, layer(tf.constant(ids), training=True, seed=seed)["mask"])
    # Whole words of the table: a continuing piece is selected with the piece before it.
    continuing = ~np.array(WORD_STARTS)[ids]
    continuing[:, 1] = False  # after [CLS] a piece begins a word whatever the table says
    assert mask.any() and (mask[:, 1:][continuing[:, 1:]] == mask[:, :-1][continuing[:, 1:]]).all()


def test_function_bodies_are_walked(layers_export):
    # The top-level graph only calls functions; the ops live in their bodies.
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(layers_export, "saved_model.pb"), "rb") as handle:
        proto.ParseFromString(handle.read())
    top_level = {node.op for node in proto.meta_graphs[0].graph_def.node}
    assert "TopKV2" not in top_level
    assert "TopKV2" in export.saved_model_ops(layers_export)
    functions = {f.signature.name for f in proto.meta_graphs[0].graph_def.library.function}
    assert not functions & set(export.saved_model_ops(layers_export))


def test_tokenizer_ops_are_named_even_once_this_process_registered_them(tokenizer_export):
    assert "tensorflow_text" in sys.modules  # its ops are registered here now
    required = export.required_ops(tokenizer_export)
    assert required == [WHITESPACE_OP]
    assert not set(TEXT_OPS) & export.core_ops()
    assert {"MatMul", "StatelessRandomUniformV2", "StatefulPartitionedCall"} <= export.core_ops()


def test_available_ops_stand_for_a_serving_build(tokenizer_export):
    ops = export.saved_model_ops(tokenizer_export)
    assert export.required_ops(tokenizer_export, available_ops=ops) == []
    build = [op for op in ops if op != "StringJoin"] + [WHITESPACE_OP]
    expected = ["StringJoin"] if "StringJoin" in ops else []
    assert export.required_ops(tokenizer_export, available_ops=build) == expected
    assert export.required_ops(tokenizer_export, available_ops=[]) == ops


def test_a_missing_saved_model_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="path=.*saved_model.pb"):
        export.saved_model_ops(str(tmp_path))
