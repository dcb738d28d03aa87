"""examples/pretrain_mlm.py --granularity word|span: tiny runs end to end."""

import numpy as np
import pytest
import tensorflow as tf

import id_level_export
import pretrain_mlm

TEXT = "unbelievably interesting tokenization of wordpieces, again and again"


def continuations(tokenizer, ids):
    """bool like `ids`: True at a `##` piece (one that continues a word)."""
    return np.array([t.startswith("##") for t in tokenizer.vocabulary])[ids]


def assert_whole_words(mask, continues):
    """A continuation piece is selected exactly when the piece before it is."""
    assert mask.any()
    before = np.roll(mask, 1, axis=1)
    np.testing.assert_array_equal(mask[continues], before[continues])


def test_flag_defaults_to_token_and_rejects_others(tiny_flags):
    assert pretrain_mlm.parse_args(tiny_flags).granularity == "token"
    with pytest.raises(SystemExit):
        pretrain_mlm.parse_args(tiny_flags + ["--granularity", "sentence"])


@pytest.mark.parametrize("granularity", ["word", "span"])
def test_trains_and_masks_whole_words(train_tiny, granularity, monkeypatch):
    if granularity == "word":
        # The exports differ between granularities only in the masker they
        # hold; the span run below writes and serves them (seconds saved).
        monkeypatch.setattr(pretrain_mlm, "export_for_serving", lambda *a, **k: None)
        monkeypatch.setattr(id_level_export, "export_mlm_ids", lambda *a, **k: None)
    result = train_tiny(pretrain_mlm, f"mlm_{granularity}", "--granularity", granularity)
    assert np.isfinite(result["history"]["loss"][0])
    assert np.isfinite(result["evaluation"]["loss"])
    tokenizer = result["tokenizer"]
    masker = pretrain_mlm.make_masker(
        tokenizer, 0.3, "dict", seed=0, max_predictions=12, granularity=granularity
    )
    assert masker.granularity == granularity
    ids = tokenizer([TEXT] * 16)
    continues = continuations(tokenizer, ids.numpy())
    assert_whole_words(masker(ids)["mask"].numpy(), continues)
    if granularity == "span":
        # The id-level export's `mask` signature masks whole words too.
        served = tf.saved_model.load(result["ids_export_dir"]).signatures["mask"]
        outputs = served(token_ids=ids, seed=tf.constant([3, 4], tf.int64))
        mask = outputs["mask"].numpy()
        assert_whole_words(mask, continues)
        np.testing.assert_array_equal(outputs["token_ids"].numpy()[~mask], ids.numpy()[~mask])
