"""Helpers for trying keras_dynmask on one machine (not imported by the core).

`keras_dynmask.tools.local_data_service.LocalDataService`: a tf.data
service dispatcher and worker processes on the loopback address.
"""
