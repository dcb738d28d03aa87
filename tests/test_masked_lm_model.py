"""MaskedLMModel: the loss on the selected positions only, fit, evaluate, save."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dynmask import DynamicMLMMasking
from keras_dynmask import MaskedLMModel

VOCAB = 200
MASK = 4
SPECIALS = [1, 2, 3]


def make_layer(**kwargs):
    config = dict(
        vocabulary_size=VOCAB, mask_token_id=MASK, special_token_ids=SPECIALS
    )
    config.update(kwargs)
    return DynamicMLMMasking(**config)


def random_ids(batch=8, length=32, seed=0, dtype="int32"):
    ids = np.random.RandomState(seed).randint(5, VOCAB, size=(batch, length))
    return ids.astype(dtype)


def tiny_backbone():
    return keras.Sequential(
        [keras.Input((None,), dtype="int32"), keras.layers.Embedding(VOCAB, 8),
         keras.layers.Dense(VOCAB)]
    )


def test_masked_lm_loss_ignores_unselected_positions():
    backbone = tiny_backbone()
    masking = make_layer(output_mode="fit", mask_rate=0.3)
    x, y, weights = masking(tf.constant(random_ids()), seed=tf.constant([1, 1]))
    logits = backbone(x)
    model = MaskedLMModel(backbone, masking)
    model.compile()
    base = model.loss(y, logits, weights)
    # Change labels and logits wherever the weight is 0: nothing moves.
    unselected = tf.equal(weights, 0.0)
    other_labels = tf.where(unselected, (y + 7) % VOCAB, y)
    other_logits = tf.where(unselected[..., None], logits * -3.0 + 1.0, logits)
    changed = model.loss(other_labels, other_logits, weights)
    np.testing.assert_allclose(changed, base, rtol=1e-6)
    # It is the mean over selected positions, not over all positions.
    per_token = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    selected_mean = tf.reduce_sum(per_token * weights) / tf.reduce_sum(weights)
    np.testing.assert_allclose(base, selected_mean, rtol=1e-5)


def test_masked_lm_model_fits_from_raw_ids_and_evaluates_reproducibly(tmp_path):
    model = MaskedLMModel(tiny_backbone(), make_layer(output_mode="fit", mask_rate=0.3))
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    ids = random_ids(64, 12)
    history = model.fit(ids, epochs=3, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    first = model.evaluate(ids, batch_size=16, verbose=0, return_dict=True)
    second = model.evaluate(ids, batch_size=16, verbose=0, return_dict=True)
    assert first == second
    # predict and call run the backbone alone, unmasked.
    backbone_logits = model.backbone.predict(ids[:2], verbose=0)
    assert backbone_logits.shape == (2, 12, VOCAB)
    np.testing.assert_allclose(model.predict(ids[:2], verbose=0), backbone_logits, rtol=1e-6)
    np.testing.assert_allclose(model(ids[:2]), backbone_logits, rtol=1e-6)
    path = tmp_path / "mlm.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(ids[:2], verbose=0),
                               model.predict(ids[:2], verbose=0), rtol=1e-5)


class CountingMaskedLMModel(MaskedLMModel):
    """Counts how often Keras traces the train step."""

    traces = 0

    def train_step(self, data):
        type(self).traces += 1
        return super().train_step(data)


@pytest.mark.parametrize("trainable_embedding", [True, False])
def test_fit_traces_the_train_step_once_and_trains_what_is_trainable(trainable_embedding):
    """The optimizer is built before the first trace, from the variables
    trainable at `fit` (not at `compile`)."""
    backbone = tiny_backbone()
    model = CountingMaskedLMModel(backbone, make_layer(output_mode="fit", mask_rate=0.3))
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    embedding = backbone.layers[0]
    embedding.trainable = trainable_embedding  # after compile, before fit
    frozen = [v.numpy() for v in embedding.trainable_weights + embedding.non_trainable_weights]
    CountingMaskedLMModel.traces = 0
    model.fit(random_ids(32, 12), epochs=2, batch_size=16, verbose=0)
    assert CountingMaskedLMModel.traces == 1
    after = [v.numpy() for v in embedding.trainable_weights + embedding.non_trainable_weights]
    moved = any(not np.array_equal(a, b) for a, b in zip(frozen, after))
    assert moved == trainable_embedding


def test_masked_lm_model_rejects_wrong_masking_mode():
    with pytest.raises(ValueError, match="output_mode='fit'"):
        MaskedLMModel(tiny_backbone(), make_layer(output_mode="ids"))


def test_call_and_export_run_the_backbone_alone_without_the_package(
    tmp_path, no_keras_dynmask_python
):
    # A masking that would turn every id into MASK: any masking at serving
    # time would show.
    masking = make_layer(output_mode="fit", mask_rate=1.0, mask_token_rate=1.0,
                         random_token_rate=0.0)
    model = MaskedLMModel(tiny_backbone(), masking)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    ids = random_ids(16, 9)
    model.fit(ids, epochs=1, batch_size=8, verbose=0)
    expected = model.backbone(ids).numpy()
    masked_everywhere = model.backbone(np.full_like(ids, MASK)).numpy()
    assert not np.allclose(expected, masked_everywhere)
    np.testing.assert_allclose(model(ids).numpy(), expected, rtol=1e-6)
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "expected.npy", expected)
    # The signature is given: a subclassed model's inferred one follows the
    # dtype Keras fed it in fit (float32 for NumPy ids).
    model.export(
        str(tmp_path / "export"),
        input_signature=[tf.TensorSpec([None, None], tf.int32)],
        verbose=False,
    )
    no_keras_dynmask_python(
        f"""
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({str(tmp_path / "export")!r})
        ids = np.load({str(tmp_path / "ids.npy")!r})
        expected = np.load({str(tmp_path / "expected.npy")!r})
        np.testing.assert_allclose(loaded.serve(tf.constant(ids)).numpy(), expected,
                                   rtol=1e-5, atol=1e-6)
        out = loaded.signatures["serving_default"](tf.constant(ids))
        np.testing.assert_allclose(list(out.values())[0].numpy(), expected,
                                   rtol=1e-5, atol=1e-6)
        print("ok")
        """
    )


def test_default_export_signature_takes_integer_ids(tmp_path):
    # Keras alone would infer a float32 signature from the build shapes.
    model = MaskedLMModel(tiny_backbone(), make_layer(output_mode="fit"))
    model.compile(optimizer="adam")
    ids = random_ids()
    model.fit(ids, epochs=1, batch_size=4, verbose=0)
    model.export(str(tmp_path / "export"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
    (spec,) = served.structured_input_signature[1].values()
    assert spec.dtype == tf.int32 and spec.shape.as_list() == [None, None]
    outputs = served(token_ids=tf.constant(ids))
    (logits,) = outputs.values()
    np.testing.assert_allclose(logits.numpy(), model.backbone(ids).numpy(), rtol=1e-5, atol=1e-5)
