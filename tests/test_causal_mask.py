"""Tests for `keras_dynmask.CausalMask`.

The reference below is written from the rules in DESIGN.md, one (query, key)
pair at a time; hypothesis compares the layer with it over random shapes,
input kinds and combinations of options. Attention through
`keras.layers.MultiHeadAttention` checks the masks mean what Keras means.
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_dynmask import CausalMask
from keras_dynmask import PaddingMask


def reference_causal_mask(
    batch_size,
    length,
    direction="forward",
    window=None,
    prefix_length=None,
    segment_ids=None,
    padding_mask=None,
):
    """True where query `i` may attend key `j`, from the definitions."""
    prefix = np.broadcast_to(0 if prefix_length is None else prefix_length, [batch_size])
    mask = np.zeros((batch_size, length, length), dtype=bool)
    for b in range(batch_size):
        for i in range(length):  # query
            for j in range(length):  # key
                allowed = j <= i if direction == "forward" else j >= i
                if window is not None and abs(i - j) >= window:
                    allowed = False
                if i < prefix[b] and j < prefix[b]:
                    allowed = True
                if segment_ids is not None and segment_ids[b, i] != segment_ids[b, j]:
                    allowed = False
                if padding_mask is not None:
                    if not padding_mask[b, i]:
                        allowed = i == j
                    elif not padding_mask[b, j]:
                        allowed = False
                mask[b, i, j] = allowed
    return mask


def test_reference_on_a_hand_written_case():
    # Forward, window 2, prefix 2, two segments, last position padded.
    expected = np.array(
        [
            [1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 1, 1, 0, 0],
            [0, 0, 0, 1, 0],
            [0, 0, 0, 0, 1],
        ],
        dtype=bool,
    )
    got = reference_causal_mask(
        1,
        5,
        window=2,
        prefix_length=2,
        segment_ids=np.array([[0, 0, 0, 1, 1]]),
        padding_mask=np.array([[1, 1, 1, 1, 0]], dtype=bool),
    )
    np.testing.assert_array_equal(got[0], expected)


# Random problems: shapes, input kinds and every option on or off.

INPUT_KINDS = ("ids", "hidden", "numpy", "ragged_ids", "ragged_hidden")


@st.composite
def causal_problems(draw):
    batch_size = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(INPUT_KINDS))
    if kind.startswith("ragged"):
        row_lengths = draw(
            st.lists(st.integers(0, 7), min_size=batch_size, max_size=batch_size)
        )
        length = max(row_lengths)
    else:
        length = draw(st.integers(0, 7))
        row_lengths = [length] * batch_size
    direction = draw(st.sampled_from(["forward", "backward"]))
    window = draw(st.none() | st.integers(1, length + 2))
    prefix_length = None
    if direction == "forward":
        prefix_length = draw(
            st.none()
            | st.integers(0, length + 1)
            | hnp.arrays(np.int32, (batch_size,), elements=st.integers(0, length + 1))
        )
    segment_ids = draw(
        st.none()
        | hnp.arrays(np.int32, (batch_size, length), elements=st.integers(0, 2))
    )
    padding_mask = draw(st.none() | hnp.arrays(np.bool_, (batch_size, length)))
    if padding_mask is not None and draw(st.booleans()):
        padding_mask = padding_mask.astype(np.int32)  # 0/1 numbers work too
    return dict(
        batch_size=batch_size,
        length=length,
        row_lengths=row_lengths,
        kind=kind,
        direction=direction,
        window=window,
        prefix_length=prefix_length,
        segment_ids=segment_ids,
        padding_mask=padding_mask,
    )


def make_inputs(kind, row_lengths, length, hidden_size=3):
    rng = np.random.default_rng(len(row_lengths) * 100 + length)
    if kind.startswith("ragged"):
        rows = [rng.integers(1, 9, size=n).astype(np.int32) for n in row_lengths]
        if kind == "ragged_hidden":
            rows = [rng.normal(size=(n, hidden_size)).astype(np.float32) for n in row_lengths]
            return tf.ragged.constant(rows, ragged_rank=1, inner_shape=(hidden_size,))
        return tf.ragged.constant(rows, dtype=tf.int32)
    ids = rng.integers(1, 9, size=(len(row_lengths), length)).astype(np.int32)
    if kind == "numpy":
        return ids
    if kind == "hidden":
        return tf.random.normal((len(row_lengths), length, hidden_size))
    return tf.constant(ids)


def expected_mask(problem):
    """The reference mask, with the padding a ragged input implies."""
    b, t = problem["batch_size"], problem["length"]
    real = None
    if problem["padding_mask"] is not None:
        real = problem["padding_mask"].astype(bool)
    if problem["kind"].startswith("ragged"):
        inside_rows = np.arange(t)[None, :] < np.array(problem["row_lengths"])[:, None]
        real = inside_rows if real is None else real & inside_rows
    return reference_causal_mask(
        b,
        t,
        direction=problem["direction"],
        window=problem["window"],
        prefix_length=problem["prefix_length"],
        segment_ids=problem["segment_ids"],
        padding_mask=real,
    )


@settings(max_examples=200, deadline=None)
@given(causal_problems())
def test_matches_reference(problem):
    inputs = make_inputs(problem["kind"], problem["row_lengths"], problem["length"])
    layer = CausalMask(direction=problem["direction"], window=problem["window"])
    mask = layer(
        inputs,
        padding_mask=problem["padding_mask"],
        segment_ids=problem["segment_ids"],
        prefix_length=problem["prefix_length"],
    )
    b, t = problem["batch_size"], problem["length"]
    assert mask.dtype == tf.bool
    assert tuple(mask.shape) == (b, t, t)
    np.testing.assert_array_equal(mask.numpy(), expected_mask(problem))
    # No empty rows, whatever the options: every query sees at least itself.
    assert mask.numpy().any(axis=-1).all()
    assert np.diagonal(mask.numpy(), axis1=1, axis2=2).all()


# One graph with `None` batch and length, as in a SavedModel, traced once;
# and the same graph under XLA.

GRAPH_SIGNATURE = [
    tf.TensorSpec([None, None], tf.int32, name="token_ids"),
    tf.TensorSpec([None, None], tf.bool, name="padding_mask"),
    tf.TensorSpec([None, None], tf.int32, name="segment_ids"),
    tf.TensorSpec([None], tf.int32, name="prefix_length"),
]


def _masks_in_graph(token_ids, padding_mask, segment_ids, prefix_length):
    return (
        CausalMask()(
            token_ids,
            padding_mask=padding_mask,
            segment_ids=segment_ids,
            prefix_length=prefix_length,
        ),
        CausalMask(direction="backward", window=3)(
            token_ids, padding_mask=padding_mask, segment_ids=segment_ids
        ),
    )


masks_in_graph = tf.function(_masks_in_graph, input_signature=GRAPH_SIGNATURE)
masks_in_xla = tf.function(_masks_in_graph, input_signature=GRAPH_SIGNATURE, jit_compile=True)


@st.composite
def graph_problems(draw):
    b = draw(st.integers(1, 3))
    t = draw(st.integers(0, 7))
    return (
        np.ones((b, t), np.int32),
        draw(hnp.arrays(np.bool_, (b, t))),
        draw(hnp.arrays(np.int32, (b, t), elements=st.integers(0, 1))),
        draw(hnp.arrays(np.int32, (b,), elements=st.integers(0, t + 1))),
    )


def _check_graph_outputs(outputs, problem):
    _, padding, segments, prefix = problem
    b, t = padding.shape
    forward, backward = outputs
    np.testing.assert_array_equal(
        forward.numpy(),
        reference_causal_mask(
            b, t, prefix_length=prefix, segment_ids=segments, padding_mask=padding
        ),
    )
    np.testing.assert_array_equal(
        backward.numpy(),
        reference_causal_mask(
            b, t, "backward", window=3, segment_ids=segments, padding_mask=padding
        ),
    )


@settings(max_examples=60, deadline=None)
@given(graph_problems())
def test_graph_with_unknown_shapes_matches_reference(problem):
    _check_graph_outputs(masks_in_graph(*problem), problem)


@settings(max_examples=15, deadline=None)
@given(graph_problems())
def test_xla_matches_reference(problem):
    _check_graph_outputs(masks_in_xla(*problem), problem)


def test_graph_output_has_static_shape_where_known():
    @tf.function(input_signature=[tf.TensorSpec([4, None, 8])])
    def mask(hidden):
        result = CausalMask()(hidden)
        assert result.shape.as_list() == [4, None, None]
        return result

    assert mask(tf.zeros([4, 5, 8])).shape == (4, 5, 5)


def test_ragged_padding_mask_and_segment_ids():
    # Ragged arguments are padded to the inputs' length; past a row's end
    # counts as padding.
    ids = tf.constant([[3, 4, 5, 6], [7, 8, 9, 1]])
    segment_ids = tf.ragged.constant([[1, 1, 2, 2], [1, 1, 1]])
    padding_mask = tf.ragged.constant([[True, True, True], [True, True, True, True]])
    mask = CausalMask()(ids, padding_mask=padding_mask, segment_ids=segment_ids)
    real = np.array([[1, 1, 1, 0], [1, 1, 1, 0]], dtype=bool)
    dense_segments = np.array([[1, 1, 2, 2], [1, 1, 1, 0]])
    np.testing.assert_array_equal(
        mask.numpy(),
        reference_causal_mask(2, 4, segment_ids=dense_segments, padding_mask=real),
    )


def test_scalar_tensor_prefix_length_applies_to_every_sequence():
    ids = np.ones((3, 6), np.int32)
    mask = CausalMask()(ids, prefix_length=tf.constant(4, tf.int64))
    np.testing.assert_array_equal(mask.numpy(), reference_causal_mask(3, 6, prefix_length=4))


# Attention through keras.layers.MultiHeadAttention.


def _attention(num_heads=2, key_dim=4, **kwargs):
    return keras.layers.MultiHeadAttention(num_heads, key_dim, seed=0, **kwargs)


def _hidden(batch_size, length, size=8, seed=0):
    return tf.random.stateless_normal((batch_size, length, size), seed=[seed, 1])


@pytest.mark.parametrize("length", [1, 6, 17])
def test_attention_equals_keras_causal_mask(length):
    x = _hidden(2, length)
    attention = _attention()
    expected = attention(x, x, use_causal_mask=True)
    got = attention(x, x, attention_mask=CausalMask()(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# Keras's MultiHeadAttention takes `sliding_window` from Keras 3.15 on; on
# older releases (`make test-oldest`) there is nothing to compare with.
@pytest.mark.skipif(
    "sliding_window" not in inspect.signature(keras.layers.MultiHeadAttention).parameters,
    reason="this Keras's MultiHeadAttention has no sliding_window",
)
@pytest.mark.parametrize("window", [1, 2, 5])
def test_window_equals_keras_sliding_window(window):
    x = _hidden(2, 9)
    keras_windowed = _attention(sliding_window=window)
    expected = keras_windowed(x, x, use_causal_mask=True)
    ours = _attention()
    ours(x, x)
    ours.set_weights(keras_windowed.get_weights())
    got = ours(x, x, attention_mask=CausalMask(window=window)(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_backward_is_forward_on_the_reversed_sequence():
    # Attention has no notion of order but the mask: looking ahead in x is
    # looking back in x reversed.
    x = _hidden(2, 7)
    attention = _attention()
    reversed_x = tf.reverse(x, axis=[1])
    expected = tf.reverse(attention(reversed_x, reversed_x, use_causal_mask=True), axis=[1])
    got = attention(x, x, attention_mask=CausalMask(direction="backward")(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_padding_equals_keras_padding_at_real_queries():
    ids = np.array([[4, 5, 6, 7, 0, 0], [8, 9, 0, 0, 0, 0]], np.int32)
    embedding = keras.layers.Embedding(12, 8, mask_zero=True)
    attention = _attention()
    x = embedding(ids)
    assert getattr(x, "_keras_mask", None) is not None  # Keras's mask of ids != 0
    expected = attention(x, x, use_causal_mask=True)
    plain = tf.identity(x)  # the same values, without Keras's mask
    assert getattr(plain, "_keras_mask", None) is None
    mask = CausalMask()(plain, padding_mask=PaddingMask()(ids))
    got = attention(plain, plain, attention_mask=mask)
    real = ids != 0
    # Keras leaves a padded query's row empty; ours attends itself. Both only
    # differ where the output is padding anyway.
    np.testing.assert_allclose(got.numpy()[real], expected.numpy()[real], rtol=1e-5, atol=1e-5)


def test_packed_segments_equal_separate_sequences():
    # Two sequences packed into one row, then padding: each segment's output
    # is what attention gives that sequence on its own.
    first, second = _hidden(1, 3, seed=1), _hidden(1, 4, seed=2)
    padding = tf.zeros((1, 2, 8))
    packed = tf.concat([first, second, padding], axis=1)
    segment_ids = np.array([[0, 0, 0, 1, 1, 1, 1, 2, 2]])
    padding_mask = np.array([[1, 1, 1, 1, 1, 1, 1, 0, 0]], bool)
    attention = _attention()
    mask = CausalMask()(packed, segment_ids=segment_ids, padding_mask=padding_mask)
    got = attention(packed, packed, attention_mask=mask).numpy()
    alone_first = attention(first, first, use_causal_mask=True).numpy()
    alone_second = attention(second, second, use_causal_mask=True).numpy()
    np.testing.assert_allclose(got[:, :3], alone_first, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[:, 3:7], alone_second, rtol=1e-5, atol=1e-5)


def test_prefix_lm_is_bidirectional_on_the_prefix_then_causal():
    x = _hidden(1, 8)
    attention = _attention()
    got = attention(x, x, attention_mask=CausalMask()(x, prefix_length=3)).numpy()
    prefix = x[:, :3]
    bidirectional_prefix = attention(prefix, prefix).numpy()
    causal = attention(x, x, use_causal_mask=True).numpy()
    np.testing.assert_allclose(got[:, :3], bidirectional_prefix, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[:, 3:], causal[:, 3:], rtol=1e-5, atol=1e-5)


# No empty rows.


def test_fully_padded_sequence_has_no_empty_rows():
    ids = np.array([[0, 0, 0, 0], [3, 4, 0, 0]], np.int32)
    padding_mask = PaddingMask()(ids)
    for layer in (CausalMask(), CausalMask(direction="backward", window=2)):
        mask = layer(ids, padding_mask=padding_mask, segment_ids=np.zeros_like(ids))
        np.testing.assert_array_equal(mask.numpy()[0], np.eye(4, dtype=bool))
        assert mask.numpy().any(axis=-1).all()


def test_attention_stays_finite_for_fully_padded_sequence():
    ids = np.zeros((2, 5), np.int32)
    ids[1, :2] = [3, 4]
    x = _hidden(2, 5)
    mask = CausalMask()(x, padding_mask=PaddingMask()(ids))
    assert np.isfinite(_attention()(x, x, attention_mask=mask).numpy()).all()
    # Also with -inf masking, where an empty row would give NaN.
    logits = tf.random.stateless_normal((2, 5, 5), seed=[3, 4])
    weights = tf.nn.softmax(tf.where(mask, logits, -np.inf), axis=-1)
    assert np.isfinite(weights.numpy()).all()


# In tf.data, in a model, in a SavedModel.


def test_in_tf_data_pipeline():
    ids = tf.ragged.constant([[5, 6, 7], [8], [9, 9], [4, 4, 4, 4]])
    dataset = (
        tf.data.Dataset.from_tensor_slices(ids)
        .ragged_batch(2)
        .map(lambda batch: CausalMask()(batch, prefix_length=1))
    )
    masks = list(dataset)
    lengths = [[3, 1], [2, 4]]
    for mask, row_lengths in zip(masks, lengths):
        t = max(row_lengths)
        real = np.arange(t)[None, :] < np.array(row_lengths)[:, None]
        np.testing.assert_array_equal(
            mask.numpy(), reference_causal_mask(2, t, prefix_length=1, padding_mask=real)
        )


def test_config_round_trip():
    layer = CausalMask(direction="backward", window=4, name="look_ahead")
    config = layer.get_config()
    assert config["direction"] == "backward" and config["window"] == 4
    clone = CausalMask.from_config(config)
    assert (clone.direction, clone.window, clone.name) == ("backward", 4, "look_ahead")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, CausalMask) and restored.window == 4


def test_symbolic_output_spec():
    hidden = keras.Input(shape=(None, 16))
    ids = keras.Input(shape=(None,), dtype="int32")
    out = CausalMask()(hidden, padding_mask=PaddingMask()(ids), segment_ids=ids)
    assert out.shape == (None, None, None) and out.dtype == "bool"
    fixed = keras.Input(shape=(5,), dtype="int32", batch_size=2)
    assert CausalMask()(fixed).shape == (2, 5, 5)


VOCABULARY_SIZE = 13
LENGTHS = (1, 4, 9, 16)


def _decoder_batch(rng, batch_size, length):
    """Sequences that count up (mod the vocabulary, skipping 0), padded with 0."""
    starts = rng.integers(1, VOCABULARY_SIZE, size=(batch_size, 1))
    ids = (starts + np.arange(length)[None, :] - 1) % (VOCABULARY_SIZE - 1) + 1
    row_lengths = rng.integers(1, length + 1, size=batch_size)
    ids[np.arange(length)[None, :] >= row_lengths[:, None]] = 0
    return ids.astype(np.int32)


def _build_decoder():
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    padding_mask = PaddingMask()(token_ids)
    attention_mask = CausalMask()(token_ids, padding_mask=padding_mask)
    x = keras.layers.Embedding(VOCABULARY_SIZE, 16)(token_ids)
    x = keras.layers.MultiHeadAttention(2, 8, seed=0)(x, x, attention_mask=attention_mask)
    logits = keras.layers.Dense(VOCABULARY_SIZE)(x)
    return keras.Model(token_ids, logits)


def _compile(model, jit_compile=False):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )


@pytest.fixture(scope="module")
def trained_decoder():
    keras.utils.set_random_seed(7)
    model = _build_decoder()
    _compile(model)
    rng = np.random.default_rng(0)
    ids = _decoder_batch(rng, 256, 12)
    x, y = ids[:, :-1], ids[:, 1:]
    weights = (y != 0).astype("float32")
    history = model.fit(x, y, sample_weight=weights, epochs=4, batch_size=32, verbose=0)
    probes = {length: _decoder_batch(rng, 3, length) for length in LENGTHS}
    return model, history.history["loss"], probes


def test_decoder_trains(trained_decoder):
    _, losses, _ = trained_decoder
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0]


def test_decoder_keras_round_trip(trained_decoder, tmp_path):
    model, _, probes = trained_decoder
    path = tmp_path / "decoder.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    kinds = {type(layer) for layer in loaded.layers}
    assert PaddingMask in kinds and CausalMask in kinds
    for ids in probes.values():
        np.testing.assert_allclose(
            loaded.predict(ids, verbose=0), model.predict(ids, verbose=0), rtol=1e-5, atol=1e-5
        )


def test_decoder_jit_compile_same_outputs(trained_decoder):
    model, _, probes = trained_decoder
    compiled = keras.models.clone_model(model)
    compiled.set_weights(model.get_weights())
    _compile(compiled, jit_compile=True)
    assert compiled.jit_compile is True
    for ids in probes.values():
        np.testing.assert_allclose(
            compiled.predict(ids, verbose=0), model.predict(ids, verbose=0), rtol=1e-4, atol=1e-4
        )
    # And it trains under XLA.
    ids = probes[9]
    x, y = ids[:, :-1], ids[:, 1:]
    loss = compiled.train_on_batch(x, y, sample_weight=(y != 0).astype("float32"))
    assert np.isfinite(loss)


# Runs in the `plain_tensorflow` process (`no_keras_dynmask_python`): the
# package cannot be imported there.
SERVE_WITHOUT_PACKAGE = """
    import numpy as np
    import tensorflow as tf

    export_dir, inputs_path, outputs_path = {paths!r}
    served = tf.saved_model.load(export_dir)
    inputs = np.load(inputs_path)
    outputs = {{key: served.serve(tf.constant(inputs[key])).numpy() for key in inputs.files}}
    np.savez(outputs_path, **outputs)
