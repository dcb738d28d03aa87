"""Tests for examples/corpora.py: loaders, split, errors."""

import pathlib
import sys
import sysconfig

import pytest
import tensorflow as tf

from corpora import Corpus
from corpora import load_corpus
from corpora import load_stdlib_docstrings
from corpora import load_text_files
from corpora import load_tfds

STDLIB = pathlib.Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def stdlib_corpus():
    return load_corpus()


def test_default_corpus_is_the_stdlib_docstrings(stdlib_corpus):
    corpus = stdlib_corpus
    assert "standard library docstrings" in corpus.name
    # About 240k words of prose (Python 3.10 to 3.13 all hold > 100k).
    assert corpus.num_words("train") > 100_000
    assert 0.02 < len(corpus.validation) / len(corpus.train) < 0.09
    assert not set(corpus.train) & set(corpus.validation)
    assert len(set(corpus.train)) == len(corpus.train)
    assert not any(p.startswith(">>>") for p in corpus.train)
    assert all(p == " ".join(p.split()) and p for p in corpus.train[:2000])
    # Real English prose: the commonest words are there.
    words = " ".join(corpus.train[:3000]).lower().split()
    for word in ("the", "return", "of", "is"):
        assert word in words


def test_stdlib_docstrings_skip_tests_and_are_deterministic():
    json_dir = STDLIB / "json"
    first = load_stdlib_docstrings(root=json_dir)
    second = load_stdlib_docstrings(root=json_dir)
    assert first == second
    assert first.train and first.validation
    everything = first.train + first.validation
    assert any("JSON" in p for p in everything)


def test_split_is_by_content_not_order(tmp_path):
    lines = [f"Passage number {i} about topic {i % 7}." for i in range(400)]
    (tmp_path / "a.txt").write_text("\n\n".join(lines))
    (tmp_path / "b.txt").write_text("\n\n".join(reversed(lines)))
    one = load_text_files(str(tmp_path / "a.txt"))
    two = load_text_files(str(tmp_path / "b.txt"))
    assert set(one.validation) == set(two.validation)
    assert 5 <= len(one.validation) <= 45  # ~5% of 400
    both = load_text_files(str(tmp_path / "*.txt"))  # duplicates removed
    assert len(both.train) + len(both.validation) == 400


def test_max_words_and_max_passages(tmp_path):
    (tmp_path / "long.txt").write_text(" ".join(f"w{i}" for i in range(100)) + "\n\nshort one")
    corpus = load_text_files(str(tmp_path / "long.txt"), max_words=30)
    passages = corpus.train + corpus.validation
    assert sorted(len(p.split()) for p in passages) == [2, 10, 30, 30, 30]
    capped = load_text_files(str(tmp_path / "long.txt"), max_words=30, max_passages=3)
    assert len(capped.train) + len(capped.validation) == 3


def test_text_files_paragraphs_glob_and_lists(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "one.txt").write_text("First  paragraph,\nsame one.\n\n\nSecond.\r\n\r\nThird.")
    (tmp_path / "sub" / "two.md").write_text("\ufeffFourth paragraph here.")
    corpus = load_text_files(str(tmp_path / "**" / "*"))
    passages = set(corpus.train + corpus.validation)
    assert passages == {
        "First paragraph, same one.",
        "Second.",
        "Third.",
        "Fourth paragraph here.",
    }
    listed = load_text_files([str(tmp_path / "one.txt"), str(tmp_path / "sub/*.md")])
    assert set(listed.train + listed.validation) == passages
    ds = corpus.dataset("train")
    assert ds.element_spec == tf.TensorSpec([], tf.string)
    assert len(list(ds)) == len(corpus.train)


def test_corpus_split_accessor_and_repr():
    corpus = Corpus("toy", train=("a b", "c"), validation=("d",))
    assert corpus.split("validation") == ("d",)
    assert "train=2 passages / 3 words" in repr(corpus)
    with pytest.raises(ValueError, match="split='test'"):
        corpus.split("test")


