"""Statistical and property tests of `DynamicMLMMasking`.

Statistical tests run at fixed seeds (call-time `seed=`) over at least 1e5
tokens, and compare what the layer draws with the distribution the contract
describes: binomial counts within 5 sigma, chi-square statistics below the
critical value at p = 1e-6 (computed here: exactly for df = 2, by
Wilson-Hilferty otherwise), per-position frequencies within a
Bonferroni-corrected normal bound. A correct layer fails one of them with
probability of order 1e-6; each would fail for a layer whose rates, split,
replacement draws or subsets are off by a few percent.

Exact tests check what must hold for every draw: excluded ids never
selected, labels, untouched positions, keras-hub targets, output kinds,
shapes and dtypes; hypothesis varies shapes, rates, special-id sets,
selection modes and caps.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from distribution_bounds import chi2_critical, chi_square, normal_upper_quantile
from mlm_reference import expected_exact_count
from outcome_counts import measured_counts
from keras_dynmask import DynamicMLMMasking
from keras_dynmask.kernels import random_bits

SIGMAS = 5.0
P_VALUE = 1e-6








def assert_binomial(count, n, p, sigmas=SIGMAS):
    mean = n * p
    bound = sigmas * math.sqrt(n * p * (1 - p))
    assert abs(count - mean) <= bound, (
        f"{count} successes in {n} trials: expected {mean:.1f} +- {bound:.1f} "
        f"(rate {count / n:.6f} vs {p:.6f})"
    )


def assert_frequencies(frequency, trials, p, label="frequency"):
    """Each of `frequency` is Binomial(trials, p): Bonferroni normal bound."""
    frequency = np.asarray(frequency)
    z = normal_upper_quantile(P_VALUE / (2 * len(frequency)))
    bound = z * math.sqrt(trials * p * (1 - p))
    deviation = np.abs(frequency - trials * p)
    assert deviation.max() <= bound, (
        f"{label}: {frequency} vs expected {trials * p:.1f} +- {bound:.1f}"
    )


def assert_pairs(selected, q, label="pair co-occurrence"):
    """Each pair of columns of bool `selected` [rows, n] is selected together
    in Binomial(rows, q) rows (Bonferroni normal bound over the pairs).

    Marginal frequencies alone pass a selection that takes a random block of
    neighbours; a uniform subset also spreads its pairs evenly."""
    rows, n = selected.shape
    on = selected.astype(np.int64)
    together = (on.T @ on)[np.triu_indices(n, 1)]
    z = normal_upper_quantile(P_VALUE / (2 * len(together)))
    bound = z * math.sqrt(rows * q * (1 - q))
    deviation = np.abs(together - rows * q)
    assert deviation.max() <= bound, (
        f"{label}: {together.min()}..{together.max()} vs expected {rows * q:.1f} +- {bound:.1f}"
    )


def call_seed(a, b=0):
    return tf.constant([a, b], tf.int32)


@pytest.fixture
def drawn_outcomes(monkeypatch):
    """Records `(probabilities, outcomes)` of every `random_bits.draw_outcomes`
    call the layer makes, so a test can measure what they realise."""
    calls = []
    draw_outcomes = random_bits.draw_outcomes

    def spy(shape, seed, probabilities):
        outcomes = draw_outcomes(shape, seed, probabilities)
        calls.append((list(probabilities), outcomes))
        return outcomes

    monkeypatch.setattr(random_bits, "draw_outcomes", spy)
    return calls


def assert_realised(probabilities, outcomes, rtol=1e-3):
    """Each outcome's share of all draw values is its probability (rtol)."""
    realised = measured_counts(outcomes) / 2**outcomes.bits
    for p, share in zip(probabilities, realised):
        assert abs(share - p) <= rtol * p, (probabilities, realised.tolist(), outcomes.bits)


def detectable_relative_shift(expected_count):
    """The relative change of a chi-square cell with `expected_count` that
    takes the statistic past the p = 1e-6 critical value (df = 2)."""
    return math.sqrt(chi2_critical(2) / expected_count)


# Layer configuration and NumPy references.

BERT_LIKE = dict(
    vocabulary_size=1000,
    mask_token_id=103,
    special_token_ids=[100, 101, 102],
    pad_token_id=0,
)


