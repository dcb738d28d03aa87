"""`DynamicMLMMasking`'s granularity options: checked, serialised, applied.

The layer's `granularity`, `word_starts`, `span_length_p` and
`max_span_length` arguments, its dict input's `"word_ids"`, and the call
into `keras_dynmask.kernels.word_selection` with them.

The `word_starts` table (one bool per id: 30,522 for BERT's vocabulary) is
saved with a model's assets, as `keras.layers.StringLookup` saves an
adapted vocabulary, not in `get_config`: the config says only that a table
exists (`"word_starts_in_assets": True`), and a `.keras` file carries the
table itself in `assets/.../word_starts.npy`. It stays a NumPy constant,
not a weight: TensorFlow ops read it in `tf.data` whatever the Keras
backend, `keras.ops` fold it into a jitted JAX or PyTorch step, and a
SavedModel holds it as a graph constant (served without variables). A
weight would be carried through every JAX training step, counted among the
model's parameters, and under jit a table never loaded could not be told
from a real one. A layer made from its config alone (`from_config`,
`keras.models.clone_model`) has no table: it raises a `ValueError` saying
how to supply one rather than mask with a wrong one. Configs written before
(with the table inline) still load.
"""

import os

import numpy as np

from keras_dynmask.lazy_tensorflow import tf

from keras_dynmask import validation
from keras_dynmask.kernels import random_bits
from keras_dynmask.kernels.word_selection import select_words

GRANULARITIES = ("token", "word", "span")


def checked_options(layer, granularity, word_starts, span_length_p, max_span_length):
    """The layer's granularity arguments, validated (`ValueError` quoting them).

    Returns `(granularity, word_starts, span_length_p, max_span_length)`,
    `word_starts` as a read-only NumPy bool array or `None`. Also checks that
    `output_mode="masked_lm"` comes with `max_predictions`.
    """
    if layer.output_mode == "masked_lm" and layer.max_predictions is None:
        raise ValueError(
            '`output_mode="masked_lm"` needs `max_predictions` (the width of '
            "keras-hub's mask_positions). Received: max_predictions=None"
        )
    return (
        validation.as_choice("granularity", granularity, GRANULARITIES),
        validation.as_bool_table("word_starts", word_starts, layer.vocabulary_size),
        validation.as_float("span_length_p", span_length_p, 0, 1, low_open=True),
        validation.as_int("max_span_length", max_span_length, 1),
    )


# The config entry that says a table exists (and is saved with the assets).
IN_ASSETS = "word_starts_in_assets"
ASSET_FILE = "word_starts.npy"


def options_config(layer):
    """The granularity entries of the layer's `get_config` (never the table)."""
    return {
        "granularity": layer.granularity,
        "word_starts": None,
        IN_ASSETS: layer.word_starts is not None or layer._word_starts_awaited,
        "span_length_p": layer.span_length_p,
        "max_span_length": layer.max_span_length,
    }


def from_config(base_from_config, config):
    """A layer from `config` by `base_from_config`, told whether a table is to come from the assets.

    A config with `"word_starts_in_assets": True` and no inline table makes
    a layer that awaits its table (`load_assets`); an old config with the
    table inline gives the layer that table.
    """
    config = dict(config)
    in_assets = bool(config.pop(IN_ASSETS, False))
    layer = base_from_config(config)
    layer._word_starts_awaited = in_assets and layer.word_starts is None
    return layer


def save_table(layer, dir_path):
    """Writes the layer's table to `dir_path/word_starts.npy` (if it has one)."""
    if layer.word_starts is not None:
        with open(os.path.join(dir_path, ASSET_FILE), "wb") as file:
            np.save(file, layer.word_starts, allow_pickle=False)


def load_table(layer, dir_path):
    """The table saved by `save_table` in `dir_path`, checked; else the layer's own.

    A `.keras` file written before tables were assets has none: the layer
    keeps the table its (old) config gave it.
    """
    path = None if dir_path is None else os.path.join(dir_path, ASSET_FILE)
    if path is None or not os.path.exists(path):
        return layer.word_starts
    with open(path, "rb") as file:
        table = np.load(file, allow_pickle=False)
    return validation.as_bool_table("word_starts", table, layer.vocabulary_size, allow_none=False)


def word_ids_input(rest, token_ids, granularity, word_starts, awaited=False):
    """A dict input's `"word_ids"` shaped like the batch the kernels see.

    `[T]` ids give `[1, T]` word ids, ragged ones a dense batch padded with
    -1 (no word). `None` at `"token"` granularity or when the dict holds
    none; a `ValueError` naming both sources when neither is given (or
    saying how to supply the table a config-only copy lacks: `awaited`).
    """
    if granularity == "token":
        return None
    word_ids = (rest or {}).get("word_ids")
    if word_ids is None:
        _check_boundaries_given(granularity, word_starts, rest, awaited)
        return None
    if not isinstance(word_ids, tf.RaggedTensor):
        word_ids = tf.convert_to_tensor(word_ids)
    if not word_ids.dtype.is_integer:
        raise ValueError(
            f'"word_ids" must be integers. Received: word_ids of dtype {word_ids.dtype.name}'
        )
    word_ids = _shaped_like(word_ids, token_ids)
    if isinstance(word_ids, tf.RaggedTensor):
        return word_ids.to_tensor(default_value=-1)
    if token_ids.shape.rank == 1:
        return word_ids[None, :]
    return word_ids


