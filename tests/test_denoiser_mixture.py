"""DenoiserMixture: UL2's denoisers drawn per example, each example well formed."""

import json
import math
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask import DenoiserMixture
from keras_dynmask import MaskRateLogger
from keras_dynmask import SpanCorruption
from keras_dynmask.data import mask_dataset

sys.path.insert(0, os.path.dirname(__file__))
from distribution_bounds import chi2_critical  # noqa: E402
from distribution_bounds import chi_square  # noqa: E402
from distribution_bounds import normal_upper_quantile  # noqa: E402
from span_reference import expected_counts  # noqa: E402
from span_reference import restore  # noqa: E402
from span_reference import strip  # noqa: E402

VOCAB = 400
EOS = 1
NUM_SENTINELS = 100
SENTINELS = [VOCAB - 1 - i for i in range(NUM_SENTINELS)]
MODE_IDS = [299, 298, 297]  # the defaults: just below the sentinels


def make_layer(**kwargs):
    config = dict(vocabulary_size=VOCAB, num_sentinels=NUM_SENTINELS, eos_id=EOS)
    config.update(kwargs)
    return DenoiserMixture(**config)


def random_rows(batch=300, width=80, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, 290, size=(batch, width)).astype("int32")
    lengths = rng.integers(0, width + 1, size=batch)
    lengths[:4] = [0, 1, 2, width]
    for row, n in enumerate(lengths):
        ids[row, n:] = 0
    return ids, lengths


def check_examples(layer, out, ids, lengths):
    """Each example well formed for the denoiser it drew; returns the draws."""
    chosen = out["denoiser"].numpy()
    inputs, targets = out["inputs"].numpy(), out["targets"].numpy()
    for row, n in enumerate(lengths):
        got_inputs = strip(inputs[row], eos_id=EOS)
        got_targets = strip(targets[row], eos_id=EOS)
        if n == 0:  # padding only: no denoiser, no mode token, just the eos
            assert chosen[row] == -1 and got_inputs == got_targets == []
            continue
        mode, mean, density = layer.denoisers[chosen[row]]
        assert got_inputs[0] == layer.mode_token_ids["RXS".index(mode)]
        got_inputs = got_inputs[1:]
        original = ids[row][:n].tolist()
        if mode == "S":
            assert not set(got_inputs + got_targets) & set(SENTINELS)
            assert got_inputs + got_targets == original
            if n >= 2:
                assert 1 <= len(got_inputs) <= n - 1
            else:
                assert got_targets == []
            continue
        noise, spans = expected_counts(n, density, mean, NUM_SENTINELS)
        assert len(got_targets) == noise + spans
        assert sum(t in SENTINELS for t in got_inputs) == spans
        assert restore(got_inputs, got_targets, SENTINELS) == original
    return chosen


def test_default_mixture_is_ul2s_seven_with_their_mode_tokens():
    layer = make_layer()
    assert layer.denoisers == [
        ("R", 3.0, 0.15), ("R", 8.0, 0.15), ("X", 3.0, 0.5), ("X", 8.0, 0.5),
        ("X", 64.0, 0.15), ("X", 64.0, 0.5), ("S", None, None),
    ]
    assert layer.mode_token_ids == MODE_IDS
    assert layer.rates == pytest.approx([1 / 7] * 7)


def test_every_example_is_well_formed_for_its_denoiser():
    ids, lengths = random_rows()
    layer = make_layer()
    for seed in range(3):
        chosen = check_examples(layer, layer(ids, seed=tf.constant([seed, 0])), ids, lengths)
        assert set(chosen) == set(range(7)) | {-1}


@pytest.mark.parametrize("rates", [None, [1, 2, 3, 0, 4, 0.5, 2]])
def test_denoiser_frequencies_are_within_binomial_bounds(rates):
    layer = make_layer(rates=rates)
    rows = 20000
    ids = np.tile(np.arange(2, 42, dtype=np.int32), (rows, 1))
    chosen = layer(ids, seed=tf.constant([9, 9]))["denoiser"].numpy()
    counts = np.bincount(chosen, minlength=7)
    z = normal_upper_quantile(1e-6 / 7)
    for count, rate in zip(counts, layer.rates):
        spread = z * math.sqrt(rows * rate * (1 - rate))
        assert abs(count - rows * rate) <= spread + 1e-9
    positive = [r > 0 for r in layer.rates]
    expected = [rows * r for r in layer.rates if r > 0]
    assert chi_square(counts[positive], expected) < chi2_critical(sum(positive) - 1)


