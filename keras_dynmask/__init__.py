"""keras_dynmask: dynamic masks for Transformer training, as Keras layers.

`import keras_dynmask` loads TensorFlow and Keras only (Keras itself
imports `matplotlib.pyplot` whenever matplotlib is installed). The tokenizer
(`keras_dynmask.text`, which needs tensorflow_text) and the local tf.data
service cluster (`keras_dynmask.tools`) are imported only by whoever uses
them.
"""

from keras_dynmask import data
from keras_dynmask.causal_mask import CausalMask
from keras_dynmask.denoiser_mixture import DenoiserMixture
from keras_dynmask.dynamic_mlm_masking import DynamicMLMMasking
from keras_dynmask.masked_lm_model import MaskedLMModel
from keras_dynmask.padding_mask import PaddingMask
from keras_dynmask.rate_schedules import MaskRateLogger
from keras_dynmask.span_corruption import SpanCorruption
from keras_dynmask.word_starts import word_starts

__version__ = "0.1.0"

__all__ = [
    "CausalMask",
    "DenoiserMixture",
    "DynamicMLMMasking",
    "MaskRateLogger",
    "MaskedLMModel",
    "PaddingMask",
    "SpanCorruption",
    "WordPieceTokenizer",
    "data",
    "word_starts",
]


def __getattr__(name):
    # `keras_dynmask.WordPieceTokenizer` still works, importing
    # tensorflow_text only when asked for.
    if name == "WordPieceTokenizer":
        from keras_dynmask.text import WordPieceTokenizer

        return WordPieceTokenizer
    raise AttributeError(f"module 'keras_dynmask' has no attribute {name!r}")
