"""`tf`, imported on first use, for the package's modules.

The layers run on any backend and touch TensorFlow only for TensorFlow
inputs (`tf.data`, ragged tensors, the TensorFlow backend) and in the modes
that compute with TensorFlow. The modules use this `tf` instead of `import
tensorflow`: TensorFlow is imported at the first use of one of its
functions. While TensorFlow is not loaded, its tensor types (used in
`isinstance` checks) answer a class no value belongs to, which is true: no
TensorFlow value can exist before TensorFlow is imported.
"""

import sys

_TYPE_NAMES = frozenset(
    {"Tensor", "RaggedTensor", "SparseTensor", "Variable", "TensorShape", "DType", "TensorSpec"}
)


class _NotLoaded:
    """Stands for a TensorFlow type while TensorFlow is not imported."""


class _LazyTensorFlow:
    def __getattr__(self, name):
        module = sys.modules.get("tensorflow")
        if module is None:
            if name in _TYPE_NAMES:
                return _NotLoaded
            import tensorflow as module
        value = getattr(module, name)
        setattr(self, name, value)  # TensorFlow is loaded: later lookups skip this
        return value


tf = _LazyTensorFlow()