def test_custom_denoisers_mode_tokens_and_fixed_lengths():
    layer = make_layer(
        denoisers=[["X", 2, 0.4], ["S", None, None]],
        rates=[3, 1],
        mode_token_ids=[5, 6, 7],
        inputs_length=90,
        targets_length=80,  # an S row of 80 tokens may target 79 + eos; fixed lengths cut longer
    )
    ids, lengths = random_rows(batch=64)
    out = layer(ids, seed=tf.constant([1, 5]))
    assert out["inputs"].shape == (64, 90) and out["targets"].shape == (64, 80)
    chosen = check_examples(layer, out, ids, lengths)
    real = lengths > 0
    assert set(out["inputs"].numpy()[real, 0]) <= {6, 7} and set(chosen[real]) == {0, 1}


def test_s_denoiser_split_points_are_uniform():
    layer = make_layer(denoisers=[["S", None, None]])
    rows = 12000
    ids = np.tile(np.arange(2, 12, dtype=np.int32), (rows, 1))
    out = layer(ids, seed=tf.constant([2, 2]))
    prefix = np.array([len(strip(r, eos_id=EOS)) - 1 for r in out["inputs"].numpy()])
    counts = np.bincount(prefix, minlength=10)
    assert counts[0] == 0 and counts[1:].sum() == rows
    assert chi_square(counts[1:], [rows / 9] * 9) < chi2_critical(8)


def test_ragged_rank_one_dict_and_not_training():
    ids, lengths = random_rows(batch=20)
    layer = make_layer()
    seed = tf.constant([4, 4])
    ragged = tf.ragged.constant([r[:n].tolist() for r, n in zip(ids, lengths)])
    out = layer(ragged, seed=seed)
    dense = layer(ids, seed=seed)
    for key in ("inputs", "targets"):
        np.testing.assert_array_equal(out[key].to_tensor().numpy(), dense[key].numpy())
    check_examples(layer, dense, ids, lengths)
    single = layer(ids[5], seed=seed)
    assert single["denoiser"].shape == () and single["inputs"].shape.rank == 1
    with_rest = layer({"token_ids": tf.constant(ids), "id": tf.range(20)}, seed=seed)
    assert sorted(with_rest) == ["denoiser", "id", "inputs", "targets"]
    plain = layer(ids, training=False)
    assert set(plain["denoiser"].numpy()) == {-1}
    assert strip(plain["inputs"][3].numpy(), eos_id=EOS) == ids[3][: lengths[3]].tolist()
    with pytest.raises(ValueError, match="must not hold the output keys"):
        layer({"token_ids": tf.constant(ids), "denoiser": tf.range(20)})


@pytest.mark.parametrize(
    "kwargs, quoted",
    [
        (dict(denoisers=[]), "denoisers=[]"),
        (dict(denoisers=[("Y", 3, 0.1)]), "denoisers[0][0]='Y'"),
        (dict(denoisers=[("R", 0.5, 0.1)]), "denoisers[0][1]=0.5"),
        (dict(denoisers=[("R", 3, 1.0)]), "denoisers[0][2]=1.0"),
        (dict(denoisers=[("R", 3)]), "denoisers[0]=('R', 3)"),
        (dict(denoisers=[("R", 3, 0.15), ("S", 3, 0.1)]), "denoisers[1]=('S', 3, 0.1)"),
        (dict(rates=[1, 2]), "rates=[1, 2]"),
        (dict(rates=5), "rates=5"),
        (dict(rates="1111111"), "rates='1111111'"),
        (dict(rates=[0] * 7), "rates=[0, 0, 0, 0, 0, 0, 0]"),
        (dict(rates=[-1] + [1] * 6), "rates[0]=-1"),
        (dict(mode_token_ids=[5, 6]), "mode_token_ids=[5, 6]"),
        (dict(mode_token_ids=[5, 6, VOCAB]), f"mode_token_ids=[5, 6, {VOCAB}]"),
        (dict(mode_token_ids=[5, 6, VOCAB - 1]), f"mode_token_ids=[5, 6, {VOCAB - 1}]"),
        (dict(mode_token_ids=[5, 5, 6]), "mode_token_ids=[5, 5, 6]"),
        (dict(pad_token_id=MODE_IDS[1]), f"pad_token_id={MODE_IDS[1]}"),
        (dict(mode_token_ids=[5, 6, 7], eos_id=7), "eos_id=7"),
    ],
)
def test_bad_configuration_names_the_argument(kwargs, quoted):
    with pytest.raises(ValueError) as error:
        make_layer(**kwargs)
    assert quoted in str(error.value)


def test_config_round_trips_and_mask_dataset_is_reproducible():
    layer = make_layer(rates=[1, 1, 1, 1, 1, 1, 4], seed=3)
    config = layer.get_config()
    json.dumps(config)
    clone = DenoiserMixture.from_config(config)
    assert clone.get_config() == config and clone.denoisers == layer.denoisers
    ids, _ = random_rows(batch=16)
    ds = tf.data.Dataset.from_tensor_slices(ids).batch(8)
    first = [x["inputs"].numpy().tobytes() for x in mask_dataset(ds, clone, seed=1)]
    again = [x["inputs"].numpy().tobytes() for x in mask_dataset(ds, layer, seed=1)]
    assert first == again


