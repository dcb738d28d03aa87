"""Masking over `tf.data`: reproducible epochs and the tf.data service.

The local tf.data service cluster for trying this on one machine lives in
`keras_dynmask.tools.local_data_service`.
"""

from keras_dynmask.data.distribute_masking import distribute_masking
from keras_dynmask.data.distribute_masking import masking_pipeline
from keras_dynmask.data.mask_dataset import mask_dataset

__all__ = ["distribute_masking", "mask_dataset", "masking_pipeline"]