"""


def test_decoder_export_serves_without_the_package(
    trained_decoder, tmp_path, no_keras_dynmask_python
):
    model, _, probes = trained_decoder
    export_dir = tmp_path / "decoder_savedmodel"
    model.export(str(export_dir), verbose=False)
    inputs = {f"length_{length}": ids for length, ids in probes.items()}
    # A different batch size too.
    inputs["batch_5"] = _decoder_batch(np.random.default_rng(1), 5, 6)
    np.savez(tmp_path / "inputs.npz", **inputs)
    paths = [str(export_dir), str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz")]
    no_keras_dynmask_python(SERVE_WITHOUT_PACKAGE.format(paths=paths))
    served = np.load(tmp_path / "outputs.npz")
    for key, ids in inputs.items():
        expected = model.predict(ids, verbose=0)
        assert served[key].shape == expected.shape
        np.testing.assert_allclose(served[key], expected, rtol=1e-5, atol=1e-5)


# Errors.


@pytest.mark.parametrize(
    "kwargs, quoted",
    [
        (dict(direction="sideways"), "direction='sideways'"),
        (dict(direction=None), "direction=None"),
        (dict(window=0), "window=0"),
        (dict(window=-3), "window=-3"),
        (dict(window=2.5), "window=2.5"),
        (dict(window=True), "window=True"),
    ],
)
def test_bad_configuration_raises(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted.replace("(", r"\(")):
        CausalMask(**kwargs)


IDS = np.ones((2, 5), np.int32)


@pytest.mark.parametrize(
    "call_kwargs, quoted",
    [
        (dict(segment_ids=np.zeros((2, 4), np.int32)), r"segment_ids of shape \[2, 4\]"),
        (dict(segment_ids=np.zeros((3, 5), np.int32)), r"segment_ids of shape \[3, 5\]"),
        (dict(segment_ids=np.zeros((2, 5, 1), np.int32)), r"segment_ids of shape \[2, 5, 1\]"),
        (dict(segment_ids=np.zeros((2, 5), np.float32)), "segment_ids of dtype float32"),
        (dict(padding_mask=np.ones((2, 6), bool)), r"padding_mask of shape \[2, 6\]"),
        (dict(padding_mask=np.ones((5,), bool)), r"padding_mask of shape \[5\]"),
        (dict(prefix_length=np.array([1, 2, 3])), r"prefix_length of shape \[3\]"),
        (dict(prefix_length=np.ones((2, 1), np.int32)), r"prefix_length of shape \[2, 1\]"),
        (dict(prefix_length=-1), "prefix_length=-1"),
        (dict(prefix_length=np.array([2, -1])), r"prefix_length=\[2, -1\]"),
        (dict(prefix_length=np.array([1.5, 2.0])), "prefix_length"),
        (
            dict(segment_ids=tf.ragged.constant([[1, 1], [1], [1]])),
            r"segment_ids of shape \[3, None\]",
        ),
        (dict(segment_ids=tf.ragged.constant([[1] * 6, [1]])), "longest_row=6"),
    ],
)
def test_mismatched_arguments_raise(call_kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        CausalMask()(IDS, **call_kwargs)


def test_prefix_length_needs_forward():
    with pytest.raises(ValueError, match="direction='backward'"):
        CausalMask(direction="backward")(IDS, prefix_length=2)


@pytest.mark.parametrize("shape", [(5,), (2, 5, 3, 1)])
def test_bad_input_rank_raises(shape):
    with pytest.raises(ValueError, match="inputs of shape"):
        CausalMask()(np.zeros(shape, np.float32))


def test_non_tensor_inputs_raise():
    with pytest.raises(ValueError, match="Received: inputs=None"):
        CausalMask()(None)


def test_mismatched_shapes_known_only_at_run_time_raise():
    @tf.function(input_signature=GRAPH_SIGNATURE)
    def mask(token_ids, padding_mask, segment_ids, prefix_length):
        return CausalMask()(
            token_ids,
            padding_mask=padding_mask,
            segment_ids=segment_ids,
            prefix_length=prefix_length,
        )

    ids, padding = np.ones((2, 5), np.int32), np.ones((2, 5), bool)
    segments = np.zeros((2, 5), np.int32)
    prefix = np.array([1, 2], np.int32)
    assert mask(ids, padding, segments, prefix).shape == (2, 5, 5)
    cases = [
        ((ids, padding, segments[:, :4], prefix), "segment_ids` must have shape"),
        ((ids, padding[:1], segments, prefix), "padding_mask` must have shape"),
        ((ids, padding, segments, prefix[:1]), "prefix_length` must have shape"),
        ((ids, padding, segments, np.array([1, -2], np.int32)), "prefix_length` must be >= 0"),
    ]
    for args, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            mask(*args)


def test_mismatched_symbolic_shapes_raise_at_model_construction():
    ids = keras.Input(shape=(5,), dtype="int32")
    other = keras.Input(shape=(4,), dtype="int32")
    with pytest.raises(ValueError, match=r"segment_ids of shape \[None, 4\]"):
        CausalMask()(ids, segment_ids=other)
