"""`DenoiserMixture` with fixed output lengths on the active Keras backend.

The same checks under TensorFlow, JAX and PyTorch, on one big batch: every
example well formed for the denoiser it drew (its mode token first; R and X
rows T5's counts exactly and the sequence back from inputs and targets; S
rows a prefix-LM split, no sentinels), the denoisers drawn with their rates
and the S split uniform (chi-square), rows of padding only left alone;
`training=False` corrupts nothing; call-seed purity; inside a Functional
model: corruption only in training, `fit` with Keras's default jit and with
`jit_compile=True`, a `.keras` round trip.
"""

import os

import keras
import numpy as np
import pytest
from distribution_bounds import chi2_critical
from distribution_bounds import chi_square
from span_reference import expected_counts
from span_reference import restore
from span_reference import strip

from keras_dynmask import DenoiserMixture

BACKEND = keras.backend.backend()
VOCABULARY = 200
NUM_SENTINELS = 20
SENTINELS = [VOCABULARY - 1 - i for i in range(NUM_SENTINELS)]
MODE_IDS = [179, 178, 177]  # the defaults: just below the sentinels
EOS = 1
WIDTH = 32
LENGTH = WIDTH + 2  # mode token and eos: every denoiser's output fits
DENOISERS = [("R", 3.0, 0.15), ("X", 8.0, 0.5), ("S", None, None)]
RATES = [0.5, 0.3, 0.2]
RNG = np.random.default_rng(12)
ROWS = 512  # one batch shape for every eager call (JAX compiles each op once a shape)
IDS = RNG.integers(3, 170, (ROWS, WIDTH)).astype("int32")
LENGTHS = np.concatenate([[0, 1, 2, 3], RNG.integers(0, WIDTH + 1, ROWS // 2 - 4),
                          np.full(ROWS // 2, WIDTH)])
IDS[np.arange(WIDTH)[None, :] >= LENGTHS[:, None]] = 0  # trailing padding


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def layer(**kwargs):
    options = dict(vocabulary_size=VOCABULARY, denoisers=DENOISERS, rates=RATES,
                   num_sentinels=NUM_SENTINELS, eos_id=EOS, inputs_length=LENGTH,
                   targets_length=LENGTH)
    options.update(kwargs)
    return DenoiserMixture(**options)


def corrupted(seed=(3, 4), ids=IDS, **kwargs):
    out = layer(**kwargs)(keras.ops.convert_to_tensor(ids), seed=list(seed))
    return {key: numpy(value) for key, value in out.items()}


def check_examples(out, ids, lengths):
    """Each example well formed for the denoiser it drew; returns the S rows'
    prefix lengths by row."""
    prefixes = {}
    for row, n in enumerate(lengths):
        inputs = strip(out["inputs"][row], eos_id=EOS)
        targets = strip(out["targets"][row], eos_id=EOS)
        chosen = out["denoiser"][row]
        if n == 0:  # padding only: no denoiser, no mode token, just the eos
            assert chosen == -1 and inputs == targets == []
            continue
        mode, mean, density = DENOISERS[chosen]
        assert inputs[0] == MODE_IDS["RXS".index(mode)], (row, inputs)
        inputs = inputs[1:]
        original = ids[row, :n].tolist()
        if mode == "S":
            assert not set(inputs + targets) & set(SENTINELS)
            assert inputs + targets == original
            assert 1 <= len(inputs) <= n - 1 if n >= 2 else targets == []
            prefixes[row] = len(inputs)
            continue
        noise, spans = expected_counts(n, density, mean, NUM_SENTINELS)
        assert len(targets) == noise + spans, (row, mode, mean, density)
        assert sum(t in SENTINELS for t in inputs) == spans
        assert restore(inputs, targets, SENTINELS) == original
    return prefixes


def test_each_example_is_well_formed_for_its_denoiser_drawn_by_rate():
    out = corrupted()
    assert out["inputs"].shape == out["targets"].shape == (ROWS, LENGTH)
    assert out["denoiser"].shape == (ROWS,) and out["denoiser"].dtype == np.int32
    assert out["inputs"].dtype == IDS.dtype
    # Keras's conformance checks (tests/backends/test_conformance_on_backends.py),
    # at this batch's shape: output spec and shape, config round trip.
    mixture = layer()
    spec = mixture.compute_output_spec(keras.KerasTensor(IDS.shape, dtype="int32"))
    assert {k: (tuple(v.shape), v.dtype) for k, v in spec.items()} == {
        k: (v.shape, v.dtype.name) for k, v in out.items()}
    assert mixture.compute_output_shape(IDS.shape) == {k: v.shape for k, v in out.items()}
    assert DenoiserMixture.from_config(mixture.get_config()).get_config() == mixture.get_config()
    check_examples(out, IDS, LENGTHS)
    drawn = out["denoiser"][LENGTHS > 0]
    counts = np.bincount(drawn, minlength=3)
    assert chi_square(counts, len(drawn) * np.array(RATES)) < chi2_critical(2)


def test_rates_of_zero_are_never_drawn_and_the_prefix_split_is_uniform():
    out = corrupted(seed=(5, 6), rates=[0.0, 0.0, 1.0])
    assert set(out["denoiser"][LENGTHS > 0]) == {2}
    prefixes = check_examples(out, IDS, LENGTHS)
    # The S split of a full row: the prefix uniform on 1 .. WIDTH - 1.
    full = [prefixes[row] for row in prefixes if LENGTHS[row] == WIDTH]
    cells = np.bincount(np.array(full) - 1, minlength=WIDTH - 1)
    assert chi_square(cells, np.full(WIDTH - 1, len(full) / (WIDTH - 1))) < chi2_critical(WIDTH - 2)


def test_training_false_corrupts_nothing():
    out = layer()(keras.ops.convert_to_tensor(IDS), training=False)
    inputs, targets = numpy(out["inputs"]), numpy(out["targets"])
    assert (numpy(out["denoiser"]) == -1).all()
    for row, n in enumerate(LENGTHS):
        np.testing.assert_array_equal(inputs[row, : n + 1], list(IDS[row, :n]) + [EOS])
    assert (targets[:, 0] == EOS).all() and (targets[:, 1:] == 0).all()


def test_call_seed_purity_and_fresh_unseeded_draws():
    first, again, other = (corrupted(seed) for seed in ((7, 8), (7, 8), (7, 9)))
    for key in ("inputs", "targets", "denoiser"):
        np.testing.assert_array_equal(first[key], again[key])
    assert (first["denoiser"] != other["denoiser"]).any()
    mixture = layer(seed=2)
    ids = keras.ops.convert_to_tensor(IDS)
    one, two = mixture(ids), mixture(ids)
    module = type(one["inputs"]).__module__.split(".")[0]
    assert module in {"jax": ("jax", "jaxlib"), "torch": ("torch",),
                      "tensorflow": ("tensorflow",)}[BACKEND]
    assert (numpy(one["denoiser"]) != numpy(two["denoiser"])).any()


def test_in_a_grain_pipeline():
    """A grain `MapDataset.map` on NumPy batches (the statistics batch's shape)."""
    grain = pytest.importorskip("grain")
    dataset = grain.MapDataset.source([IDS, IDS]).map(layer())
    first = {key: numpy(value) for key, value in dataset[0].items()}
    assert first["inputs"].shape == (ROWS, LENGTH)
    check_examples(first, IDS, LENGTHS)
    # Each read of an element maps it again, with fresh draws.
    assert (numpy(dataset[1]["denoiser"]) != first["denoiser"]).any()

def test_lengths_are_required_off_tensorflow():
    if BACKEND == "tensorflow":
        pytest.skip("TensorFlow tensors take unset lengths")
    with pytest.raises(ValueError, match="inputs_length"):
        layer(targets_length=None)(keras.ops.convert_to_tensor(IDS))


@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_fit_in_a_functional_model(tmp_path, jit_compile):
    """Same batch, zero learning rate: only fresh draws change the loss;
    predict never corrupts, before and after a `.keras` round trip."""
    if BACKEND == "torch" and jit_compile is True:
        pytest.skip("torch.compile of a fit takes a minute")
    if BACKEND == "jax" and jit_compile is True:
        pytest.skip("on JAX jit_compile='auto' is True: the [auto] case runs it (and checks so)")
    keras.utils.set_random_seed(4)
    tokens = keras.Input((WIDTH,), dtype="int32")
    out = layer(seed=2)(tokens)
    embed = keras.layers.Embedding(VOCABULARY, 8)
    pooled = [keras.layers.GlobalAveragePooling1D()(embed(out[key])) for key in ("inputs", "targets")]
    denoiser = keras.layers.Reshape((1,))(out["denoiser"])
    score = keras.layers.Dense(1)(keras.layers.Concatenate()(pooled + [denoiser]))
    model = keras.Model(tokens, score)
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    assert model.jit_compile or BACKEND != "jax"
    batch, y = IDS[:16], np.ones((16, 1), "float32")
    losses = [float(model.train_on_batch(batch, y)) for _ in range(6)]
    assert np.isfinite(losses).all() and len(set(losses)) >= 5, losses
    expected = model.predict(batch, verbose=0)
    np.testing.assert_allclose(model.predict(batch, verbose=0), expected, rtol=1e-6)
    path = os.path.join(tmp_path, "mixture.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(batch, verbose=0), expected, rtol=1e-5, atol=1e-6)