def excluded_ids(config):
    excluded = set(config.get("special_token_ids", ()))
    excluded.add(config["mask_token_id"])
    pad = config.get("pad_token_id", 0)
    if pad is not None:
        excluded.add(pad)
    return np.array(sorted(excluded), np.int64)


def allowed_ids(config):
    return np.setdiff1d(np.arange(config["vocabulary_size"]), excluded_ids(config))




def mixed_ids(rng, shape, config, excluded_share=0.1):
    """Uniform ids with about `excluded_share` of them special, pad or mask."""
    ids = rng.integers(0, config["vocabulary_size"], size=shape)
    excluded = excluded_ids(config)
    swap = rng.random(shape) < excluded_share
    ids[swap] = rng.choice(excluded, size=int(swap.sum()))
    return ids


def to_rows(tensor):
    """A list of 1-D NumPy rows from a `[T]`, `[B, T]` or ragged tensor."""
    if isinstance(tensor, tf.RaggedTensor):
        values = tensor.flat_values.numpy()
        splits = tensor.row_splits.numpy()
        return [values[splits[i] : splits[i + 1]] for i in range(len(splits) - 1)]
    array = np.asarray(tensor.numpy() if hasattr(tensor, "numpy") else tensor)
    return [array] if array.ndim == 1 else list(array)


def flat(tensor):
    if isinstance(tensor, tf.RaggedTensor):
        return tensor.flat_values.numpy().reshape(-1)
    return np.asarray(tensor).reshape(-1)


def check_selection(config, original, corrupted, selected):
    """Invariants of one masking, given the selection (lists of rows)."""
    excluded = excluded_ids(config)
    allowed = allowed_ids(config)
    mask_id = config["mask_token_id"]
    mask_token_rate = config.get("mask_token_rate", 0.8)
    random_token_rate = config.get("random_token_rate", 0.1)
    selection = config.get("selection", "bernoulli")
    cap = config.get("max_predictions")
    for ids, out, sel in zip(original, corrupted, selected):
        assert ids.shape == out.shape == sel.shape
        assert sel.dtype == bool
        assert not (sel & np.isin(ids, excluded)).any(), "selected an excluded id"
        np.testing.assert_array_equal(out[~sel], ids[~sel], "unselected id changed")
        replaced = out[sel]
        ok = (replaced == mask_id) | (replaced == ids[sel]) | np.isin(replaced, allowed)
        assert ok.all(), f"selected ids became {replaced[~ok]}"
        if mask_token_rate == 1:
            assert (replaced == mask_id).all()
        if mask_token_rate == 0 and random_token_rate == 0:
            np.testing.assert_array_equal(replaced, ids[sel])
        count = int(sel.sum())
        if selection == "exact":
            eligible = int((~np.isin(ids, excluded)).sum())
            expected = expected_exact_count(
                eligible, config.get("mask_rate", 0.15), cap
            )
            assert count == expected, (count, expected, eligible)
        if cap is not None:
            assert count <= cap


def check_targets(original, selected, positions, mask_ids, weights, width):
    positions = to_rows(positions)
    mask_ids = to_rows(mask_ids)
    weights = to_rows(weights)
    assert len(positions) == len(original)
    for ids, sel, pos, mid, w in zip(original, selected, positions, mask_ids, weights):
        assert pos.shape == mid.shape == w.shape == (width,)
        expected = np.flatnonzero(sel)
        count = len(expected)
        np.testing.assert_array_equal(pos[:count], expected)  # ascending
        np.testing.assert_array_equal(pos[count:], 0)
        np.testing.assert_array_equal(mid[:count], ids[expected])
        np.testing.assert_array_equal(mid[count:], 0)
        np.testing.assert_array_equal(w, [1.0] * count + [0.0] * (width - count))


def check_dict_output(config, ids_rows, out):
    ignore = config.get("ignore_index", -100)
    corrupted = to_rows(out["token_ids"])
    selected = to_rows(out["mask"])
    labels = to_rows(out["labels"])
    check_selection(config, ids_rows, corrupted, selected)
    for ids, sel, lab in zip(ids_rows, selected, labels):
        np.testing.assert_array_equal(lab, np.where(sel, ids, ignore))
    cap = config.get("max_predictions")
    if cap is not None:
        check_targets(
            ids_rows, selected, out["mask_positions"], out["mask_ids"],
            out["mask_weights"], cap,
        )
    else:
        assert "mask_positions" not in out
    return selected


