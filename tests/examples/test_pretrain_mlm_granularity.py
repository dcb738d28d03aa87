"""examples/pretrain_mlm.py --granularity word|span: a tiny run end to end."""

import numpy as np
import pytest

import pretrain_mlm


def test_flag_defaults_to_token_and_rejects_others(tiny_flags):
    assert pretrain_mlm.parse_args(tiny_flags).granularity == "token"
    with pytest.raises(SystemExit):
        pretrain_mlm.parse_args(tiny_flags + ["--granularity", "sentence"])


@pytest.mark.parametrize("granularity", ["word", "span"])
def test_trains_and_masks_whole_words(train_tiny, granularity):
    result = train_tiny(pretrain_mlm, f"mlm_{granularity}", "--granularity", granularity)
    assert np.isfinite(result["history"]["loss"][0])
    assert np.isfinite(result["evaluation"]["loss"])
    tokenizer = result["tokenizer"]
    masker = pretrain_mlm.make_masker(
        tokenizer, 0.3, "dict", seed=0, max_predictions=12, granularity=granularity
    )
    assert masker.granularity == granularity
    ids = tokenizer(["unbelievably interesting tokenization of wordpieces, again and again"] * 16)
    mask = masker(ids)["mask"].numpy()
    assert mask.any()
    continues = np.array([t.startswith("##") for t in tokenizer.vocabulary])[ids.numpy()]
    # A continuation piece is selected exactly when the piece before it is.
    before = np.roll(mask, 1, axis=1)
    np.testing.assert_array_equal(mask[continues], before[continues])
