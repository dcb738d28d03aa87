"""granularity_options: the layer's granularity arguments and word-id input."""

import types

import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask import DynamicMLMMasking
from keras_dynmask import granularity_options


def layer_like(**overrides):
    fields = {"output_mode": "ids", "max_predictions": None, "vocabulary_size": 6}
    return types.SimpleNamespace(**{**fields, **overrides})


def test_checked_options_accept_numpy_scalars_and_quote_bad_values():
    table = [True, False, True, True, False, True]
    granularity, starts, p, longest = granularity_options.checked_options(
        layer_like(), "span", np.array(table), np.float32(0.25), np.int64(4))
    assert (granularity, starts, p, longest) == ("span", table, 0.25, 4)
    assert type(p) is float and type(longest) is int
    # An eager tensor table (e.g. from tf.constant) is taken as its values;
    # a wrong length is quoted by its shape, not printed whole.
    from_tensor = granularity_options.checked_options(
        layer_like(), "word", tf.constant(table), 0.2, 10)[1]
    assert from_tensor == table and all(type(start) is bool for start in from_tensor)
    with pytest.raises(ValueError, match=r"6 bools.*array of shape \(40,\)"):
        granularity_options.checked_options(layer_like(), "word", tf.ones([40], tf.bool), 0.2, 10)
    with pytest.raises(ValueError, match="granularity.*'sentence'"):
        granularity_options.checked_options(layer_like(), "sentence", None, 0.2, 10)
    with pytest.raises(ValueError, match="max_span_length.*0"):
        granularity_options.checked_options(layer_like(), "span", None, 0.2, 0)
    with pytest.raises(ValueError, match="max_predictions=None"):
        granularity_options.checked_options(layer_like(output_mode="masked_lm"), "word", None, 0.2, 10)


def test_options_config_round_trips_through_the_layer():
    layer = DynamicMLMMasking(vocabulary_size=6, mask_token_id=5, granularity="word",
                              word_starts=[True, False, True, True, False, True])
    config = granularity_options.options_config(layer)
    assert config == {"granularity": "word", "word_starts": layer.word_starts,
                      "span_length_p": 0.2, "max_span_length": 10}
    assert granularity_options.options_config(DynamicMLMMasking.from_config(layer.get_config())) == config


def test_word_ids_input_shapes_and_errors():
    ids = tf.constant([[1, 2, 3]])
    assert granularity_options.word_ids_input({"word_ids": ids}, ids, "token", None) is None
    assert granularity_options.word_ids_input(None, ids, "word", [True] * 6) is None
    single = granularity_options.word_ids_input({"word_ids": [0, 0, 1]}, tf.constant([1, 2, 3]), "word", None)
    assert single.shape == (1, 3)
    ragged_ids = tf.ragged.constant([[5, 6], [7]])
    ragged = granularity_options.word_ids_input(
        {"word_ids": tf.ragged.constant([[0, 1], [0]])}, ragged_ids, "span", None)
    np.testing.assert_array_equal(ragged.numpy(), [[0, 1], [0, -1]])
    # Word ids of another shape would be broadcast into words that are not
    # the input's: an error quoting both shapes.
    for word_ids, batch, quoted in [
        (tf.constant([[0], [0]]), tf.constant([[1, 2, 3]] * 2), r"\(2, 1\).*\(2, 3\)"),
        (tf.constant([[0, 0, 1]]), tf.constant([[1, 2, 3]] * 2), r"\(1, 3\).*\(2, 3\)"),
        (tf.constant([0, 0, 1]), ids, r"shape \(3,\), token_ids of shape \(1, 3\)"),
        (tf.constant([[0, 1]]), ragged_ids, "word_ids of shape .*token_ids of ragged shape"),
        (tf.ragged.constant([[0, 1], [0, 0]]), ragged_ids, r"row_lengths=\[2, 2\].*\[2, 1\]"),
    ]:
        with pytest.raises(ValueError, match=quoted):
            granularity_options.word_ids_input({"word_ids": word_ids}, batch, "word", None)
    in_graph = tf.function(
        lambda w, x: granularity_options.word_ids_input({"word_ids": w}, x, "word", None),
        input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2,
    )
    np.testing.assert_array_equal(in_graph(ids, ids), ids)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must have the shape"):
        in_graph(tf.constant([[0], [0]]), tf.constant([[1, 2, 3]] * 2))
    with pytest.raises(ValueError, match="word_starts=None and no 'word_ids'.*\\['segment_ids'\\]"):
        granularity_options.word_ids_input({"segment_ids": ids}, ids, "word", None)
    with pytest.raises(ValueError, match="float32"):
        granularity_options.word_ids_input({"word_ids": tf.zeros([1, 3])}, ids, "word", None)