def test_runs_under_xla_with_fixed_lengths():
    layer = make_layer(inputs_length=90, targets_length=82)
    compiled = tf.function(lambda ids, seed: layer(ids, seed=seed), jit_compile=True)
    ids, lengths = random_rows(batch=100)
    out = compiled(tf.constant(ids), tf.constant([3, 8]))
    assert out["inputs"].shape == (100, 90)
    check_examples(layer, out, ids, lengths)


def test_rows_of_padding_only_are_left_as_span_corruption_leaves_them():
    ids = np.zeros([4, 12], np.int32)
    ids[1, :5] = np.arange(10, 15)
    seed = tf.constant([5, 6])
    for eos_id in (EOS, None):
        for fixed in ({}, {"inputs_length": 14, "targets_length": 12}):
            mixture = make_layer(eos_id=eos_id, **fixed)
            spans = SpanCorruption(VOCAB, num_sentinels=NUM_SENTINELS, eos_id=eos_id, **fixed)
            empty = tf.constant(ids[[0, 2, 3]])
            calls = [lambda layer, x: layer(x, seed=seed)]
            if fixed and eos_id is not None:  # and under XLA
                calls.append(tf.function(lambda layer, x: layer(x, seed=seed), jit_compile=True))
            for call in calls:
                mixed, plain = call(mixture, empty), call(spans, empty)
                for key in ("inputs", "targets"):
                    np.testing.assert_array_equal(mixed[key], plain[key])
                assert mixed["denoiser"].numpy().tolist() == [-1, -1, -1]
            out = mixture(tf.constant(ids), seed=seed)
            assert out["denoiser"].numpy()[[0, 2, 3]].tolist() == [-1, -1, -1]
            assert 0 <= int(out["denoiser"][1]) < 7
            assert int(out["inputs"][1, 0]) in MODE_IDS
            row = out["inputs"].numpy()[0].tolist()
            assert row == ([] if eos_id is None else [eos_id]) + [0] * (len(row) - (eos_id is not None))


def test_span_api_of_a_mixture_answers_or_names_the_denoisers():
    layer = make_layer()
    assert layer.noise_density is None and layer.mean_noise_span_length is None
    assert layer.schedule_step is None
    with pytest.raises(ValueError, match="denoisers"):
        layer.current_noise_density()
    with pytest.raises(ValueError, match="denoisers"):
        MaskRateLogger(layer)


@pytest.mark.parametrize(
    "denoisers, rates, eos_id",
    [
        (None, None, EOS),
        ([["R", 3.0, 0.15], ["X", 8.0, 0.5]], None, EOS),
        ([["R", 3.0, 0.15], ["X", 3.0, 0.5]], None, None),
        ([["R", 3.0, 0.15], ["S", None, None]], [1, 0], EOS),  # S never drawn
    ],
)
def test_lengths_for_fits_every_denoiser_and_counts_the_mode_token(denoisers, rates, eos_id):
    wanted = 40
    config = {"eos_id": eos_id, "rates": rates}
    if denoisers is not None:
        config["denoisers"] = denoisers
    layer = make_layer(**config)
    tokens, targets = layer.lengths_for(wanted)
    drawn = [d for d, r in zip(layer.denoisers, layer.rates) if r > 0]
    rows = 3000
    longest = {}
    for extra in (0, 1):  # rows of `tokens` tokens fit, one more does not
        n = tokens + extra
        ids = np.tile(np.arange(2, 2 + n, dtype=np.int32), (rows, 1))
        for denoiser in drawn:
            single = make_layer(eos_id=eos_id, denoisers=[denoiser])
            out = single(ids, seed=tf.constant([n, 1]))
            inputs_lengths = [len(strip(r, eos_id=eos_id)) + (eos_id is not None) for r in out["inputs"].numpy()]
            targets_lengths = [len(strip(r, eos_id=eos_id)) + (eos_id is not None) for r in out["targets"].numpy()]
            longest[extra, tuple(denoiser)] = (max(inputs_lengths), max(targets_lengths))
    assert all(longest[0, tuple(d)][0] <= wanted for d in drawn), longest
    assert any(longest[1, tuple(d)][0] > wanted for d in drawn), longest
    assert max(longest[0, tuple(d)][1] for d in drawn) == targets
    if drawn == layer.denoisers[:1]:
        # One R-denoiser: SpanCorruption's answer, plus the mode token.
        alone = SpanCorruption(VOCAB, 0.15, 3.0, num_sentinels=NUM_SENTINELS, eos_id=eos_id)
        assert tokens == alone.lengths_for(wanted - 1).tokens_length