def selection_of(config, ids, seed):
    """`(original rows, selected rows, corrupted rows)` in "dict" mode."""
    layer = DynamicMLMMasking(**{**config, "output_mode": "dict"})
    out = layer(ids, seed=seed)
    rows = to_rows(ids)
    selected = check_dict_output(config, rows, out)
    return rows, selected, to_rows(out["token_ids"])


# Selected fraction.


@pytest.mark.parametrize("kind", ["dense-int32", "ragged-int64"])
def test_selected_fraction_is_mask_rate_on_the_16_bit_path(kind):
    config = dict(BERT_LIKE, mask_rate=0.15)
    layer = DynamicMLMMasking(**config)
    bits = random_bits.choose_bits([0.15 * share for share in layer.corruption_shares])
    assert bits == 16
    rng = np.random.default_rng(1)
    if kind == "dense-int32":
        ids = tf.constant(mixed_ids(rng, (400, 512), config), tf.int32)
    else:
        lengths = rng.integers(0, 1000, size=400)
        values = mixed_ids(rng, (int(lengths.sum()),), config)
        ids = tf.RaggedTensor.from_row_lengths(tf.constant(values, tf.int64), lengths)
    rows, selected, _ = selection_of(config, ids, call_seed(11, 12))
    eligible = sum(int((~np.isin(r, excluded_ids(config))).sum()) for r in rows)
    assert eligible >= 100_000
    assert_binomial(sum(int(s.sum()) for s in selected), eligible, 0.15)


@pytest.mark.parametrize(
    "mask_rate, tokens",
    [
        # 16-bit thresholds would realise 0 or 1/65536: 0% or +67%.
        (0.6 / 2**16, 2**24),
        # 0.003 * 0.1 * 2**16 = 19.66 is 1.7% off: the kernel spends 32 bits.
        (0.003, 2**22),
    ],
)
def test_selected_fraction_is_mask_rate_on_the_32_bit_path(mask_rate, tokens, drawn_outcomes):
    config = dict(BERT_LIKE, mask_rate=mask_rate)
    layer = DynamicMLMMasking(**config, output_mode="fit")
    probabilities = [mask_rate * share for share in layer.corruption_shares]
    bits = random_bits.choose_bits(probabilities)
    assert bits == 32
    # The binomial count below sees a 0 or +67% rate (the 0.6 / 2**16 case)
    # but not the 0.3% a 16-bit threshold would cost at 0.003: the draws
    # the layer makes are measured over all their values for that.
    layer(tf.constant([[105, 106]]), seed=call_seed(20))
    assert len(drawn_outcomes) == 1
    called_with, outcomes = drawn_outcomes[0]
    np.testing.assert_allclose(called_with, probabilities)
    assert outcomes.bits == 32
    assert_realised(probabilities, outcomes)
    assert_realised([mask_rate], random_bits.Outcomes(None, 32, outcomes.thresholds[-1:]))
    # All ids eligible; chunks of 4M tokens, each with its own seed.
    chunk = tf.constant(
        np.random.default_rng(2).integers(104, 1000, size=(512, 8192)), tf.int32
    )
    total = 0
    chunks = tokens // (512 * 8192)
    for i in range(chunks):
        _, _, weights = layer(chunk, seed=call_seed(21, i))
        total += int(tf.reduce_sum(weights).numpy())
    assert_binomial(total, chunks * 512 * 8192, mask_rate)


# Split among selected tokens.


