"""`keras_dynmask.validation`: every checker, its accepted values and its messages.

NumPy integer and float scalars and 0-d arrays count as the Python values
they hold and come back as plain Python values; bools are refused where a
number is asked for; every message quotes `name=value`.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask import validation

NUMPY_INTEGERS = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
NUMPY_FLOATS = [np.float16, np.float32, np.float64]


def quoted(name, value):
    return re.escape(f"{name}={value!r}")


# as_int


@pytest.mark.parametrize("kind", NUMPY_INTEGERS)
def test_as_int_accepts_numpy_integers_and_0d_arrays(kind):
    for value in (kind(7), np.array(7, kind)):
        got = validation.as_int("n", value, 0, 10)
        assert got == 7 and type(got) is int


@pytest.mark.parametrize(
    "value, low, high",
    [(True, None, None), (np.bool_(True), None, None), (2.0, None, None), (np.float32(2), None, None),
     ("2", None, None), (None, None, None), (-1, 0, None), (10, 0, 10), (np.int64(10), 0, 10),
     (np.array([1]), None, None)],
)
def test_as_int_refuses_and_quotes_the_value(value, low, high):
    with pytest.raises(ValueError, match=quoted("n", value)):
        validation.as_int("n", value, low, high)


def test_as_int_bounds_and_none():
    assert validation.as_int("n", 0, 0, 1) == 0
    assert validation.as_int("n", None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"None or an integer in \[2, 5\)"):
        validation.as_int("n", 7, 2, 5, allow_none=True)
    with pytest.raises(ValueError, match="an integer >= 2"):
        validation.as_int("n", 1, 2)


# as_float


@pytest.mark.parametrize("kind", NUMPY_FLOATS + NUMPY_INTEGERS)
def test_as_float_accepts_numpy_scalars_and_0d_arrays(kind):
    for value in (kind(1), np.array(1, kind)):
        got = validation.as_float("rate", value, 0, 1)
        assert got == 1.0 and type(got) is float
    got = validation.as_float("rate", np.float32(0.15), 0, 1)
    assert type(got) is float and got == float(np.float32(0.15))


@pytest.mark.parametrize(
    "value, kwargs",
    [(True, {}), (np.bool_(False), {}), ("0.1", {}), (None, {}), (float("nan"), {}),
     (float("inf"), {}), (np.float64("nan"), {}), (0.0, dict(low=0, low_open=True)),
     (1.0, dict(high=1, high_open=True)), (1.5, dict(low=0, high=1)), (-0.1, dict(low=0)),
     (np.float32(2.5), dict(high=1))],
)
def test_as_float_refuses_and_quotes_the_value(value, kwargs):
    with pytest.raises(ValueError, match=quoted("rate", value)):
        validation.as_float("rate", value, **kwargs)


def test_as_float_interval_in_message():
    with pytest.raises(ValueError, match=r"a float in \(0, 1\]"):
        validation.as_float("rate", 0, 0, 1, low_open=True)
    assert validation.as_float("rate", 1, 0, 1, low_open=True) == 1.0


# as_int_list


def test_as_int_list_accepts_sequences_and_numpy():
    for value in ([1, 2], (1, 2), range(1, 3), np.array([1, 2]), [np.int64(1), np.int32(2)],
                  [np.array(1), 2]):
        got = validation.as_int_list("ids", value, 0, 5)
        assert got == [1, 2] and all(type(v) is int for v in got)
    assert sorted(validation.as_int_list("ids", {3, 1})) == [1, 3]
    assert validation.as_int_list("ids", ()) == []


@pytest.mark.parametrize(
    "value",
    ["abc", b"ab", 3, None, {"a": 1}, [1, True], [1, 2.0], [1, 5], [-1], np.array([[1, 2]])],
)
def test_as_int_list_refuses_and_quotes_the_value(value):
    with pytest.raises(ValueError, match=quoted("ids", value)):
        validation.as_int_list("ids", value, 0, 5)


# as_choice, as_seed, as_dataset


def test_as_choice():
    assert validation.as_choice("mode", "ids", ("ids", "fit")) == "ids"
    for value in ("labels", None, 1, ["ids"]):
        with pytest.raises(ValueError, match=quoted("mode", value)):
            validation.as_choice("mode", value, ("ids", "fit"))
    with pytest.raises(ValueError, match=re.escape("('ids', 'fit')")):
        validation.as_choice("mode", "x", ("ids", "fit"))


def test_as_seed():
    assert validation.as_seed(None) is None
    for value in (5, np.int64(5), np.array(5, np.uint8)):
        got = validation.as_seed(value)
        assert got == 5 and type(got) is int
    assert validation.as_seed(2**70) == 2**70  # any size
    for value in (1.5, True, "1", [1, 2], np.float32(1)):
        with pytest.raises(ValueError, match=quoted("seed", value)):
            validation.as_seed(value)
    with pytest.raises(ValueError, match=quoted("base_seed", 0.5)):
        validation.as_seed(0.5, name="base_seed")


def test_as_dataset():
    dataset = tf.data.Dataset.range(3)
    assert validation.as_dataset(dataset) is dataset
    with pytest.raises(ValueError, match=r"dataset=\[1, 2\] of type list"):
        validation.as_dataset([1, 2])
    with pytest.raises(ValueError, match="data=None"):
        validation.as_dataset(None, name="data")


def test_is_integer():
    for value in (1, np.int8(1), np.uint64(1), np.array(3)):
        assert validation.is_integer(value)
    for value in (True, np.bool_(True), 1.0, np.float32(1), "1", None, np.array([1])):
        assert not validation.is_integer(value)


# Tensors.


def test_static_rank_shape_text_and_is_ragged():
    dense = tf.zeros([2, 3], tf.int32)
    ragged = tf.ragged.constant([[1], [2, 3]])
    symbolic = keras.Input((None,), dtype="int32")
    assert validation.static_rank(dense) == 2
    assert validation.static_rank(symbolic) == 2
    assert validation.shape_text(dense) == "[2, 3]"
    assert validation.shape_text(symbolic) == "[None, None]"
    unknown = tf.TensorSpec(None, tf.int32)
    assert validation.static_rank(unknown) is None
    assert validation.shape_text(unknown) == "<unknown rank>"
    assert validation.is_ragged(ragged) and not validation.is_ragged(dense)
    assert validation.is_ragged(keras.Input((None,), dtype="int32", ragged=True))


def test_check_integer_ids():
    for tensor in (tf.zeros([3], tf.int32), tf.zeros([2, 3], tf.int64),
                   tf.ragged.constant([[1], [2, 3]]), keras.Input((None,), dtype="int32")):
        validation.check_integer_ids("Layer", "token_ids", tensor, (1, 2))
    with pytest.raises(ValueError, match=r"Layer needs int32 or int64 token_ids.*float32.*\[2\]"):
        validation.check_integer_ids("Layer", "token_ids", tf.zeros([2]), (1, 2))
    with pytest.raises(ValueError, match=r"rank 1 or 2.*rank 3, shape \[1, 1, 1\]"):
        validation.check_integer_ids("Layer", "token_ids", tf.zeros([1, 1, 1], tf.int32), (1, 2))
    with pytest.raises(ValueError, match="takes a tensor of token ids. Received: token_ids=5"):
        validation.check_integer_ids("Layer", "token_ids", 5, (1, 2))
    ragged_3d = tf.RaggedTensor.from_row_lengths(tf.zeros([3, 2], tf.int32), [1, 2])
    with pytest.raises(ValueError, match=r"ragged token_ids of shape \[B, \(T\)\]"):
        validation.check_integer_ids("Layer", "token_ids", ragged_3d, (1, 2, 3))


def test_require_eager_raises_with_the_values():
    assert validation.require(tf.constant(True), "fine", x=tf.constant(1)) == []
    with pytest.raises(ValueError, match=re.escape("lengths must match. Received: a=[1, 2], b=3")):
        validation.require(tf.constant(False), "lengths must match", a=tf.constant([1, 2]), b=3)


def test_require_in_a_graph_is_an_assertion():
    @tf.function
    def checked(x):
        with tf.control_dependencies(validation.require(x > 0, "x must be positive", x=x)):
            return tf.identity(x)

    assert int(checked(tf.constant(3))) == 3
    with pytest.raises(tf.errors.InvalidArgumentError, match="x must be positive"):
        checked(tf.constant(-2))


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64])
def test_ids_below(dtype):
    assert bool(validation.ids_below(tf.constant([0, 4, 9], dtype), 10))
    assert not bool(validation.ids_below(tf.constant([0, 10], dtype), 10))
    assert not bool(validation.ids_below(tf.constant([-1, 3], dtype), 10))
    assert bool(validation.ids_below(tf.zeros([0], dtype), 10))


def test_call_seed():
    for seed in ([7, 42], (7, 42), np.array([7, 42], np.int32), tf.constant([7, 42]),
                 tf.constant([7, 42], tf.int64), tf.Variable([7, 42])):
        got = validation.call_seed(seed)
        assert got.dtype == tf.int64
        np.testing.assert_array_equal(got.numpy(), [7, 42])
    for seed, text in (
        ([1.5, 2], re.escape("seed=[1.5, 2]")), ([1, 2, 3], re.escape("seed=[1, 2, 3]")),
        (5, "seed=5"),
        (tf.constant([1.0, 2.0]), "dtype float32"), (tf.constant([1, 2, 3]), r"shape \[3\]"),
    ):
        with pytest.raises(ValueError, match=text):
            validation.call_seed(seed)
