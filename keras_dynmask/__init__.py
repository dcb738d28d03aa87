"""keras_dynmask: dynamic masks for Transformer training, as Keras layers."""

__version__ = "0.1.0"
