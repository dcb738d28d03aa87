"""Vectorised TF kernels shared by the keras_dynmask layers."""