@pytest.mark.parametrize(
    "selection, mask_rate, mask_token_rate, random_token_rate, max_predictions",
    [
        ("bernoulli", 0.15, 0.8, 0.1, None),
        ("bernoulli", 0.15, 0.5, 0.3, None),
        ("bernoulli", 0.15, 0.8, 0.003, None),  # the 32-bit path
        ("bernoulli", 0.15, 0.8, 0.1, 20),
        ("exact", 0.15, 0.8, 0.1, None),
        ("exact", 0.2, 0.6, 0.25, None),
    ],
)
def test_split_among_selected_is_the_configured_one(
    selection, mask_rate, mask_token_rate, random_token_rate, max_predictions, drawn_outcomes
):
    config = dict(
        BERT_LIKE,
        mask_rate=mask_rate,
        mask_token_rate=mask_token_rate,
        random_token_rate=random_token_rate,
        selection=selection,
        max_predictions=max_predictions,
    )
    rng = np.random.default_rng(3)
    # About 300k selections (a binding cap needs short rows to get them).
    shape = (2400, 1024) if max_predictions is None else (17000, 160)
    ids = tf.constant(mixed_ids(rng, shape, config), tf.int32)
    rows, selected, corrupted = selection_of(config, ids, call_seed(31, 32))
    # What the draws realise, measured over all their values: this sees a
    # quantisation error of 0.1%, which no count of this size can.
    for probabilities, outcomes in drawn_outcomes:
        assert_realised(probabilities, outcomes)
    if selection == "bernoulli":
        shares = [mask_rate * s for s in (mask_token_rate, random_token_rate)]
        assert [p[:2] for p, _ in drawn_outcomes] == [pytest.approx(shares)]
    original = np.concatenate([r[s] for r, s in zip(rows, selected)])
    replaced = np.concatenate([c[s] for c, s in zip(corrupted, selected)])
    # Selected originals are never the mask token, and random draws never
    # give it: "mask" is exact. A random draw keeps the id with chance 1/|R|.
    n_allowed = len(allowed_ids(config))
    keep_rate = 1 - mask_token_rate - random_token_rate
    masked = int((replaced == config["mask_token_id"]).sum())
    unchanged = int((replaced == original).sum())
    changed = len(replaced) - masked - unchanged
    assert len(replaced) >= 250_000
    expected = np.array(
        [
            mask_token_rate,
            random_token_rate * (1 - 1 / n_allowed),
            keep_rate + random_token_rate / n_allowed,
        ]
    ) * len(replaced)
    statistic = chi_square([masked, changed, unchanged], expected)
    assert statistic < chi2_critical(2), (
        [masked, changed, unchanged], expected.round(1), statistic
    )
    # Power: a 3% shift of the mask or random share (an 80/10/10 that is
    # really 80/10.3/9.7) would fail the test.
    for share, cell in zip((mask_token_rate, random_token_rate), expected[:2]):
        if share >= 0.1:
            assert detectable_relative_shift(cell) <= 0.03, (share, cell)


# Random replacements.

SMALL_VOCABULARY = dict(
    vocabulary_size=40,
    mask_token_id=4,
    special_token_ids=[1, 2, 3, 10, 11, 20, 39],
    pad_token_id=0,
)


@pytest.mark.parametrize(
    "dtype, selection", [(tf.int32, "bernoulli"), (tf.int64, "exact")]
)
def test_random_replacements_are_uniform_over_allowed_ids(dtype, selection):
    config = dict(
        SMALL_VOCABULARY,
        mask_rate=0.5,
        mask_token_rate=0.0,
        random_token_rate=1.0,
        selection=selection,
    )
    allowed = allowed_ids(config)
    assert len(allowed) == 31
    ids = tf.constant(mixed_ids(np.random.default_rng(4), (800, 256), config), dtype)
    _, selected, corrupted = selection_of(config, ids, call_seed(41, 42))
    draws = np.concatenate([c[s] for c, s in zip(corrupted, selected)])
    assert len(draws) > 50_000
    counts = np.bincount(draws, minlength=config["vocabulary_size"])
    # Exact: no special, padding or mask id is ever drawn.
    assert counts[excluded_ids(config)].sum() == 0, counts[excluded_ids(config)]
    expected = np.full(len(allowed), len(draws) / len(allowed))
    statistic = chi_square(counts[allowed], expected)
    assert statistic < chi2_critical(len(allowed) - 1), (counts[allowed], statistic)


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64])
@pytest.mark.parametrize(
    "config",
    [
        dict(BERT_LIKE, mask_rate=0.15),
        # Allowed ids are only 6..11: every draw lands next to an excluded run.
        dict(vocabulary_size=12, mask_token_id=5, special_token_ids=[1, 2, 3, 4],
             pad_token_id=0, mask_rate=0.3, random_token_rate=0.5,
             mask_token_rate=0.2),
    ],
)
def test_random_replacements_never_produce_excluded_ids(dtype, config):
    ids = tf.constant(mixed_ids(np.random.default_rng(5), (1000, 512), config), dtype)
    layer = DynamicMLMMasking(**config)
    out = layer(ids, seed=call_seed(51)).numpy()
    original = ids.numpy()
    changed = out != original
    new_ids = out[changed]
    assert len(new_ids) > 1000
    excluded_but_mask = np.setdiff1d(excluded_ids(config), [config["mask_token_id"]])
    assert not np.isin(new_ids, excluded_but_mask).any()
    # Changed to something other than the mask: must be an allowed id.
    random_draws = new_ids[new_ids != config["mask_token_id"]]
    assert len(random_draws) > 1000
    assert np.isin(random_draws, allowed_ids(config)).all()
    # Excluded positions keep their id.
    at_excluded = np.isin(original, excluded_ids(config))
    np.testing.assert_array_equal(out[at_excluded], original[at_excluded])


