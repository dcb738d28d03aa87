"""`make docs` builds the API reference from the docstrings (pdoc), and every
public name has its entry there.

The test builds the modules the Makefile names (`API_MODULES`) with the
Makefile's pdoc options, into a temporary folder.
"""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

import keras_dynmask
from keras_dynmask import data

REPO = pathlib.Path(__file__).resolve().parents[1]
# Lazily resolved (it imports tensorflow_text): pdoc cannot follow it from
# the package's `__all__`, and documents it on keras_dynmask.text's page.
LAZY_NAMES = {"WordPieceTokenizer"}


def makefile_api_modules():
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    (line,) = re.findall(r"^API_MODULES\s*:=(.*)$", text, flags=re.MULTILINE)
    return line.split()


def has_tensorflow_text():
    return importlib.util.find_spec("tensorflow_text") is not None


@pytest.fixture(scope="module")
def api_docs(tmp_path_factory):
    """`(output folder, pdoc's warnings)` after building the reference."""
    modules = makefile_api_modules()
    if not has_tensorflow_text():  # The `docs` target installs it (the `text` extra).
        modules.remove("keras_dynmask.text")
    output = tmp_path_factory.mktemp("api")
    result = subprocess.run(
        [sys.executable, "-m", "pdoc", "--docformat", "google", "--output-directory",
         str(output), *modules],
        capture_output=True, text=True, timeout=300, cwd=str(REPO),
        env={**os.environ, "PDOC_ALLOW_EXEC": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warn")]
    return output, warnings


def anchors(page):
    return set(re.findall(r'id="([A-Za-z_][A-Za-z0-9_.]*)"', page.read_text()))


def test_makefile_documents_the_public_modules():
    assert makefile_api_modules()[0] == "keras_dynmask"
    for name in makefile_api_modules():
        assert importlib.util.find_spec(name) is not None, name


def test_docs_build_without_unexpected_warnings(api_docs):
    _, warnings = api_docs
    unexpected = [w for w in warnings if not any(f"'{n}'" in w for n in LAZY_NAMES)]
    assert not unexpected, unexpected


def test_every_public_name_has_an_entry(api_docs):
    output, _ = api_docs
    top = anchors(output / "keras_dynmask.html")
    assert set(keras_dynmask.__all__) - LAZY_NAMES - {"data"} <= top
    assert set(data.__all__) <= anchors(output / "keras_dynmask" / "data.html")
    assert "required_ops" in anchors(output / "keras_dynmask" / "export.html")
    service = anchors(output / "keras_dynmask" / "tools" / "local_data_service.html")
    assert "LocalDataService" in service
    if has_tensorflow_text():
        text = anchors(output / "keras_dynmask" / "text.html")
        assert LAZY_NAMES <= text
    # The docstrings' sections are rendered, arguments included.
    page = (output / "keras_dynmask.html").read_text()
    assert "DynamicMLMMasking.__init__" in top and "vocabulary_size" in page
    assert (output / "index.html").exists()