def test_missing_files_raise_and_name_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing-*.txt")
    with pytest.raises(FileNotFoundError, match="nothing-"):
        load_text_files(pattern)
    with pytest.raises(FileNotFoundError, match="nothing-"):
        load_corpus(text_files=pattern)


def test_binary_and_non_utf8_files_raise(tmp_path):
    (tmp_path / "good.txt").write_text("Fine text.\n\nMore text.")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ValueError, match=r"image\.png.*binary"):
        load_text_files(str(tmp_path / "*"))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.txt.*not UTF-8"):
        load_text_files(str(latin))


def test_empty_and_tiny_corpora_raise(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("  \n\n\t\n")
    with pytest.raises(ValueError, match="hold no text"):
        load_text_files(str(tmp_path / "*.txt"))
    (tmp_path / "one.txt").write_text("Only one passage.")
    with pytest.raises(ValueError, match="at least 2"):
        load_text_files(str(tmp_path / "one.txt"))
    (tmp_path / "two.txt").write_text("Passage one.\n\nPassage two.")
    two = load_text_files(str(tmp_path / "two.txt"))
    assert len(two.train) == len(two.validation) == 1


def test_empty_stdlib_root_raises(tmp_path):
    (tmp_path / "nodoc.py").write_text("x = 1\n")
    (tmp_path / "broken.py").write_text("def (:\n")
    with pytest.raises(ValueError, match="No docstrings"):
        load_stdlib_docstrings(root=tmp_path)
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        load_stdlib_docstrings(root=tmp_path / "does-not-exist")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"validation_fraction": 0}, "validation_fraction=0"),
        ({"validation_fraction": 1.5}, "validation_fraction=1.5"),
        ({"max_words": 0}, "max_words=0"),
        ({"max_passages": 1}, "max_passages=1"),
    ],
)
def test_bad_arguments_quote_the_value(tmp_path, kwargs, message):
    (tmp_path / "a.txt").write_text("One.\n\nTwo.")
    with pytest.raises(ValueError, match=message):
        load_text_files(str(tmp_path / "a.txt"), **kwargs)


def test_text_files_and_tfds_are_exclusive(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        load_corpus(text_files="*.txt", tfds="imdb_reviews")
    with pytest.raises(ValueError, match="pattern=3"):
        load_text_files(3)


def test_unknown_tfds_name_raises_without_downloading(tmp_path):
    with pytest.raises(ValueError, match="no_such_corpus_xyz"):
        load_tfds("no_such_corpus_xyz", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="no_such_corpus_xyz"):
        load_corpus(tfds="no_such_corpus_xyz", tfds_data_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())  # Nothing written.


def test_tfds_without_tensorflow_datasets_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r'pip install "keras_dynmask\[tfds\]"'):
        load_tfds("imdb_reviews", data_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_tfds_loader_on_mocked_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        corpus = load_tfds("imdb_reviews", data_dir=str(tmp_path))
    assert corpus.train and corpus.validation
    assert "imdb_reviews" in corpus.name


def test_docstrings_are_cached_on_disk_and_reparsed_when_a_file_changes(tmp_path, monkeypatch):
    import corpora

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "lib"
    root.mkdir()
    (root / "a.py").write_text('"""Alpha module docs, long enough to keep."""\n')
    (root / "b.py").write_text('def f():\n    """Beta function docs."""\n')
    corpora._stdlib_texts.cache_clear()
    first = corpora._stdlib_texts(str(root))
    assert first == ("Alpha module docs, long enough to keep.", "Beta function docs.")
    assert len(list((tmp_path / "cache" / "keras_dynmask").glob("docstrings-*.json"))) == 1

    def no_parsing(path):
        raise AssertionError(f"parsed {path} although the cache holds it")

    corpora._stdlib_texts.cache_clear()
    with monkeypatch.context() as patch:
        patch.setattr(corpora, "_docstrings", no_parsing)
        assert corpora._stdlib_texts(str(root)) == first  # from the disk cache
    (root / "b.py").write_text('def f():\n    """Beta changed."""\n')
    corpora._stdlib_texts.cache_clear()
    assert corpora._stdlib_texts(str(root))[1] == "Beta changed."
    corpora._stdlib_texts.cache_clear()