# "exact" selection.


@pytest.mark.parametrize(
    "mask_rate, max_predictions, kind, dtype",
    [
        (0.15, None, "dense", tf.int32),
        (0.5, None, "ragged", tf.int64),  # many x.5 products: half to even
        (0.15, 10, "dense", tf.int64),
        (0.3, 5, "ragged", tf.int32),
        (0.01, None, "dense", tf.int32),  # at least one per sequence
    ],
)
def test_exact_counts_per_sequence(mask_rate, max_predictions, kind, dtype):
    config = dict(
        BERT_LIKE, mask_rate=mask_rate, selection="exact", max_predictions=max_predictions
    )
    rng = np.random.default_rng(6)
    batch, width = 1024, 128
    # Each row its own share of excluded ids, from none to all of them.
    shares = rng.random(batch)
    shares[:3] = [0.0, 1.0, 0.5]
    ids = np.stack([mixed_ids(rng, (width,), config, share) for share in shares])
    if kind == "dense":
        ids = np.where(np.arange(width) < rng.integers(0, width + 1, (batch, 1)), ids, 0)
        inputs = tf.constant(ids, dtype)
    else:
        lengths = rng.integers(0, width + 1, size=batch)
        inputs = tf.RaggedTensor.from_tensor(tf.constant(ids, dtype), lengths=lengths)
    rows, selected, _ = selection_of(config, inputs, call_seed(61, 62))
    eligible = np.array([(~np.isin(r, excluded_ids(config))).sum() for r in rows])
    assert eligible.sum() >= 30_000 and (eligible == 0).any()
    counts = np.array([s.sum() for s in selected])
    np.testing.assert_array_equal(
        counts, expected_exact_count(eligible, mask_rate, max_predictions)
    )


def test_exact_selection_is_a_uniform_subset():
    config = dict(BERT_LIKE, mask_rate=0.15, selection="exact")
    width, rows = 32, 20000
    pattern = np.random.default_rng(7).integers(104, 1000, size=width)
    pattern[0], pattern[9], pattern[17] = 101, 103, 102  # [CLS], [MASK], [SEP]
    pattern[-4:] = 0  # padding
    eligible = ~np.isin(pattern, excluded_ids(config))
    n = int(eligible.sum())
    k = int(expected_exact_count(n, 0.15, None))
    assert (n, k) == (25, 4)
    ids = tf.constant(np.tile(pattern, (rows, 1)), tf.int32)
    _, selected, _ = selection_of(config, ids, call_seed(71))
    selected = np.stack(selected)
    frequency = selected.sum(axis=0)
    assert not frequency[~eligible].any()
    assert_frequencies(frequency[eligible], rows, k / n, "position frequency")
    assert_pairs(selected[:, eligible], k * (k - 1) / (n * (n - 1)))


# "bernoulli" with max_predictions.


def binomial_pmf(n, p):
    return np.array([math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)])


