"""Backend matrix: the files here run under every Keras backend.

`make test` runs them with the rest of the suite under TensorFlow, then
again with `KERAS_BACKEND=jax` and `KERAS_BACKEND=torch`. They use only
`keras.ops` and NumPy to build inputs and read outputs, so the same test
checks each backend.
"""

import keras
import numpy as np
import pytest

@pytest.fixture
def as_numpy():
    return lambda x: np.asarray(keras.ops.convert_to_numpy(x))
