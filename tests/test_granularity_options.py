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
    given = np.array(table)
    granularity, starts, p, longest = granularity_options.checked_options(
        layer_like(), "span", given, np.float32(0.25), np.int64(4))
    assert (granularity, starts.tolist(), p, longest) == ("span", table, 0.25, 4)
    assert type(p) is float and type(longest) is int
    # The table is a read-only copy: changing the caller's array changes nothing.
    given[0] = False
    assert starts[0] and starts.dtype == bool and not starts.flags.writeable
    # An eager tensor table (e.g. from tf.constant) is taken as its values;
    # a wrong length is quoted by its shape, not printed whole.
    from_tensor = granularity_options.checked_options(
        layer_like(), "word", tf.constant(table), 0.2, 10)[1]
    assert from_tensor.tolist() == table and from_tensor.dtype == bool
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
    # The table itself is saved with the assets; the config says it exists.
    assert config == {"granularity": "word", "word_starts": None, "word_starts_in_assets": True,
                      "span_length_p": 0.2, "max_span_length": 10}
    assert granularity_options.options_config(DynamicMLMMasking.from_config(layer.get_config())) == config
    without = DynamicMLMMasking(vocabulary_size=6, mask_token_id=5, granularity="word")
    assert granularity_options.options_config(without)["word_starts_in_assets"] is False
    assert DynamicMLMMasking.from_config(without.get_config()).get_config() == without.get_config()


def test_save_and_load_table_exactly_and_check_what_they_read(tmp_path):
    table = np.random.default_rng(0).random(30_522) < 0.7
    layer = DynamicMLMMasking(30_522, 103, granularity="word", word_starts=table)
    granularity_options.save_table(layer, str(tmp_path))
    copy = DynamicMLMMasking.from_config(layer.get_config())
    assert copy.word_starts is None
    copy.load_assets(str(tmp_path))
    np.testing.assert_array_equal(copy.word_starts, table)
    assert copy.word_starts.dtype == bool
    # No asset (a file saved before tables were assets, or a missing folder):
    # the layer keeps the table its config gave it, or awaits one.
    assert granularity_options.load_table(layer, None) is layer.word_starts
    assert granularity_options.load_table(layer, str(tmp_path / "absent")) is layer.word_starts
    # A table of another vocabulary is refused, quoting its shape.
    small = DynamicMLMMasking(6, 5, granularity="word", word_starts=[True] * 6)
    with pytest.raises(ValueError, match=r"word_starts.*6 bools.*shape \(30522,\)"):
        granularity_options.load_table(small, str(tmp_path))
    # A layer without a table writes nothing.
    empty = tmp_path / "empty"
    empty.mkdir()
    granularity_options.save_table(DynamicMLMMasking(6, 5, granularity="word"), str(empty))
    assert not list(empty.iterdir())


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