@pytest.mark.parametrize("cap", [6, 40])
def test_bernoulli_cap_keeps_a_uniform_subset_of_min_count_cap(cap):
    config = dict(BERT_LIKE, mask_rate=0.2, max_predictions=cap)
    width, rows = 40, 8000
    pattern = np.random.default_rng(8).integers(104, 1000, size=width)
    pattern[[0, 5, 13, 29]] = [101, 103, 102, 100]
    pattern[-6:] = 0
    eligible = ~np.isin(pattern, excluded_ids(config))
    n = int(eligible.sum())
    assert n == 30
    ids = tf.constant(np.tile(pattern, (rows, 1)), tf.int64)
    _, selected, _ = selection_of(config, ids, call_seed(81, cap))
    selected = np.stack(selected)
    counts = selected.sum(axis=1)
    assert counts.max() <= cap  # exact
    # Count per row ~ min(Binomial(n, p), cap): chi-square over 0..cap, with
    # the tail (and, without a binding cap, bins too small) pooled.
    pmf = binomial_pmf(n, 0.2)
    top = min(cap, 12)
    probabilities = np.concatenate([pmf[:top], [pmf[top:].sum()]])
    observed = np.concatenate(
        [np.bincount(np.minimum(counts, top), minlength=top + 1)[: top + 1]]
    )
    assert (probabilities * rows >= 5).all()
    statistic = chi_square(observed, probabilities * rows)
    assert statistic < chi2_critical(top), (observed, (probabilities * rows).round(1))
    # Whatever the count, the kept positions are a uniform subset.
    mean_count = float((np.minimum(np.arange(n + 1), cap) * pmf).sum())
    frequency = selected.sum(axis=0)
    assert not frequency[~eligible].any()
    # Marginally, a position is kept with chance E[min(S, cap)] / n.
    assert_frequencies(frequency[eligible], rows, mean_count / n, "position frequency")
    # A pair is kept together with chance E[K (K - 1)] / (n (n - 1)), K = min(S, cap).
    kept = np.minimum(np.arange(n + 1), cap)
    pair_rate = float((kept * (kept - 1) * pmf).sum()) / (n * (n - 1))
    assert_pairs(selected[:, eligible], pair_rate)


# Exact properties at scale.


@pytest.mark.parametrize(
    "selection, max_predictions", [("bernoulli", None), ("bernoulli", 8), ("exact", 8)]
)
def test_exact_properties_over_a_large_batch(selection, max_predictions):
    config = dict(
        BERT_LIKE, mask_rate=0.3, selection=selection, max_predictions=max_predictions,
        ignore_index=-1,
    )
    ids = tf.constant(
        mixed_ids(np.random.default_rng(9), (400, 256), config, excluded_share=0.3),
        tf.int32,
    )
    # selection_of checks: excluded never selected, unselected untouched,
    # labels, exact counts, cap, keras-hub targets.
    rows, selected, _ = selection_of(config, ids, call_seed(91))
    assert sum(int(s.sum()) for s in selected) >= 3_000


@pytest.mark.parametrize("kind", ["dense", "ragged", "dict"])
def test_fit_sample_weight_is_the_selection(kind):
    # With every selected token masked, the selection is visible in x.
    config = dict(BERT_LIKE, mask_rate=0.15, mask_token_rate=1.0, random_token_rate=0.0)
    ids = mixed_ids(np.random.default_rng(10), (300, 400), config, excluded_share=0.2)
    dense = tf.constant(ids, tf.int64)
    if kind == "ragged":
        inputs = tf.RaggedTensor.from_tensor(dense, lengths=np.arange(300) + 100)
    elif kind == "dict":
        inputs = {"token_ids": dense, "segment_ids": tf.zeros_like(dense)}
    else:
        inputs = dense
    x, y, sample_weight = DynamicMLMMasking(**config, output_mode="fit")(
        inputs, seed=call_seed(101)
    )
    if kind == "dict":
        np.testing.assert_array_equal(x["segment_ids"].numpy(), 0)
        x = x["token_ids"]
    original = inputs["token_ids"] if kind == "dict" else inputs
    assert sample_weight.dtype == tf.float32
    x, y, w, o = flat(x), flat(y), flat(sample_weight), flat(original)
    np.testing.assert_array_equal(y, o)
    selected = (x == config["mask_token_id"]) & (o != config["mask_token_id"])
    np.testing.assert_array_equal(w, selected.astype(np.float32))
    assert_binomial(int(selected.sum()), int((~np.isin(o, excluded_ids(config))).sum()), 0.15)


# Output structure: every input kind x output mode x dtype.

INPUT_KINDS = ["vector", "matrix", "ragged", "dict", "dict-ragged"]
OUTPUT_MODES = ["ids", "fit", "dict", "dict-targets"]


