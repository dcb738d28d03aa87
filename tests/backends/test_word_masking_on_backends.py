"""`DynamicMLMMasking` at "word" and "span" granularity on the active Keras backend.

Under JAX and PyTorch the layer runs `kernels.word_masking` with `keras.ops`;
under TensorFlow the TensorFlow kernels (`kernels.word_selection`). The same
checks hold on each: words are never cut, special, padding and mask tokens
never selected, Bernoulli word rates inside binomial bounds, exact and span
selections within (and filling) the token budget, `max_predictions`
respected, a dict's `"word_ids"` winning over the table, call seeds giving
pure functions, and fits inside jitted models. The kernels themselves are
checked against plain Python references, bound to the backend's op set.
"""

import os

import keras
import numpy as np
import pytest
from distribution_bounds import binomial_upper_critical
from distribution_bounds import chi2_critical
from distribution_bounds import chi_square

from keras_dynmask import DynamicMLMMasking
from keras_dynmask.kernels import op_set
from keras_dynmask.kernels import word_masking

BACKEND = keras.backend.backend()
VOCABULARY = 120
PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIALS = (PAD, CLS, SEP, MASK)
TABLE = np.random.default_rng(0).random(VOCABULARY) < 0.6  # ~40% of ids continue a word
TABLE[list(SPECIALS)] = True
ONE_TOKEN_WORDS = np.ones(VOCABULARY, bool)


# Two batch shapes for the eager calls (JAX compiles each op once per shape).
ROWS, LENGTH = 256, 48
LONG_ROWS = (100, 1000)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def tensor(x):
    return keras.ops.convert_to_tensor(x)


