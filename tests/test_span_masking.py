"""`SpanMasking` under TensorFlow: wav2vec 2.0's rule, padding, models, export.

The statistics compare each frame position's masked count over many
independent rows with its exact law, Binomial(rows, q_t), `q_t` computed
from the published rule in `frame_span_reference` (no simulation).
"""

import concurrent.futures
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from distribution_bounds import binomial_upper_critical
from frame_span_reference import arrangements
from frame_span_reference import frame_probabilities
from frame_span_reference import masked_given_count
from frame_span_reference import runs
from frame_span_reference import span_count_law
from keras_dynmask import SpanMasking

ROWS, WIDTH, DEPTH = 2048, 48, 4
# Half the rows hold 40 real frames, half 23; padding at the end.
LENGTHS = np.repeat([40, 23], ROWS // 2)
PADDING = np.arange(WIDTH)[None, :] < LENGTHS[:, None]
RULE = dict(mask_prob=0.3, mask_length=5, min_masks=1)
ALPHA = 1e-7  # per bound; about 200 bounds a test


def features(rows=ROWS, width=WIDTH, depth=DEPTH, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, width, depth)).astype("float32") + 3.0


def two_sided(n, p):
    """Counts outside `(low, high)` have probability below ALPHA each side."""
    if p <= 0:
        return -1, 1
    if p >= 1:
        return n - 1, n + 1
    return n - binomial_upper_critical(n, 1 - p, ALPHA), binomial_upper_critical(n, p, ALPHA)


def assert_positions_follow_the_rule(mask, lengths, allow_overlap):
    for length in np.unique(lengths):
        rows = mask[lengths == length]
        expected = frame_probabilities(int(length), allow_overlap=allow_overlap, **RULE)
        counts = rows[:, :length].sum(axis=0)
        for t, (count, chance) in enumerate(zip(counts, expected)):
            low, high = two_sided(len(rows), chance)
            assert low < count < high, (length, t, count, chance * len(rows))
        assert not rows[:, length:].any()  # padding


def test_the_reference_counts_disjoint_arrangements_exactly():
    for length, n, span in ((12, 2, 3), (11, 3, 2), (9, 1, 4)):
        masks = arrangements(length, n, span)
        enumerated = np.mean(masks, axis=0)
        np.testing.assert_allclose(masked_given_count(length, n, span, False), enumerated)