def make_inputs(kind, dtype):
    rng = np.random.default_rng(12)
    config = SMALL_VOCABULARY
    matrix = mixed_ids(rng, (4, 15), config, excluded_share=0.2)
    lengths = np.array([15, 0, 7, 3])
    if kind == "vector":
        return tf.constant(matrix[0], dtype)
    if kind == "matrix":
        return tf.constant(matrix, dtype)
    ragged = tf.RaggedTensor.from_tensor(tf.constant(matrix, dtype), lengths=lengths)
    if kind == "ragged":
        return ragged
    extras = {
        "segment_ids": tf.ones([4, 15], tf.int32),
        "text": tf.constant(["a", "b", "c", "d"]),
    }
    if kind == "dict":
        return {"token_ids": tf.constant(matrix, dtype), **extras}
    return {"token_ids": ragged, **extras}


def assert_same_kind(tensor, like, dtype):
    assert tensor.dtype == dtype
    if isinstance(like, tf.RaggedTensor):
        assert isinstance(tensor, tf.RaggedTensor)
        np.testing.assert_array_equal(tensor.row_lengths(), like.row_lengths())
    else:
        assert isinstance(tensor, tf.Tensor) and not isinstance(tensor, tf.RaggedTensor)
        assert tensor.shape == like.shape


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64])
@pytest.mark.parametrize("mode", OUTPUT_MODES)
@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_output_kinds_shapes_and_dtypes(kind, mode, dtype):
    cap = 4 if mode == "dict-targets" else None
    config = dict(SMALL_VOCABULARY, mask_rate=0.5, max_predictions=cap)
    layer = DynamicMLMMasking(**config, output_mode=mode.split("-")[0])
    inputs = make_inputs(kind, dtype)
    out = layer(inputs, seed=call_seed(7, 7))
    ids = inputs["token_ids"] if isinstance(inputs, dict) else inputs
    rows = to_rows(ids)
    extras = {k: v for k, v in inputs.items() if k != "token_ids"} if isinstance(
        inputs, dict) else {}

    def check_extras(result):
        for key, value in extras.items():
            assert result[key].dtype == value.dtype
            np.testing.assert_array_equal(result[key].numpy(), value.numpy())

    if mode == "ids":
        if extras:
            assert isinstance(out, dict) and set(out) == set(inputs)
            check_extras(out)
            out = out["token_ids"]
        assert_same_kind(out, ids, dtype)
        corrupted = to_rows(out)
        for original, new in zip(rows, corrupted):
            assert original.shape == new.shape
            at_excluded = np.isin(original, excluded_ids(config))
            np.testing.assert_array_equal(new[at_excluded], original[at_excluded])
        return
    if mode == "fit":
        assert isinstance(out, tuple) and len(out) == 3
        x, y, sample_weight = out
        if extras:
            assert isinstance(x, dict) and set(x) == set(inputs)
            check_extras(x)
            x = x["token_ids"]
        assert_same_kind(x, ids, dtype)
        assert_same_kind(y, ids, dtype)
        assert_same_kind(sample_weight, ids, tf.float32)
        for original, label in zip(rows, to_rows(y)):
            np.testing.assert_array_equal(label, original)
        selected = [w == 1.0 for w in to_rows(sample_weight)]
        assert all(((w == 0.0) | (w == 1.0)).all() for w in to_rows(sample_weight))
        check_selection(config, rows, to_rows(x), selected)
        return
    expected_keys = {"token_ids", "labels", "mask"} | set(extras)
    if cap is not None:
        expected_keys |= {"mask_positions", "mask_ids", "mask_weights"}
    assert isinstance(out, dict) and set(out) == expected_keys
    check_extras(out)
    assert_same_kind(out["token_ids"], ids, dtype)
    assert_same_kind(out["labels"], ids, dtype)
    assert_same_kind(out["mask"], ids, tf.bool)
    if cap is not None:
        batch_shape = ids.shape[:-1] if ids.shape.rank == 1 else ids.shape[:1]
        width = tuple(batch_shape) + (cap,)
        assert out["mask_positions"].dtype == tf.int32
        assert out["mask_ids"].dtype == dtype
        assert out["mask_weights"].dtype == tf.float32
        for key in ("mask_positions", "mask_ids", "mask_weights"):
            assert not isinstance(out[key], tf.RaggedTensor)
            assert tuple(out[key].shape) == width
    check_dict_output(config, rows, out)


# Property-based: random shapes, rates, special ids, selection modes, caps.