def random_ids(rows, length, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, VOCABULARY, (rows, length))
    ids[:, 0] = CLS
    ids[rng.random((rows, length)) < 0.03] = SEP  # separators inside rows
    ids[rng.random((rows, length)) < 0.02] = MASK
    ids[:, length - length // 8 :] = PAD
    return ids.astype("int32")


def words_of(ids, table=TABLE):
    """Word number per token (-1: no word), by a plain Python walk."""
    words = np.full(ids.shape, -1)
    for b, row in enumerate(ids):
        current, inside = -1, False
        for t, token in enumerate(row):
            if token in SPECIALS:
                inside = False
                continue
            if table[token] or not inside:
                current += 1
            words[b, t] = current
            inside = True
    return words


def word_lengths(words):
    """Per row, the token count of each word (a list of arrays)."""
    return [np.bincount(row[row >= 0]) if (row >= 0).any() else np.zeros(0, int) for row in words]


def assert_whole_words(selected, words):
    selected = np.asarray(selected)
    assert not selected[words < 0].any(), "a token of no word was selected"
    for b in range(words.shape[0]):
        row = words[b]
        for w in np.unique(row[row >= 0]):
            pieces = selected[b][row == w]
            assert pieces.all() or not pieces.any(), f"row {b}: word {w} cut"


def two_sided_bounds(n, p, alpha=1e-6):
    return n - binomial_upper_critical(n, 1 - p, alpha), binomial_upper_critical(n, p, alpha)


def budgets(eligible, rate, max_predictions=None):
    counts = eligible.sum(axis=1)
    budget = np.maximum(np.round(rate * counts), np.minimum(counts, 1)).astype(int)
    return budget if max_predictions is None else np.minimum(budget, max_predictions)


def layer(**kwargs):
    options = dict(
        vocabulary_size=VOCABULARY, mask_token_id=MASK, special_token_ids=[CLS, SEP],
        granularity="word", word_starts=TABLE, output_mode="dict",
    )
    options.update(kwargs)
    return DynamicMLMMasking(**options)


STRATEGIES = [("word", "bernoulli"), ("word", "exact"), ("span", "exact")]


# The layer.


@pytest.mark.parametrize("granularity, selection", STRATEGIES)
def test_whole_words_never_specials_and_bert_targets(granularity, selection):
    ids = random_ids(ROWS, LENGTH)
    out = layer(granularity=granularity, selection=selection, mask_rate=0.3)(tensor(ids), seed=[4, 5])
    if BACKEND != "tensorflow":
        assert type(out["mask"]).__module__.split(".")[0] in {"jax": ("jax", "jaxlib"), "torch": ("torch",)}[BACKEND]
    mask, corrupted = numpy(out["mask"]), numpy(out["token_ids"])
    words = words_of(ids)
    assert_whole_words(mask, words)  # specials, padding and mask ids are in no word
    if selection == "exact":
        assert mask.any(axis=1).all()
    assert mask[words >= 0].mean() > 0.2  # 0.3 expected, sd under 0.01
    np.testing.assert_array_equal(numpy(out["labels"]), np.where(mask, ids, -100))
    np.testing.assert_array_equal(corrupted[~mask], ids[~mask])
    random_ids_drawn = corrupted[mask & (corrupted != MASK) & (corrupted != ids)]
    assert not np.isin(random_ids_drawn, SPECIALS).any()


def test_bernoulli_word_rate_and_corruption_shares():
    ids = random_ids(ROWS, LENGTH)
    words = words_of(ids)
    out = layer(mask_rate=0.2)(tensor(ids), seed=[1, 2])
    mask, corrupted = numpy(out["mask"]), numpy(out["token_ids"])
    firsts = (words >= 0) & (np.pad(words, [(0, 0), (1, 0)], constant_values=-1)[:, :-1] != words)
    low, high = two_sided_bounds(int(firsts.sum()), 0.2)
    assert low < int(mask[firsts].sum()) < high
    # 80/10/10 per selected token, from a draw of its own.
    selected = int(mask.sum())
    low, high = two_sided_bounds(selected, 0.8)
    assert low < int((corrupted[mask] == MASK).sum()) < high
    kept = 0.1 + 0.1 / (VOCABULARY - len(SPECIALS))  # a random id may equal the original
    low, high = two_sided_bounds(selected, kept)
    assert low < int((corrupted[mask] == ids[mask]).sum()) < high


@pytest.mark.parametrize("granularity", ["word", "span"])
def test_exact_and_span_fill_the_budget_without_exceeding_it(granularity):
    ids = random_ids(ROWS, LENGTH)
    words = words_of(ids)
    out = layer(granularity=granularity, selection="exact", mask_rate=0.2)(tensor(ids), seed=[6, 7])
    counts = numpy(out["mask"]).sum(axis=1)
    eligible = words >= 0
    budget = budgets(eligible, 0.2)
    longest = np.array([lengths.max() for lengths in word_lengths(words)])
    mask = numpy(out["mask"])
    assert (counts >= 1).all()
    # Within the budget, unless the one word kept alone is longer than it.
    over = np.flatnonzero(counts > budget)
    assert all(len(np.unique(words[b][mask[b]])) == 1 for b in over)
    # Filled: the next word in order did not fit, so the gap is below the longest word.
    within = counts <= budget
    assert (counts[within] > budget[within] - longest[within]).all()


@pytest.mark.parametrize("granularity", ["word", "span"])
def test_one_token_words_fill_the_budget_exactly(granularity):
    ids = random_ids(ROWS, LENGTH)
    out = layer(granularity=granularity, selection="exact", word_starts=ONE_TOKEN_WORDS,
                mask_rate=0.25)(tensor(ids))
    eligible = ~np.isin(ids, SPECIALS)
    np.testing.assert_array_equal(numpy(out["mask"]).sum(axis=1), budgets(eligible, 0.25))


def test_exact_words_are_a_uniform_choice():
    ids = (np.arange(LENGTH, dtype="int32")[None, :] % 100 + 10).repeat(ROWS, axis=0)
    out = layer(selection="exact", word_starts=ONE_TOKEN_WORDS, mask_rate=0.25)(tensor(ids), seed=[5, 6])
    mask = numpy(out["mask"])
    assert (mask.sum(axis=1) == 12).all()
    assert chi_square(mask.sum(axis=0), np.full(LENGTH, ROWS * 12 / LENGTH)) < chi2_critical(LENGTH - 1)


def test_spans_are_runs_of_whole_words_with_the_law_of_lengths():
    # Long rows of one-token words at a low rate: spans rarely touch, so the
    # selected runs follow the span-length law (mean 3.8 words; the budget's
    # cut span and merged spans aside: a loose bound), far from the runs of
    # exact word selection at the same rate (mean about 1.04).
    ids = np.random.default_rng(5).integers(4, VOCABULARY, LONG_ROWS).astype("int32")

    def runs(granularity):
        out = layer(granularity=granularity, selection="exact", word_starts=ONE_TOKEN_WORDS,
                    mask_rate=0.04)(tensor(ids), seed=[7, 8])
        edges = np.diff(np.pad(numpy(out["mask"]).astype(np.int8), [(0, 0), (1, 1)]), axis=1)
        return np.nonzero(edges == -1)[1] - np.nonzero(edges == 1)[1]

    spans = runs("span")
    assert 3.3 < spans.mean() < 4.4 and spans.max() <= 2 * 10
    assert runs("word").mean() < 1.2


def test_spans_of_word_pieces_are_consecutive_whole_words():
    ids = random_ids(*LONG_ROWS)
    words = words_of(ids)
    out = layer(granularity="span", selection="exact", mask_rate=0.15, span_length_p=0.3,
                max_span_length=4)(tensor(ids), seed=[3, 3])
    mask = numpy(out["mask"])
    assert_whole_words(mask, words)
    # Per row, the selected words' numbers form runs longer than single words.
    runs = []
    for b in range(len(ids)):
        chosen = np.unique(words[b][mask[b]])
        breaks = np.flatnonzero(np.diff(chosen) != 1)
        runs.extend(np.diff(np.concatenate([[-1], breaks, [len(chosen) - 1]])))
    assert np.mean(runs) > 1.8  # exact word selection: about 1.2 at this rate


@pytest.mark.parametrize("granularity, selection", STRATEGIES + [("span", "bernoulli")])
def test_max_predictions_caps_without_cutting_words(granularity, selection):
    ids = random_ids(ROWS, LENGTH)
    words = words_of(ids)
    out = layer(granularity=granularity, selection=selection, mask_rate=0.4,
                max_predictions=6)(tensor(ids), seed=[2, 9])
    mask = numpy(out["mask"])
    assert (mask.sum(axis=1) <= 6).all() and mask.sum(axis=1).mean() > 3
    assert_whole_words(mask, words)
    positions, weights = numpy(out["mask_positions"]), numpy(out["mask_weights"])
    np.testing.assert_array_equal(weights.sum(axis=1), mask.sum(axis=1))
    for b in range(len(ids)):
        np.testing.assert_array_equal(positions[b, : mask[b].sum()], np.flatnonzero(mask[b]))


def test_word_ids_win_over_the_table():
    ids = random_ids(ROWS, LENGTH)
    # Every token its own word per the table, but word_ids pair them up.
    word_ids = np.where(~np.isin(ids, SPECIALS), np.arange(LENGTH)[None, :] // 2, -1).astype("int32")
    word_ids[:, 5] = -1  # no word: never selected
    for granularity in ("word", "span"):
        masking = layer(granularity=granularity, word_starts=ONE_TOKEN_WORDS, mask_rate=0.5)
        out = masking({"token_ids": tensor(ids), "word_ids": tensor(word_ids)}, seed=[1, 1])
        mask = numpy(out["mask"])
        assert mask.any()
        assert_whole_words(mask, word_ids)
        pairs = np.where(word_ids[:, 6:] >= 0, mask[:, 6:], -1).reshape(ROWS, -1, 2)
        pieces = pairs[(pairs >= 0).all(axis=2)]
        assert (pieces[:, 0] == pieces[:, 1]).all() and pieces.any()
        np.testing.assert_array_equal(numpy(out["word_ids"]), word_ids)  # passes through
    # Without a table, word_ids alone suffice; a single sequence too.
    masking = layer(word_starts=None, mask_rate=0.5)
    single = masking({"token_ids": tensor(ids[0]), "word_ids": tensor(word_ids[0])})
    assert_whole_words(numpy(single["mask"])[None], word_ids[:1])
    with pytest.raises(ValueError, match="word_starts.*word_ids"):
        masking(tensor(ids))


def test_call_seed_is_a_pure_function():
    ids = tensor(random_ids(ROWS, LENGTH))
    for granularity in ("word", "span"):
        masking = layer(granularity=granularity, selection="exact", output_mode="ids")
        first = numpy(masking(ids, seed=[1, 2]))
        np.testing.assert_array_equal(first, numpy(masking(ids, seed=np.array([1, 2], "int64"))))
        assert (first != numpy(masking(ids, seed=[1, 3]))).any()
        assert (numpy(masking(ids)) != numpy(masking(ids))).any()  # unseeded: fresh
        assert (numpy(masking(ids, training=False)) == numpy(ids)).all()


# The kernels, against Python references, bound to this backend's op set.

OPS = op_set.for_values()


def reference_fill(candidates, keys, budget, cap=None, at_least_one=True):
    """Words (tokens sharing a key) in key order while within the budget."""
    kept = np.zeros_like(candidates)
    for b in range(len(candidates)):
        total, first = 0, True
        for key in np.unique(keys[b][candidates[b]]):
            word = candidates[b] & (keys[b] == key)
            size = int(word.sum())
            if total + size > budget[b]:
                if first and at_least_one and budget[b] > 0 and (cap is None or size <= cap):
                    kept[b] |= word
                break
            kept[b] |= word
            total, first = total + size, False
    return kept


@pytest.mark.parametrize("cap, at_least_one", [(None, True), (3, True), (None, False)])
def test_fill_budget_matches_a_python_reference(cap, at_least_one):
    rng = np.random.default_rng(1)
    candidates = rng.random((300, 16)) < 0.8
    keys = rng.integers(0, 6, (300, 16)).astype("int32")  # words of 0-8 tokens
    counts = candidates.sum(axis=1)
    budget = np.minimum(rng.integers(0, 9, 300), counts).astype("int32")
    kept = word_masking.fill_budget(OPS, OPS.convert(candidates), OPS.convert(keys),
                                    OPS.convert(budget), cap=cap, at_least_one=at_least_one)
    np.testing.assert_array_equal(numpy(kept), reference_fill(candidates, keys, budget, cap, at_least_one))


def test_covering_keys_match_a_python_reference():
    rng = np.random.default_rng(2)
    longest = 4
    priorities = np.argsort(rng.random((50, 12)), axis=1).astype("int32")
    lengths = rng.integers(1, longest + 1, (50, 12)).astype("int32")
    bits = word_masking.offset_bits(longest)
    expected = np.full((50, 12), 2**31 - 1)
    for b in range(50):
        for start in range(12):
            for offset in range(lengths[b, start]):
                if start + offset < 12:
                    key = priorities[b, start] * 2**bits + offset
                    expected[b, start + offset] = min(expected[b, start + offset], key)
    keys = word_masking.covering_keys(OPS, OPS.convert(priorities), OPS.convert(lengths), longest)
    np.testing.assert_array_equal(numpy(keys), expected)


@pytest.mark.parametrize("p, longest", [(0.2, 10), (0.5, 20)])
def test_span_lengths_follow_the_truncated_geometric_law(p, longest):
    n = 100_000
    lengths = numpy(word_masking.span_lengths(OPS, (n,), OPS.convert(np.array([3, 4], "int32")), p, longest))
    assert lengths.min() >= 1 and lengths.max() <= longest
    law = np.array([p * (1 - p) ** (k - 1) for k in range(1, longest + 1)])
    expected = n * law / law.sum()
    observed = np.bincount(lengths, minlength=longest + 1)[1:]
    kept = expected >= 5  # chi-square cells with enough expected counts
    cells = np.append(observed[kept], observed[~kept].sum())
    means = np.append(expected[kept], expected[~kept].sum())
    if not (~kept).any():
        cells, means = cells[:-1], means[:-1]
    assert chi_square(cells, means) < chi2_critical(len(cells) - 1)


@pytest.mark.parametrize("granularity, selection", STRATEGIES)
def test_scheduled_rate_follows_the_step(granularity, selection):
    """The schedule's rate at the call's step: Bernoulli word rates inside
    binomial bounds, exact and span budgets exactly (one-token words); the
    layer's own step advances once a masked batch."""
    schedule = keras.optimizers.schedules.PolynomialDecay(0.4, 10, 0.2)  # no rounding ties
    table = TABLE if selection == "bernoulli" else ONE_TOKEN_WORDS
    masking = layer(granularity=granularity, selection=selection, mask_rate=schedule,
                    word_starts=table)
    ids = random_ids(ROWS, LENGTH)
    words = words_of(ids, table)
    firsts = (words >= 0) & (np.pad(words, [(0, 0), (1, 0)], constant_values=-1)[:, :-1] != words)
    for step, rate in ((0, 0.4), (10, 0.2), (20, 0.2)):
        mask = numpy(masking(tensor(ids), step=step, seed=[step, 3])["mask"])
        assert_whole_words(mask, words)
        if selection == "bernoulli":
            low, high = two_sided_bounds(int(firsts.sum()), rate)
            assert low < int(mask[firsts].sum()) < high, (step, rate)
        else:
            np.testing.assert_array_equal(mask.sum(axis=1), budgets(words >= 0, rate))
    before = int(numpy(masking.schedule_step))
    masking(tensor(ids))
    masking(tensor(ids), training=False)
    assert int(numpy(masking.schedule_step)) == before + 1


# Inside models.


@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_fit_in_a_functional_model_with_word_ids(tmp_path, jit_compile):
    """Same batch, zero learning rate: only the masks change the loss."""
    if BACKEND == "torch" and jit_compile is True:
        pytest.skip("torch.compile of a fit takes a minute; the eager torch fit runs the same kernels")
    keras.utils.set_random_seed(3)
    ids = random_ids(16, 40)
    word_ids = words_of(ids).astype("int32")
    inputs = {"token_ids": keras.Input((40,), dtype="int32", name="token_ids"),
              "word_ids": keras.Input((40,), dtype="int32", name="word_ids")}
    masking = layer(granularity="span", selection="exact", mask_rate=0.5, max_predictions=12,
                    output_mode="ids", word_starts=None)
    masked = masking(inputs)["token_ids"]
    embedding, dense = keras.layers.Embedding(VOCABULARY, 4), keras.layers.Dense(1)
    model = keras.Model(inputs, dense(embedding(masked)))
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    x = {"token_ids": np.concatenate([ids] * 6), "word_ids": np.concatenate([word_ids] * 6)}
    y = np.zeros((96, 40, 1), "float32")
    losses = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda step, logs: losses.append(float(logs["loss"])))
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    per_batch = np.array(losses) * np.arange(1, 7) - np.concatenate([[0], np.array(losses[:-1]) * np.arange(1, 6)])
    assert len(np.unique(np.round(per_batch / per_batch.mean(), 3))) > 3  # fresh masks every step
    # predict never masks: the output is the unmasked ids'.
    unmasked = numpy(dense(embedding(tensor(ids))))
    np.testing.assert_allclose(model.predict({"token_ids": ids, "word_ids": word_ids}, verbose=0),
                               unmasked, rtol=1e-5, atol=1e-6)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict({"token_ids": ids, "word_ids": word_ids}, verbose=0),
                               unmasked, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_scheduled_span_masking_fit_counts_its_steps(tmp_path, jit_compile):
    """A scheduled rate in a jitted fit: fresh masks every step, the saved
    step count advances once a training step (not in predict) and survives
    a `.keras` round trip."""
    if BACKEND == "torch" and jit_compile is True:
        pytest.skip("torch.compile of a fit takes a minute; the eager torch fit runs the same kernels")
    if BACKEND == "jax" and jit_compile is True:
        pytest.skip("on JAX jit_compile='auto' is True: the [auto] case runs it (and checks so)")
    keras.utils.set_random_seed(6)
    ids = keras.Input((40,), dtype="int32")
    masking = layer(granularity="span", selection="exact", output_mode="ids",
                    mask_rate=keras.optimizers.schedules.PolynomialDecay(0.5, 4, 0.1))
    model = keras.Model(ids, keras.layers.Dense(1)(keras.layers.Embedding(VOCABULARY, 4)(masking(ids))))
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    assert model.jit_compile or BACKEND != "jax"
    batch, y = random_ids(16, 40), np.zeros((16, 40, 1), "float32")
    losses = [float(model.train_on_batch(batch, y)) for _ in range(6)]
    assert len(set(losses)) >= 5, losses
    model.predict(batch, verbose=0)
    assert int(numpy(model.layers[1].schedule_step)) == 6
    path = os.path.join(tmp_path, "scheduled.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert int(numpy(restored.layers[1].schedule_step)) == 6
    assert restored.layers[1].current_mask_rate() == pytest.approx(0.1)


@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_fit_in_a_functional_model_with_the_table(jit_compile):
    if BACKEND == "torch" and jit_compile is True:
        pytest.skip("torch.compile of a fit takes a minute; the eager torch fit runs the same kernels")
    ids = keras.Input((40,), dtype="int32")
    masked = layer(output_mode="ids", mask_rate=0.3, max_predictions=8)(ids)
    model = keras.Model(ids, keras.layers.Dense(1)(keras.layers.Embedding(VOCABULARY, 4)(masked)))
    model.compile("adam", "mse", jit_compile=jit_compile)
    history = model.fit(random_ids(32, 40), np.zeros((32, 40, 1)), batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("granularity, selection", [("word", "bernoulli"), ("span", "exact")])
def test_the_kernel_bound_to_tensorflow_in_a_graph(granularity, selection):
    """The same kernel with the TensorFlow binding (what `benchmarks/one_kernel_form.py`
    runs in `tf.data`), under XLA too for spans (XLA's compile of the word
    case alone took 20 s of the suite)."""
    if BACKEND != "tensorflow":
        pytest.skip("the TensorFlow binding does not depend on the Keras backend: checked under TensorFlow")
    import tensorflow as tf

    ids = random_ids(ROWS, LENGTH)
    tf_ops = op_set.tensorflow_ops()

    def mask(token_ids, seed):
        return word_masking.select_and_corrupt(
            tf_ops, token_ids, seed, excluded_ids=list(SPECIALS), vocabulary_size=VOCABULARY,
            mask_rate=0.3, granularity=granularity, selection=selection, max_predictions=10,
            mask_token_id=MASK, mask_token_rate=0.8, random_token_rate=0.1, word_starts=TABLE,
        )

    seed = tf.constant([3, 4])
    words = words_of(ids)
    for jit_compile in (False, True) if granularity == "span" else (False,):
        corrupted, selected = tf.function(mask, jit_compile=jit_compile)(tf.constant(ids), seed)
        chosen = selected.numpy()
        assert_whole_words(chosen, words)
        assert (chosen.sum(axis=1) <= 10).all() and chosen.sum(axis=1).mean() > 5
        np.testing.assert_array_equal(corrupted.numpy()[~chosen], ids[~chosen])


# Saving: the table travels in a `.keras` file's assets, not in the config.


def test_keras_file_carries_the_table_to_the_model_tf_data_and_grain(tmp_path):
    import json

    import tensorflow as tf

    # Options and shapes of the tests above: JAX reuses their compiled ops.
    masking = layer(selection="exact", mask_rate=0.4, max_predictions=6)
    config = masking.get_config()
    assert config["word_starts"] is None and len(json.dumps(config)) < 1000
    model = keras.Sequential([keras.Input((LENGTH,), dtype="int32"), masking])
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path).layers[0]
    np.testing.assert_array_equal(restored.word_starts, TABLE)
    ids = random_ids(ROWS, LENGTH)
    words = words_of(ids)
    # Eagerly on a backend tensor: the same pure function of inputs and seed.
    seed = np.array([2, 5], "int32")
    np.testing.assert_array_equal(numpy(restored(tensor(ids), seed=seed)["mask"]),
                                  numpy(masking(tensor(ids), seed=seed)["mask"]))
    # In tf.data (TensorFlow ops whatever the backend) and in grain.
    batch = next(iter(tf.data.Dataset.from_tensor_slices(ids).batch(ROWS).map(restored)))
    assert isinstance(batch["mask"], tf.Tensor) and batch["mask"].numpy().any()
    assert_whole_words(batch["mask"].numpy(), words)
    grain = pytest.importorskip("grain")
    mask = numpy(grain.MapDataset.source([ids]).map(restored)[0]["mask"])
    assert (mask.sum(axis=1) <= 6).all() and mask.sum(axis=1).mean() > 3
    assert_whole_words(mask, words)
    # From the config alone there is no table: said, not guessed.
    with pytest.raises(ValueError, match="config alone"):
        DynamicMLMMasking.from_config(config)(tensor(ids))
