"""Without tensorflow-text, the tokenizer's import names the extra that brings it."""

import sys

import pytest

TEXT_MODULES = ("keras_dynmask.text", "keras_dynmask.text.wordpiece_tokenizer")


@pytest.fixture
def without_tensorflow_text(monkeypatch):
    """This process as if tensorflow-text were not installed (`None` in
    `sys.modules` makes its import fail), with keras_dynmask's text modules
    to be imported anew; all restored afterwards."""
    import keras_dynmask

    for name in TEXT_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "tensorflow_text", None)
    monkeypatch.delattr(keras_dynmask, "text", raising=False)
    return keras_dynmask


def check_names_the_extra(error):
    message = str(error.value)
    assert 'pip install "keras_dynmask[text]"' in message, message
    assert "tensorflow-text" in message, message
    assert isinstance(error.value.__cause__, ImportError)


def test_text_import_names_the_text_extra(without_tensorflow_text):
    with pytest.raises(ImportError) as error:
        from keras_dynmask.text import WordPieceTokenizer  # noqa: F401
    check_names_the_extra(error)


def test_package_attribute_names_the_text_extra(without_tensorflow_text):
    keras_dynmask = without_tensorflow_text
    with pytest.raises(ImportError) as error:
        keras_dynmask.WordPieceTokenizer
    check_names_the_extra(error)
    # The core still works.
    assert keras_dynmask.PaddingMask()([[3, 0]]).numpy().tolist() == [[True, False]]


def test_with_tensorflow_text_the_tokenizer_imports():
    pytest.importorskip("tensorflow_text")
    import keras_dynmask
    from keras_dynmask.text import WordPieceTokenizer

    assert keras_dynmask.WordPieceTokenizer is WordPieceTokenizer
