"""Every runnable example in the package's docstrings runs and holds."""

import doctest
import importlib
import pkgutil

import pytest

import keras_dynmask


def package_modules():
    names = [keras_dynmask.__name__]
    for info in pkgutil.walk_packages(keras_dynmask.__path__, prefix="keras_dynmask."):
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("module_name", package_modules())
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
