"""Data helpers: masking over `tf.data` and the corpora the examples use."""

from keras_dynmask.data.mask_dataset import mask_dataset
