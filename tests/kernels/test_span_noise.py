"""`span_noise.corrupt_spans` bound to TensorFlow (also under XLA).

The layer runs this kernel with `keras.ops` on JAX and PyTorch
(tests/backends/test_span_corruption_on_backends.py); here the same kernel
with the TensorFlow binding gives the same contract: each row back from its
inputs and targets, T5's counts exactly, sentinels in order.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask.kernels import noise_spans
from keras_dynmask.kernels import op_set
from keras_dynmask.kernels import span_noise

SENTINELS = [99 - i for i in range(10)]
EOS = 1
RNG = np.random.default_rng(5)
IDS = RNG.integers(3, 80, (64, 24)).astype("int64")
LENGTHS = np.concatenate([[0, 1, 2, 24], RNG.integers(0, 25, 60)])
IDS[np.arange(24)[None, :] >= LENGTHS[:, None]] = 0


def run(ids, seed, jit_compile):
    @tf.function(jit_compile=jit_compile)
    def corrupt(ids, seed):
        return span_noise.corrupt_spans(
            op_set.tensorflow_ops(), ids, seed, noise_density=0.25,
            mean_noise_span_length=2.0, sentinel_ids=SENTINELS, eos_id=EOS,
            pad_token_id=0, inputs_length=25, targets_length=30,
        )

    inputs, targets = corrupt(tf.constant(ids), tf.constant(seed, tf.int32))
    return inputs.numpy(), targets.numpy()


@pytest.mark.parametrize("jit_compile", [False, True])
def test_round_trip_and_counts_with_tensorflow(jit_compile):
    inputs, targets = run(IDS, [1, 2], jit_compile)
    assert inputs.dtype == targets.dtype == np.int64
    num_noise, num_spans = noise_spans.python_span_counts(LENGTHS, 0.25, 2.0, len(SENTINELS))
    for row, n in enumerate(LENGTHS):
        kept = inputs[row, : np.flatnonzero(inputs[row] == EOS)[0]]
        target = targets[row, : np.flatnonzero(targets[row] == EOS)[0]]
        starts = list(np.flatnonzero(np.isin(target, SENTINELS))) + [len(target)]
        spans = {target[s]: target[s + 1:e] for s, e in zip(starts, starts[1:])}
        assert [target[s] for s in starts[:-1]] == SENTINELS[: num_spans[row]]
        assert sum(len(t) for t in spans.values()) == num_noise[row]
        pieces = [spans[t] if t in spans else [t] for t in kept]
        rebuilt = np.concatenate(pieces) if pieces else kept
        np.testing.assert_array_equal(rebuilt, IDS[row, :n])


def test_seed_purity_with_tensorflow():
    first, again, other = (run(IDS, seed, False) for seed in ([4, 5], [4, 5], [4, 6]))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert (first[1] != other[1]).any()
