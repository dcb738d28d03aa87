"""Keras's layer conformance checks, written out, on the active backend.

What Keras's own `run_layer_test` checks of a layer, for each public layer
that runs inside models on every backend: output specs and shapes match
the outputs, `get_config` round-trips, `.keras` save/load keeps the layer,
a `build` of a subclass runs, a `Sequential` without an `Input` (float32
ids) works as with `Embedding`, and a mixed-precision policy leaves ids,
masks and weights as they are.
"""

import os

import keras
import numpy as np
import pytest

from keras_dynmask import CausalMask
from keras_dynmask import DynamicMLMMasking
from keras_dynmask import PaddingMask
from keras_dynmask import SpanCorruption

IDS = np.array([[5, 6, 7, 0], [8, 9, 0, 0], [4, 5, 6, 7]], dtype="int32")

LAYERS = {
    "padding": lambda: PaddingMask(output_mode="attention"),
    "causal": lambda: CausalMask(window=2),
    "mlm_ids": lambda: DynamicMLMMasking(10, 3, mask_rate=0.5),
    "mlm_fit": lambda: DynamicMLMMasking(10, 3, selection="exact", output_mode="fit"),
    "mlm_dict": lambda: DynamicMLMMasking(10, 3, output_mode="dict", max_predictions=2),
    "mlm_masked_lm": lambda: DynamicMLMMasking(10, 3, output_mode="masked_lm", max_predictions=2),
    "span": lambda: SpanCorruption(
        20, 0.5, num_sentinels=2, eos_id=1, inputs_length=5, targets_length=4
    ),
}


def call(layer, ids, **kwargs):
    if isinstance(layer, (DynamicMLMMasking, SpanCorruption)):
        return layer(ids, seed=[1, 2], **kwargs)
    return layer(ids)


def flat(structure):
    return keras.tree.flatten(structure)


@pytest.mark.parametrize("name", LAYERS)
def test_output_spec_and_shape_match_the_outputs(name):
    layer = LAYERS[name]()
    outputs = call(layer, keras.ops.convert_to_tensor(IDS))
    spec = layer.compute_output_spec(keras.KerasTensor(IDS.shape, dtype="int32"))
    shapes = layer.compute_output_shape(IDS.shape)
    assert len(flat(spec)) == len(flat(outputs))
    for spec_tensor, output in zip(flat(spec), flat(outputs)):
        assert tuple(spec_tensor.shape) == tuple(output.shape)
        assert spec_tensor.dtype == keras.backend.standardize_dtype(output.dtype)
    assert flat_shapes(shapes) == [tuple(output.shape) for output in flat(outputs)]


def flat_shapes(shapes):
    """The shapes of a `compute_output_shape` structure, in `flat` order."""
    if isinstance(shapes, dict):
        return [shape for key in sorted(shapes) for shape in flat_shapes(shapes[key])]
    if all(isinstance(d, int) or d is None for d in shapes):
        return [tuple(shapes)]
    return [shape for part in shapes for shape in flat_shapes(part)]


@pytest.mark.parametrize("name", LAYERS)
def test_config_round_trip_and_same_outputs(name):
    layer = LAYERS[name]()
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    ids = keras.ops.convert_to_tensor(IDS)
    for mine, theirs in zip(flat(call(layer, ids)), flat(call(clone, ids))):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs))


@pytest.mark.parametrize("name", LAYERS)
def test_keras_file_round_trip(tmp_path, name):
    ids = keras.Input((4,), dtype="int32")
    layer = LAYERS[name]()
    model = keras.Model(ids, layer(ids))
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.layers[-1].get_config() == layer.get_config()
    for mine, theirs in zip(flat(model.predict(IDS, verbose=0)), flat(restored.predict(IDS, verbose=0))):
        np.testing.assert_array_equal(mine, theirs)


def test_a_subclass_build_runs():
    class BuiltPaddingMask(PaddingMask):
        def build(self, input_shape):
            self.build_shape = tuple(input_shape)
            super().build(input_shape)

    layer = BuiltPaddingMask()
    layer(keras.ops.convert_to_tensor(IDS))
    assert layer.built and layer.build_shape == IDS.shape


@pytest.mark.parametrize("name", ["padding", "mlm_ids"])
def test_sequential_without_input_casts_float_ids(name):
    layer = LAYERS[name]()
    if name == "padding":
        model = keras.Sequential([layer, keras.layers.Flatten(), keras.layers.Dense(1)])
    else:
        model = keras.Sequential([layer, keras.layers.Embedding(10, 4), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(IDS, np.zeros((3, 1) if name == "padding" else (3, 4, 1)), verbose=0)
    assert model.predict(IDS, verbose=0).shape[0] == 3
    # Called on its own, a layer still refuses float ids.
    with pytest.raises(ValueError, match="float32"):
        layer(keras.ops.convert_to_tensor(IDS.astype("float32")))


@pytest.mark.parametrize("name", LAYERS)
def test_mixed_precision_policy_leaves_outputs_alone(name):
    layer = LAYERS[name]()
    mixed = type(layer).from_config({**layer.get_config(), "dtype": "mixed_float16"})
    ids = keras.ops.convert_to_tensor(IDS)
    for mine, theirs in zip(flat(call(layer, ids)), flat(call(mixed, ids))):
        assert keras.backend.standardize_dtype(mine.dtype) == keras.backend.standardize_dtype(theirs.dtype)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs))


@pytest.mark.parametrize(
    "module_name",
    ["keras_dynmask.padding_mask", "keras_dynmask.span_masking"],
)
def test_docstring_examples_on_this_backend(module_name):
    # What a user of this backend copies from the docstring runs and holds.
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module_name),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result
