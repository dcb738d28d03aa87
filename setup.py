from setuptools import find_packages, setup

setup(
    name="keras_dynmask",
    version="0.1.0",
    description=(
        "Dynamic masked-LM corruption and attention masks as Keras layers "
        "that run in tf.data, in Keras models and in exported SavedModels."
    ),
    packages=find_packages(include=["keras_dynmask", "keras_dynmask.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-text>=2.21,<2.22",
        "keras>=3.10,<4",
        "tensorflow-datasets>=4.9,<5",
        "numpy>=1.26",
    ],
    extras_require={
        "test": [
            "pytest>=8", "pytest-xdist>=3.6", "hypothesis>=6.100",
            # The backend matrix (tests/backends): JAX, and PyTorch (the one
            # CPU build this machine holds a wheel of).
            "jax[cpu]>=0.4.30", "torch==2.13.0",
        ],
        "bench": ["keras-hub>=0.20,<1", "transformers>=5,<6", "torch==2.13.0"],
        "examples": ["matplotlib>=3.8"],
    },
)