@pytest.mark.parametrize("allow_overlap, jit", [(True, False), (False, False), (False, True)])
def test_masked_frames_follow_the_rule_position_by_position(allow_overlap, jit):
    layer = SpanMasking(allow_overlap=allow_overlap, mask_value=0.0, **RULE)
    call = lambda x, p, s: layer(x, padding_mask=p, seed=s)  # noqa: E731
    if jit:
        call = tf.function(call, jit_compile=True)
    x = features()
    masked, mask = call(tf.constant(x), tf.constant(PADDING), tf.constant([3, 4 + jit]))
    mask, masked = mask.numpy(), masked.numpy()
    assert mask.dtype == bool and mask.shape == (ROWS, WIDTH)
    assert_positions_follow_the_rule(mask, LENGTHS, allow_overlap)
    np.testing.assert_array_equal(masked[mask], 0.0)
    np.testing.assert_array_equal(masked[~mask], x[~mask])
    if not allow_overlap:  # n disjoint spans of exactly mask_length frames
        for length in (40, 23):
            rows = mask[LENGTHS == length]
            counts = rows.sum(axis=1)
            assert all(r % 5 == 0 for row in rows for r in runs(row))
            law = span_count_law(length, allow_overlap=False, **RULE)
            assert set(counts // 5) <= set(law)
            more = max(law)  # the chance of int(x + u) = floor(x) + 1
            low, high = two_sided(len(rows), law[more])
            assert low < int((counts == 5 * more).sum()) < high, (length, law)


def test_padding_anywhere_is_never_masked_and_spans_follow_the_real_frames():
    # Same lengths and seed: padding at the start moves the mask right.
    x = tf.constant(features(64))
    lengths = np.random.default_rng(1).integers(0, WIDTH + 1, 64)
    right = np.arange(WIDTH)[None, :] < lengths[:, None]
    left = right[:, ::-1]
    holes = np.random.default_rng(2).random((64, WIDTH)) < 0.7
    layer = SpanMasking(mask_prob=0.5, mask_length=3, mask_value=-1.0)
    masks = {}
    for name, padding in (("right", right), ("left", left), ("holes", holes)):
        masked, mask = layer(x, padding_mask=padding, seed=[5, 6])
        masks[name] = mask.numpy()
        assert not (masks[name] & ~padding).any()
        np.testing.assert_array_equal(masked.numpy()[~padding], x.numpy()[~padding])
    for row, length in enumerate(lengths):
        np.testing.assert_array_equal(masks["left"][row, WIDTH - length:], masks["right"][row, :length])
    # With holes, spans count real frames: each row masks whole spans of them.
    real = [masks["holes"][row][holes[row]] for row in range(64)]
    assert all(sum(runs(r)) >= 3 * (holes[row].sum() >= 3) for row, r in enumerate(real))
    # lengths= is padding at the end.
    _, by_lengths = layer(x, lengths=lengths, seed=[5, 6])
    np.testing.assert_array_equal(by_lengths.numpy(), masks["right"])


def test_min_masks_and_what_fits():
    x = tf.constant(features(256, 40))
    lengths = np.repeat([40, 12, 4], [128, 64, 64])
    padding = np.arange(40)[None, :] < lengths[:, None]

    def counts(**options):
        options = {"mask_length": 5, "mask_value": 0.0, **options}
        _, mask = SpanMasking(**options)(x, padding_mask=padding, seed=[1, 1])
        return mask.numpy().sum(axis=1)

    # 0.01 * L / 5 < 1: min_masks spans everywhere they fit (12 frames: 2).
    few = counts(mask_prob=0.01, min_masks=3, allow_overlap=False)
    np.testing.assert_array_equal(few, np.repeat([15, 10, 0], [128, 64, 64]))
    overlapping = counts(mask_prob=0.01, min_masks=3)
    assert (overlapping[:192] >= 5).all() and (overlapping[:192] <= 15).all()
    assert (overlapping[192:] == 0).all()  # 4 frames < mask_length: no span
    # Asking for more spans than fit: every start (overlapping) or
    # floor(L / 5) disjoint spans: every real frame of 40, 10 of 12.
    np.testing.assert_array_equal(counts(mask_prob=1.0, min_masks=50), np.minimum(lengths, 40) * (lengths >= 5))
    np.testing.assert_array_equal(
        counts(mask_prob=1.0, min_masks=50, allow_overlap=False), np.repeat([40, 10, 0], [128, 64, 64])
    )


def test_a_mask_length_longer_than_every_sequence_masks_nothing():
    x = tf.constant(features(8, 20))
    masked, mask = SpanMasking(mask_length=21, min_masks=5, mask_value=0.0)(x)
    assert not mask.numpy().any()
    np.testing.assert_array_equal(masked.numpy(), x.numpy())


def test_feature_columns_follow_the_rule_and_are_shared_by_a_rows_frames():
    x = tf.constant(features(512, 6, 40))
    layer = SpanMasking(mask_prob=0.1, mask_length=6, min_masks=0, feature_mask_prob=0.3,
                        feature_mask_length=4, allow_overlap=False, mask_value=7.0)
    masked, mask = layer(x, seed=[8, 9])
    masked, mask = masked.numpy(), mask.numpy()
    assert mask.any() and not mask.all()
    zeroed = masked == 0.0  # the inputs are never 0
    np.testing.assert_array_equal(zeroed, np.broadcast_to(zeroed[:, :1, :], zeroed.shape))
    np.testing.assert_array_equal(masked[~zeroed & mask[:, :, None]], 7.0)
    columns = zeroed[:, 0, :]
    assert set(columns.sum(axis=1)) <= {12}  # 0.3 * 40 / 4 = 3 disjoint spans
    assert all(r % 4 == 0 for row in columns for r in runs(row))
    expected = masked_given_count(40, 3, 4, False)
    for t, count in enumerate(columns.sum(axis=0)):
        low, high = two_sided(512, expected[t])
        assert low < count < high, (t, count, expected[t] * 512)


def test_a_feature_span_longer_than_d_is_an_error():
    with pytest.raises(ValueError, match="feature_mask_length"):
        SpanMasking(feature_mask_prob=0.1, feature_mask_length=9, mask_value=0.0)(features(2, 5, 8))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"mask_prob": 0.0}, "mask_prob"),
        ({"mask_prob": 1.5}, "mask_prob"),
        ({"mask_length": 0}, "mask_length"),
        ({"min_masks": -1}, "min_masks"),
        ({"feature_mask_prob": -0.1}, "feature_mask_prob"),
        ({"feature_mask_length": 0}, "feature_mask_length"),
        ({"mask_value": "zeros"}, "mask_value"),
        ({"allow_overlap": "no"}, "allow_overlap"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=f"{name}={kwargs[name]!r}"):
        SpanMasking(**kwargs)


