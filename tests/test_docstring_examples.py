"""Every runnable example in the package's docstrings runs and holds.

Only modules that hold examples doctest runs are cases here (a module
without any would be a case that runs nothing); every public name of `keras_dynmask` and
`keras_dynmask.data` must have one.
"""

import doctest
import importlib
import pkgutil

import pytest

import keras_dynmask
import keras_dynmask.data

FINDER = doctest.DocTestFinder()


def package_modules():
    names = [keras_dynmask.__name__]
    for info in pkgutil.walk_packages(keras_dynmask.__path__, prefix="keras_dynmask."):
        names.append(info.name)
    return sorted(names)


def runnable_examples(tests):
    """How many examples `tests` hold that doctest runs (not `+SKIP`)."""
    return sum(
        not example.options.get(doctest.SKIP) for test in tests for example in test.examples
    )


def example_count(module_name):
    return runnable_examples(FINDER.find(importlib.import_module(module_name)))


MODULES_WITH_EXAMPLES = [name for name in package_modules() if example_count(name)]


@pytest.mark.parametrize("module_name", MODULES_WITH_EXAMPLES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"


@pytest.mark.parametrize(
    "package, name",
    [(keras_dynmask, n) for n in keras_dynmask.__all__ if n != "data"]
    + [(keras_dynmask.data, n) for n in keras_dynmask.data.__all__],
)
def test_every_public_name_has_an_example(package, name):
    public = getattr(package, name)
    tests = FINDER.find(public, name, module=False, globs={})
    assert runnable_examples(tests) > 0, f"{package.__name__}.{name} has no example"
