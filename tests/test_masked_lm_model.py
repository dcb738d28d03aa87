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
    assert model.predict(ids[:2], verbose=0).shape == (2, 12, VOCAB)
    path = tmp_path / "mlm.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(ids[:2], verbose=0),
                               model.predict(ids[:2], verbose=0), rtol=1e-5)


def test_masked_lm_model_rejects_wrong_masking_mode():
    with pytest.raises(ValueError, match="output_mode='fit'"):
        MaskedLMModel(tiny_backbone(), make_layer(output_mode="ids"))