def _check_boundaries_given(granularity, word_starts, rest, awaited=False):
    """A `ValueError` naming both sources when neither gives word boundaries."""
    if word_starts is None and awaited:
        raise ValueError(
            "This DynamicMLMMasking was made from its config alone (from_config, "
            "keras.models.clone_model), which does not hold the `word_starts` "
            "table: a model saves it with its assets. Load the model with "
            "keras.saving.load_model (a .keras file carries the table), or give "
            "the table again: DynamicMLMMasking.from_config({**config, "
            '"word_starts": table}), or pass a "word_ids" entry in a dict input. '
            f"Received: granularity={granularity!r}, word_starts=None"
        )
    if word_starts is None:
        raise ValueError(
            f'granularity="{granularity}" needs word boundaries: pass '
            "`word_starts` (e.g. keras_dynmask.word_starts(vocabulary, style)) "
            'to the layer, or a "word_ids" entry in a dict input. Received '
            "neither: word_starts=None and no 'word_ids' among the input's keys "
            f"{sorted(rest or {})}"
        )


def backend_word_ids(rest, token_ids, granularity, word_starts, awaited=False):
    """A dict input's `"word_ids"` as a JAX or PyTorch tensor, checked.

    Dense only, of `token_ids`' static shape (a `ValueError` quoting both
    shapes otherwise; under jit the shapes are static, so nothing is left
    to check at run time). `None` at `"token"` granularity or when the dict
    holds none; a `ValueError` naming both sources when neither is given.
    """
    import keras

    if granularity == "token":
        return None
    word_ids = (rest or {}).get("word_ids")
    if word_ids is None:
        _check_boundaries_given(granularity, word_starts, rest, awaited)
        return None
    word_ids = keras.ops.convert_to_tensor(word_ids)
    dtype = keras.backend.standardize_dtype(word_ids.dtype)
    if "int" not in dtype:
        raise ValueError(f'"word_ids" must be integers. Received: word_ids of dtype {dtype}')
    if tuple(word_ids.shape) != tuple(token_ids.shape):
        raise ValueError(
            '"word_ids" must have the shape of "token_ids". Received: word_ids '
            f"of shape {tuple(word_ids.shape)}, token_ids of shape {tuple(token_ids.shape)}"
        )
    return word_ids


def _shaped_like(word_ids, token_ids):
    """`word_ids`, checked to have `token_ids`' shape (row lengths, if ragged).

    A `ValueError` when the static shapes already differ; else a run-time
    check (dropped under XLA, where the shapes are static). Broadcasting a
    `[B, 1]` or `[1, T]` table would draw words that are not the input's.
    """
    ragged = isinstance(word_ids, tf.RaggedTensor), isinstance(token_ids, tf.RaggedTensor)
    message = '"word_ids" must have the shape of "token_ids"'
    if ragged[0] != ragged[1] or word_ids.shape.rank != token_ids.shape.rank or (
        not word_ids.shape.is_compatible_with(token_ids.shape)
    ):
        kinds = ["ragged " if r else "" for r in ragged]
        raise ValueError(
            f"{message}. Received: word_ids of {kinds[0]}shape {word_ids.shape}, "
            f"token_ids of {kinds[1]}shape {token_ids.shape}"
        )
    if random_bits.in_xla_context():
        return word_ids
    if ragged[0]:
        splits = word_ids.row_splits, tf.cast(token_ids.row_splits, word_ids.row_splits.dtype)
        same = tf.cond(
            tf.equal(tf.size(splits[0]), tf.size(splits[1])),
            lambda: tf.reduce_all(tf.equal(*splits)),
            lambda: tf.constant(False),
        )
        shapes = {
            "word_ids_row_lengths": word_ids.row_lengths(),
            "token_ids_row_lengths": token_ids.row_lengths(),
        }
    else:
        same = tf.reduce_all(tf.equal(tf.shape(word_ids), tf.shape(token_ids)))
        shapes = {"word_ids_shape": tf.shape(word_ids), "token_ids_shape": tf.shape(token_ids)}
    checks = validation.require(same, message, **shapes)
    if not checks:
        return word_ids
    with tf.control_dependencies(checks):
        if ragged[0]:
            return word_ids.with_flat_values(tf.identity(word_ids.flat_values))
        return tf.identity(word_ids)


def select_for_layer(layer, token_ids, eligible, seed, word_ids=None, mask_rate=None):
    """`select_words` with a `DynamicMLMMasking`'s configuration.

    `mask_rate`: this call's rate (a scheduled tensor), else the layer's.
    """
    table = None
    if word_ids is None:
        table = tf.constant(layer.word_starts, tf.bool)
    return select_words(
        token_ids,
        eligible,
        seed,
        layer.granularity,
        layer.selection,
        layer.mask_rate if mask_rate is None else mask_rate,
        word_starts=table,
        word_ids=word_ids,
        span_length_p=layer.span_length_p,
        max_span_length=layer.max_span_length,
        max_predictions=layer.max_predictions,
    )
