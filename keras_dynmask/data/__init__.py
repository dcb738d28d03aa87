"""Data helpers: masking over `tf.data` and the corpora the examples use."""

from keras_dynmask.data.mask_dataset import mask_dataset
from keras_dynmask.data.corpora import Corpus
from keras_dynmask.data.corpora import load_corpus
from keras_dynmask.data.corpora import load_stdlib_docstrings
from keras_dynmask.data.corpora import load_text_files
from keras_dynmask.data.corpora import load_tfds
from keras_dynmask.data.data_service import LocalDataService
from keras_dynmask.data.data_service import distribute_masking
from keras_dynmask.data.data_service import masking_pipeline