def test_bad_inputs_name_themselves():
    layer = SpanMasking(mask_value=0.0)
    with pytest.raises(ValueError, match="features of rank 2"):
        layer(np.zeros((4, 8), "float32"))
    with pytest.raises(ValueError, match="float `features`"):
        layer(np.zeros((4, 8, 2), "int32"))
    with pytest.raises(ValueError, match=r"padding_mask of shape \[4, 7\]"):
        layer(np.zeros((4, 8, 2), "float32"), padding_mask=np.ones((4, 7), bool))
    with pytest.raises(ValueError, match="padding_mask of rank 3"):
        layer(np.zeros((4, 8, 2), "float32"), padding_mask=np.ones((4, 8, 1), bool))
    with pytest.raises(ValueError, match="not both"):
        layer(np.zeros((4, 8, 2), "float32"), padding_mask=np.ones((4, 8), bool), lengths=[8] * 4)
    for bad in ([9, 8, 8, 8], [-1, 8, 8, 8]):  # lengths outside [0, T]: not a silent clip
        with pytest.raises(ValueError, match=r"lengths=\[-?\d"):
            layer(np.zeros((4, 8, 2), "float32"), lengths=np.array(bad))
    with pytest.raises(ValueError, match="`lengths` must be integers"):
        layer(np.zeros((4, 8, 2), "float32"), lengths=np.array([8.0, 8, 8, 8]))
    by_lengths = tf.function(lambda x, n: layer(x, lengths=n),
                             input_signature=[tf.TensorSpec([None, None, 2]), tf.TensorSpec([None], tf.int32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="lengths"):
        by_lengths(tf.zeros((4, 8, 2)), tf.constant([9, 8, 8, 8]))
    # Dims known only at run time: checked when the graph runs.
    check = tf.function(lambda x, p: layer(x, padding_mask=p),
                        input_signature=[tf.TensorSpec([None, None, 2]), tf.TensorSpec([None, None], tf.bool)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="padding_mask"):
        check(tf.zeros((4, 8, 2)), tf.ones((4, 7), tf.bool))


def test_seeds_training_flag_and_config():
    x = tf.constant(features(16))
    layer = SpanMasking(mask_prob=0.4, mask_length=3, mask_value=0.0)
    first, again = layer(x, seed=[1, 2])[1], layer(x, seed=tf.constant([1, 2], tf.int64))[1]
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert (layer(x, seed=[1, 3])[1].numpy() != first.numpy()).any()
    assert (layer(x)[1].numpy() != layer(x)[1].numpy()).any()  # unseeded: fresh
    seeded = [SpanMasking(mask_prob=0.4, mask_length=3, mask_value=0.0, seed=5) for _ in range(2)]
    for _ in range(2):
        np.testing.assert_array_equal(seeded[0](x)[1].numpy(), seeded[1](x)[1].numpy())
    unchanged, none = layer(x, training=False)
    assert unchanged is x or np.array_equal(unchanged.numpy(), x.numpy())
    assert not none.numpy().any()
    config = SpanMasking(mask_prob=0.2, mask_length=4, min_masks=0, allow_overlap=False,
                         feature_mask_prob=0.1, feature_mask_length=2, mask_value=0.5, seed=3,
                         name="spans").get_config()
    restored = SpanMasking.from_config(config)
    assert restored.get_config() == config
    assert layer.compute_output_shape((2, 9, 4)) == ((2, 9, 4), (2, 9))


def test_tf_data_takes_a_float_and_masks_afresh_each_epoch():
    keras.utils.set_random_seed(1)  # the tf.data pitfall: masks must still differ
    rows = features(32, 30)
    lengths = np.random.default_rng(3).integers(5, 31, 32)
    ds = tf.data.Dataset.from_tensor_slices({"x": rows, "n": lengths})
    ds = ds.map(lambda e: (e["x"][: e["n"]], tf.ones([e["n"]], tf.bool))).padded_batch(8)
    masker = SpanMasking(mask_prob=0.4, mask_length=3, mask_value=0.0)
    masked = ds.map(lambda x, p: (masker(x, padding_mask=p), p))
    epochs = [[(m.numpy(), p.numpy()) for (_, m), p in masked] for _ in range(2)]
    for (first, padding), (second, _) in zip(*epochs):
        assert not (first & ~padding).any()
    assert any((a != b).any() for (a, _), (b, _) in zip(*epochs))
    learned = SpanMasking(mask_length=3)
    with pytest.raises(ValueError, match="mask_value=0.0"):
        ds.map(lambda x, p: learned(x, padding_mask=p))


def test_learned_vector_eagerly_on_its_own_is_its_current_value():
    layer = SpanMasking(mask_prob=0.5, mask_length=2, seed=1)
    x = features(4, 10, 3)
    masked, mask = layer(x)
    vector = layer.mask_vector.numpy()
    assert vector.shape == (3,) and ((vector >= 0) & (vector < 1)).all()
    np.testing.assert_array_equal(masked.numpy()[mask.numpy()], np.broadcast_to(vector, (mask.numpy().sum(), 3)))


def speech_model(jit_compile=False):
    frames = keras.Input((WIDTH, DEPTH), name="frames")
    padding = keras.Input((WIDTH,), dtype="bool", name="padding_mask")
    masked, mask = SpanMasking(mask_prob=0.3, mask_length=5, seed=2)(frames, padding_mask=padding)
    hidden = keras.layers.Dense(DEPTH)(masked)
    model = keras.Model({"frames": frames, "padding_mask": padding}, {"hidden": hidden, "mask": mask})
    model.compile(keras.optimizers.SGD(0.1), loss={"hidden": "mse"}, jit_compile=jit_compile)
    return model


def test_inside_a_model_the_vector_trains_and_only_training_masks(tmp_path):
    # fit with jit_compile=True: tests/backends/test_span_masking_on_backends.py
    keras.utils.set_random_seed(3)
    model = speech_model()
    layer = next(l for l in model.layers if isinstance(l, SpanMasking))
    x = {"frames": features(64), "padding_mask": PADDING[:64]}
    before = layer.mask_vector.numpy().copy()
    model.fit(x, {"hidden": np.zeros((64, WIDTH, DEPTH), "float32")}, batch_size=32, verbose=0)
    assert not np.allclose(layer.mask_vector.numpy(), before)  # it got gradients
    out = model.predict(x, verbose=0)
    assert not out["mask"].any()
    trained = model(x, training=True)
    assert trained["mask"].numpy().any()
    path = str(tmp_path / "speech.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    restored_layer = next(l for l in restored.layers if isinstance(l, SpanMasking))
    np.testing.assert_array_equal(restored_layer.mask_vector.numpy(), layer.mask_vector.numpy())
    np.testing.assert_allclose(restored.predict(x, verbose=0)["hidden"], out["hidden"], rtol=1e-6)


def test_saved_model_serves_unmasked_and_masks_with_a_seed(tmp_path):
    model = speech_model()
    padding = np.arange(WIDTH)[None, :] < np.array([[48], [30], [10], [2]])
    x = {"frames": features(4), "padding_mask": padding}
    expected = model.predict(x, verbose=0)
    module = tf.Module()
    module.model = model
    module.masker = SpanMasking(mask_prob=0.5, mask_length=3, mask_value=0.0)
    spec = tf.TensorSpec([None, None, DEPTH], tf.float32)
    padding_spec = tf.TensorSpec([None, None], tf.bool)

    @tf.function(input_signature=[tf.TensorSpec([None, WIDTH, DEPTH]), tf.TensorSpec([None, WIDTH], tf.bool)])
    def serve(frames, padding_mask):
        return model({"frames": frames, "padding_mask": padding_mask})

    @tf.function(input_signature=[spec, padding_spec, tf.TensorSpec([2], tf.int64)])
    def mask(frames, padding_mask, seed):
        masked, mask = module.masker(frames, padding_mask=padding_mask, training=True, seed=seed)
        return {"masked": masked, "mask": mask}

    path = str(tmp_path / "export")
    tf.saved_model.save(module, path, signatures={"serve": serve, "mask": mask})
    loaded = tf.saved_model.load(path)
    served = loaded.signatures["serve"](frames=tf.constant(x["frames"]), padding_mask=tf.constant(padding))
    np.testing.assert_allclose(served["hidden"].numpy(), expected["hidden"], rtol=1e-6)
    assert not served["mask"].numpy().any()
    frames = tf.constant(x["frames"])
    args = dict(frames=frames, padding_mask=tf.constant(padding), seed=tf.constant([4, 5], tf.int64))
    first, second = loaded.signatures["mask"](**args), loaded.signatures["mask"](**args)
    np.testing.assert_array_equal(first["mask"].numpy(), second["mask"].numpy())
    assert first["mask"].numpy().any() and not (first["mask"].numpy() & ~padding).any()
    direct = module.masker(frames, padding_mask=padding, seed=tf.constant([4, 5], tf.int64))[1]
    np.testing.assert_array_equal(first["mask"].numpy(), direct.numpy())


def test_first_calls_from_many_threads_build_the_layer_once(monkeypatch):
    # A thread-pool map (grain's MapDataset) makes a new layer's first calls at once.
    def slow_add_weight(self, *args, **kwargs):
        time.sleep(0.05)  # every thread reaches `build` before the first is done
        return keras.layers.Layer.add_weight(self, *args, **kwargs)

    monkeypatch.setattr(SpanMasking, "add_weight", slow_add_weight)
    layer = SpanMasking(mask_prob=0.5, mask_length=2, seed=1)
    call = lambda _: layer(features(2, 10, 3))[1].numpy()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        masks = list(pool.map(call, range(4)))
    assert len(layer.weights) == 1 and all(mask.any() for mask in masks)
