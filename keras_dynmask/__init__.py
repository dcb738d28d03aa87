"""keras_dynmask: dynamic masks for Transformer training, as Keras layers."""

from keras_dynmask import data
from keras_dynmask.causal_mask import CausalMask
from keras_dynmask.dynamic_mlm_masking import DynamicMLMMasking
from keras_dynmask.masked_lm_model import MaskedLMModel
from keras_dynmask.padding_mask import PaddingMask
from keras_dynmask.tokenizer import WordPieceTokenizer

__version__ = "0.1.0"

__all__ = [
    "CausalMask",
    "DynamicMLMMasking",
    "MaskedLMModel",
    "PaddingMask",
    "WordPieceTokenizer",
    "data",
]