@st.composite
def masking_cases(draw):
    vocabulary_size = draw(st.integers(8, 60))
    mask_token_id = draw(st.integers(0, vocabulary_size - 1))
    special = draw(st.lists(st.integers(0, vocabulary_size - 1), max_size=5, unique=True))
    pad = draw(st.one_of(st.none(), st.integers(0, vocabulary_size - 1)))
    mask_rate = draw(st.one_of(st.just(1.0), st.floats(0.01, 1.0)))
    mask_token_rate = draw(st.sampled_from([0.0, 0.8, 1.0]) | st.floats(0.0, 1.0))
    random_token_rate = draw(
        st.sampled_from([0.0, 1.0 - mask_token_rate]) | st.floats(0.0, 1.0 - mask_token_rate)
    )
    config = dict(
        vocabulary_size=vocabulary_size,
        mask_token_id=mask_token_id,
        special_token_ids=special,
        pad_token_id=pad,
        mask_rate=mask_rate,
        mask_token_rate=mask_token_rate,
        random_token_rate=random_token_rate,
        selection=draw(st.sampled_from(["bernoulli", "exact"])),
        max_predictions=draw(st.one_of(st.none(), st.integers(1, 8))),
        ignore_index=draw(st.sampled_from([-100, -1, 0])),
    )
    kind = draw(st.sampled_from(["vector", "matrix", "ragged", "dict"]))
    batch = draw(st.integers(0, 4)) if kind != "vector" else 1
    width = draw(st.integers(0, 24))
    excluded_share = draw(st.sampled_from([0.0, 0.3, 0.8, 1.0]))
    data_seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(data_seed)
    ids = mixed_ids(rng, (batch, width), config, excluded_share)
    dtype = draw(st.sampled_from([tf.int32, tf.int64]))
    if kind == "vector":
        inputs = tf.constant(ids[0], dtype)
    elif kind == "ragged":
        lengths = rng.integers(0, width + 1, size=batch)
        inputs = tf.RaggedTensor.from_tensor(tf.constant(ids, dtype), lengths=lengths)
    elif kind == "dict":
        inputs = {"token_ids": tf.constant(ids, dtype), "other": tf.constant(ids * 2)}
    else:
        inputs = tf.constant(ids, dtype)
    seed = draw(st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)))
    mode = draw(st.sampled_from(["dict", "fit", "ids"]))
    training = draw(st.sampled_from([None, None, None, False]))
    return config, inputs, dtype, seed, mode, training


@settings(deadline=None, max_examples=40)
@given(masking_cases())
def test_invariants_hold_for_random_configurations(case):
    config, inputs, dtype, seed, mode, training = case
    layer = DynamicMLMMasking(**config, output_mode=mode)
    out = layer(inputs, training=training, seed=tf.constant(seed, tf.int64))
    if training is False:
        # Nothing is selected, so "exact" counts do not apply.
        config = dict(config, selection="bernoulli")
    ids = inputs["token_ids"] if isinstance(inputs, dict) else inputs
    rows = to_rows(ids)
    if isinstance(inputs, dict):
        x = out[0] if mode == "fit" else out
        np.testing.assert_array_equal(x["other"].numpy(), inputs["other"].numpy())
    if mode == "dict":
        assert out["token_ids"].dtype == out["labels"].dtype == dtype
        selected = check_dict_output(config, rows, out)
        corrupted = to_rows(out["token_ids"])
    elif mode == "fit":
        x, y, sample_weight = out
        x = x["token_ids"] if isinstance(x, dict) else x
        assert x.dtype == y.dtype == dtype and sample_weight.dtype == tf.float32
        for original, label in zip(rows, to_rows(y)):
            np.testing.assert_array_equal(label, original)
        selected = [w == 1.0 for w in to_rows(sample_weight)]
        corrupted = to_rows(x)
        check_selection(config, rows, corrupted, selected)
    else:
        x = out["token_ids"] if isinstance(out, dict) else out
        assert x.dtype == dtype
        corrupted = to_rows(x)
        selected = None
        excluded = excluded_ids(config)
        for original, new in zip(rows, corrupted):
            np.testing.assert_array_equal(
                new[np.isin(original, excluded)], original[np.isin(original, excluded)]
            )
            ok = (new == original) | (new == config["mask_token_id"]) | np.isin(
                new, allowed_ids(config)
            )
            assert ok.all()
    if training is False:
        for original, new in zip(rows, corrupted):
            np.testing.assert_array_equal(new, original)
        if selected is not None:
            assert not any(s.any() for s in selected)
