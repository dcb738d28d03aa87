"""keras_dynmask: dynamic masks for Transformer training, as Keras layers.

`import keras_dynmask` loads Keras and NumPy only. TensorFlow is imported
at the first TensorFlow op a layer runs (`keras_dynmask.lazy_tensorflow`):
in `tf.data`, on TensorFlow tensors, under the TensorFlow backend, or in
the layers and modes that compute with TensorFlow on every backend. So
`PaddingMask`, `CausalMask` and `DynamicMLMMasking`'s token masking run on
JAX or PyTorch tensors without it. The tokenizer
(`keras_dynmask.text`, which needs tensorflow_text) and the local tf.data
service cluster (`keras_dynmask.tools`) are imported only by whoever uses
them. Keras is imported first, as PyTorch needs under
`KERAS_BACKEND=torch`.
"""

import keras  # noqa: F401  (before TensorFlow: see the docstring)

from keras_dynmask.causal_mask import CausalMask
from keras_dynmask.denoiser_mixture import DenoiserMixture
from keras_dynmask.dynamic_mlm_masking import DynamicMLMMasking
from keras_dynmask.masked_lm_model import MaskedLMModel
from keras_dynmask.padding_mask import PaddingMask
from keras_dynmask.patch_masking import PatchMasking
from keras_dynmask.patch_masking import restore_patches
from keras_dynmask.rate_schedules import MaskRateLogger
from keras_dynmask.span_corruption import SpanCorruption
from keras_dynmask.span_masking import SpanMasking
from keras_dynmask.spec_augment import SpecAugment
from keras_dynmask.word_starts import word_starts

__version__ = "0.1.0"

__all__ = [
    "CausalMask",
    "DenoiserMixture",
    "DynamicMLMMasking",
    "MaskRateLogger",
    "MaskedLMModel",
    "PaddingMask",
    "PatchMasking",
    "SpanCorruption",
    "SpanMasking",
    "SpecAugment",
    "WordPieceTokenizer",
    "data",
    "restore_patches",
    "word_starts",
]


def __getattr__(name):
    # `keras_dynmask.data` (tf.data helpers) and `keras_dynmask.WordPieceTokenizer`
    # (tensorflow_text) are imported when asked for.
    if name == "data":
        import keras_dynmask.data

        return keras_dynmask.data
    if name == "WordPieceTokenizer":
        from keras_dynmask.text import WordPieceTokenizer

        return WordPieceTokenizer
    raise AttributeError(f"module 'keras_dynmask' has no attribute {name!r}")
