"""The public API is type-annotated (the package ships `py.typed`), and every
annotation resolves to a real type in its module."""

import inspect
import pathlib

import pytest

import keras_dynmask
from keras_dynmask import data
from keras_dynmask import export
from keras_dynmask.tools.local_data_service import LocalDataService

# Methods of the public classes that a user calls or overrides.
PUBLIC_METHODS = ("__init__", "call", "lengths_for", "learn", "from_file", "save_vocabulary",
                  "add_workers", "stop")
UNANNOTATED_PARAMETERS = {"self", "cls", "kwargs", "learn_kwargs"}


def public_callables():
    text = pytest.importorskip("keras_dynmask.text")
    found = {}
    classes = [getattr(keras_dynmask, n) for n in keras_dynmask.__all__ if n != "data"]
    classes += [text.WordPieceTokenizer, LocalDataService]
    for item in classes:
        if inspect.isfunction(item):
            found[item.__name__] = item
            continue
        for name in PUBLIC_METHODS:
            method = item.__dict__.get(name)
            if method is not None:
                found[f"{item.__name__}.{name}"] = getattr(method, "__func__", method)
    for name in data.__all__:
        found[f"data.{name}"] = getattr(data, name)
    for function in (export.required_ops, export.core_ops, export.saved_model_ops):
        found[f"export.{function.__name__}"] = function
    return found


def test_the_package_is_marked_typed():
    assert (pathlib.Path(keras_dynmask.__file__).parent / "py.typed").is_file()


def test_public_signatures_are_annotated_and_resolve():
    callables = public_callables()
    # Each public layer's constructor and call are among them.
    for layer in ("DynamicMLMMasking", "SpanCorruption", "PaddingMask", "CausalMask",
                  "MaskedLMModel"):
        assert f"{layer}.__init__" in callables and f"{layer}.call" in callables
    unannotated = {}
    for name, function in callables.items():
        hints = inspect.get_annotations(function, eval_str=True)  # raises if one does not resolve
        missing = [p for p in inspect.signature(function).parameters
                   if p not in hints and p not in UNANNOTATED_PARAMETERS]
        if "return" not in hints:
            missing.append("return")
        if missing:
            unannotated[name] = missing
    assert not unannotated, unannotated
