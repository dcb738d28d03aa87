"""Text corpora for the examples: load, clean, split train/validation.

Three sources, one result type (`Corpus`):

- `load_stdlib_docstrings()`: the docstrings of the Python standard library that
  ships with the running interpreter, read with `ast` (about 1.8 MB of
  English prose; no download, on any machine that has Python);
- `load_text_files(pattern)`: local UTF-8 text files matching a glob;
- `load_tfds(name)`: a text data set from `tensorflow_datasets`.

Every source is cut into passages (paragraphs, split further so none is
longer than `max_words` words), de-duplicated, and split into train and
validation deterministically: a passage goes to validation when a hash of
its text falls below `validation_fraction`, so the split does not depend on
file order, and a passage repeated in several places never lands in both
splits. Everything is read and checked before anything is returned, so a
bad input raises before a caller has written anything.
"""

import ast
import dataclasses
import functools
import glob
import hashlib
import json
import os
import pathlib
import re
import sysconfig
import tempfile
import zlib

import tensorflow as tf

_HASH_BUCKETS = 2**32
_BLANK_LINES = re.compile(r"\n\s*\n")
_SNIFF_BYTES = 8192
# Parts of the standard library that hold test code or third-party code
# rather than library documentation.
_STDLIB_SKIP_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
)


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Passages of text, split into train and validation.

    Args:
        name: a short description of where the text came from.
        train: tuple of str, the training passages.
        validation: tuple of str, the held-out passages (no passage of
            `train` appears here).

    Example:

    >>> corpus = Corpus("toy", train=("a b c", "d e"), validation=("f g",))
    >>> corpus.num_words("train")
    5
    >>> [t.numpy() for t in corpus.dataset("validation")]
    [b'f g']
    """

    name: str
    train: tuple
    validation: tuple

    def split(self, split):
        """The passages of `split` (`"train"` or `"validation"`).

        Args:
            split: `"train"` or `"validation"`.

        Returns:
            A tuple of str.
        """
        if split == "train":
            return self.train
        if split == "validation":
            return self.validation
        raise ValueError(
            f"`split` must be 'train' or 'validation'. Received: split={split!r}"
        )

    def dataset(self, split="train"):
        """The passages of `split` as a `tf.data.Dataset` of scalar strings.

        Args:
            split: `"train"` or `"validation"`.

        Returns:
            A `tf.data.Dataset` of `tf.string` scalars, in corpus order.
        """
        passages = self.split(split)
        return tf.data.Dataset.from_tensor_slices(
            tf.constant(list(passages), dtype=tf.string, shape=[len(passages)])
        )

    def num_words(self, split="train"):
        """Number of whitespace-separated words in `split`.

        Args:
            split: `"train"` or `"validation"`.

        Returns:
            An int.
        """
        return sum(len(p.split()) for p in self.split(split))

    def __repr__(self):
        return (
            f"Corpus({self.name!r}, train={len(self.train)} passages / "
            f"{self.num_words('train')} words, validation="
            f"{len(self.validation)} passages / "
            f"{self.num_words('validation')} words)"
        )


def load_corpus(
    text_files=None,
    tfds=None,
    validation_fraction=0.05,
    max_words=None,
    max_passages=None,
    tfds_data_dir=None,
):
    """The corpus the command-line flags ask for.

    `text_files` and `tfds` are exclusive; with neither, the standard
    library's docstrings.

    Args:
        text_files: `None`, a glob pattern or a list of them (`--text-files`).
        tfds: `None` or a `tensorflow_datasets` name (`--tfds`).
        validation_fraction: float in (0, 1), share of passages held out.
        max_words: `None` or int >= 1, longest passage in words.
        max_passages: `None` or int >= 2: keep at most this many passages
            (before the split), to bound time on large data sets.
        tfds_data_dir: where `tensorflow_datasets` keeps its data.

    Returns:
        A `Corpus`.
    """
    if text_files is not None and tfds is not None:
        raise ValueError(
            "Pass either `text_files` or `tfds`, not both. Received: "
            f"text_files={text_files!r}, tfds={tfds!r}"
        )
    common = dict(
        validation_fraction=validation_fraction,
        max_words=max_words,
        max_passages=max_passages,
    )
    if text_files is not None:
        return load_text_files(text_files, **common)
    if tfds is not None:
        return load_tfds(tfds, data_dir=tfds_data_dir, **common)
    return load_stdlib_docstrings(**common)


def load_stdlib_docstrings(
    validation_fraction=0.05, max_words=None, max_passages=None, root=None
):
    """The docstrings of the Python standard library, as a `Corpus`.

    Walks the `.py` files of the standard library (not its tests, not
    `site-packages`) in sorted order and keeps the docstrings of modules,
    classes and functions. Paragraphs that are interactive examples
    (starting with `>>>`) are dropped.

    Args:
        validation_fraction: float in (0, 1), share of passages held out.
        max_words: `None` or int >= 1, longest passage in words.
        max_passages: `None` or int >= 2, cap on the number of passages.
        root: directory to walk instead of the standard library.

    Returns:
        A `Corpus`.

    Example:

    >>> corpus = load_stdlib_docstrings()
    >>> len(corpus.train) > 10 * len(corpus.validation) > 0
    True
    """
    _check_common(validation_fraction, max_words, max_passages)
    root = pathlib.Path(root or sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FileNotFoundError(
            f"The standard library directory does not exist: {str(root)!r}"
        )
    passages = _passages(list(_stdlib_texts(str(root))), max_words, drop_doctest=True)
    if not passages:
        raise ValueError(f"No docstrings found under {str(root)!r}")
    return _split(
        f"Python {sysconfig.get_python_version()} standard library docstrings",
        passages,
        validation_fraction,
        max_passages,
    )


def load_text_files(
    pattern, validation_fraction=0.05, max_words=None, max_passages=None
):
    """Local UTF-8 text files as a `Corpus`.

    Args:
        pattern: a glob pattern (`**` recurses) or a list of them. Every
            file matched must be UTF-8 text; directories are skipped.
        validation_fraction: float in (0, 1), share of passages held out.
        max_words: `None` or int >= 1, longest passage in words.
        max_passages: `None` or int >= 2, cap on the number of passages.

    Returns:
        A `Corpus`.

    Raises:
        FileNotFoundError: a pattern matches no file.
        ValueError: a file is not UTF-8 text (binary), or the files hold no
            text at all.

    Example:

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.txt").write_text("One paragraph.\\n\\nAnother one.")
    >>> _ = (folder / "b.txt").write_text("A third paragraph here.")
    >>> corpus = load_text_files(str(folder / "*.txt"))
    >>> len(corpus.train) + len(corpus.validation)
    3
    """
    _check_common(validation_fraction, max_words, max_passages)
    if isinstance(pattern, (str, os.PathLike)):
        patterns = [pattern]
    elif isinstance(pattern, (list, tuple)):
        patterns = list(pattern)
    else:
        patterns = []
    if not patterns or not all(isinstance(p, (str, os.PathLike)) for p in patterns):
        raise ValueError(
            "`pattern` must be a glob pattern or a list of them. "
            f"Received: pattern={pattern!r}"
        )
    paths = []
    for one in patterns:
        matched = sorted(
            p for p in glob.glob(os.fspath(one), recursive=True) if os.path.isfile(p)
        )
        if not matched:
            raise FileNotFoundError(
                f"No text file matches {os.fspath(one)!r} (--text-files)"
            )
        paths.extend(m for m in matched if m not in paths)
    texts = [_read_text_file(path) for path in paths]
    passages = _passages(texts, max_words)
    if not passages:
        raise ValueError(
            f"The files matching {pattern!r} hold no text ({len(paths)} "
            "files, all empty or whitespace)"
        )
    return _split(
        f"{len(paths)} text files matching {pattern!r}",
        passages,
        validation_fraction,
        max_passages,
    )


def load_tfds(
    name,
    validation_fraction=0.05,
    max_words=None,
    max_passages=None,
    data_dir=None,
    download=True,
):
    """A `tensorflow_datasets` text data set as a `Corpus`.

    Takes the data set's string feature (`"text"` when there are several),
    its `"train"` split for training and its `"validation"` (or `"test"`)
    split held out; a data set with only one split is split by hash like
    the other sources. The first use downloads and prepares the data set
    (this needs network access); later uses read `data_dir`.

    Args:
        name: a `tensorflow_datasets` name, e.g. `"tiny_shakespeare"` or
            `"imdb_reviews"` (with an optional `/config` and `:version`).
        validation_fraction: float in (0, 1), used when the data set has a
            single split.
        max_words: `None` or int >= 1, longest passage in words.
        max_passages: `None` or int >= 2, cap on the passages of each split.
        data_dir: where `tensorflow_datasets` keeps its data.
        download: whether to download and prepare the data set if needed.

    Returns:
        A `Corpus`.

    Raises:
        ValueError: unknown name, no text feature, or no text.
        ImportError: tensorflow_datasets is not installed (the `tfds` extra).

    Example:

    >>> corpus = load_tfds("tiny_shakespeare")  # doctest: +SKIP
    """
    _check_common(validation_fraction, max_words, max_passages)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            f"`name` must be a tensorflow_datasets name. Received: name={name!r}"
        )
    try:
        import tensorflow_datasets as tfds  # Slow to import: only when used.
    except ImportError as error:
        raise ImportError(
            "--tfds reads tensorflow_datasets, which is not installed; install "
            'it with the `tfds` extra: pip install "keras_dynmask[tfds]"'
        ) from error

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(
            f"No tensorflow_datasets data set is called {name!r} (--tfds); "
            "see https://www.tensorflow.org/datasets/catalog for the names"
        ) from error
    feature = _text_feature(builder, name)
    if download:
        builder.download_and_prepare()
    # Without split metadata (e.g. under `tfds.testing.mock_data`), read
    # "train" and split it by hash.
    splits = list(builder.info.splits) or ["train"]
    train_split = "train" if "train" in splits else splits[0]
    held_out = next(
        (s for s in ("validation", "valid", "dev", "test") if s in splits), None
    )

    def read(split):
        texts = []
        for example in tfds.as_numpy(builder.as_dataset(split=split)):
            texts.append(example[feature].decode("utf-8", errors="replace"))
            if max_passages is not None and len(texts) >= max_passages:
                break
        return _passages(texts, max_words)

    train = read(train_split)
    if not train:
        raise ValueError(f"The data set {name!r} holds no text in {train_split!r}")
    title = f"tensorflow_datasets {name!r}"
    if held_out is None:
        return _split(title, train, validation_fraction, max_passages)
    validation = read(held_out)
    if not validation:
        return _split(title, train, validation_fraction, max_passages)
    seen = set(train)
    validation = tuple(p for p in validation if p not in seen) or validation
    return Corpus(title, train=tuple(train), validation=tuple(validation))


# Helpers.


def _check_common(validation_fraction, max_words, max_passages):
    if (
        not isinstance(validation_fraction, (int, float))
        or isinstance(validation_fraction, bool)
        or not 0 < validation_fraction < 1
    ):
        raise ValueError(
            "`validation_fraction` must be a float in (0, 1). "
            f"Received: validation_fraction={validation_fraction!r}"
        )
    for arg, value, low in (("max_words", max_words, 1), ("max_passages", max_passages, 2)):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < low
        ):
            raise ValueError(
                f"`{arg}` must be None or an int >= {low}. Received: {arg}={value!r}"
            )


@functools.lru_cache(maxsize=4)
def _stdlib_texts(root):
    """Every docstring under `root`, in file order.

    Parsing takes seconds, so the result is cached in memory and on disk
    (`_docstring_cache_path`), keyed by the files' paths, sizes and
    modification times: a changed, added or removed file reparses all.
    """
    root = pathlib.Path(root)
    paths = [
        path
        for path in sorted(root.rglob("*.py"))
        if not _STDLIB_SKIP_DIRS.intersection(path.relative_to(root).parts[:-1])
        and path.is_file()
    ]
    cache = _docstring_cache_path(root, paths)
    try:
        with open(cache, encoding="utf-8") as handle:
            return tuple(json.load(handle))
    except (OSError, ValueError):
        pass
    texts = []
    for path in paths:
        texts.extend(_docstrings(path))
    _write_quietly(cache, json.dumps(texts))
    return tuple(texts)


def _docstring_cache_path(root, paths):
    """The cache file of `_stdlib_texts` for these files (under
    `$XDG_CACHE_HOME/keras_dynmask`, else `~/.cache/keras_dynmask`)."""
    digest = hashlib.sha256(str(root).encode())
    for path in paths:
        status = path.stat()
        digest.update(f"{path.relative_to(root)}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    folder = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(folder, "keras_dynmask", f"docstrings-{digest.hexdigest()[:24]}.json")


def _write_quietly(path, text):
    """Writes `text` to `path` atomically; a cache that cannot be written is skipped."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=os.path.dirname(path), delete=False
        ) as handle:
            handle.write(text)
        os.replace(handle.name, path)
    except OSError:
        pass


def _docstrings(path):
    """Docstrings of the module, classes and functions of one file."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, UnicodeDecodeError, OSError):
        return []  # Files written for another Python version, templates.
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, kinds):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                docs.append(doc)
    return docs


def _text_feature(builder, name):
    """The key of a data set's string feature (`"text"` among several)."""
    import tensorflow_datasets as tfds

    features = builder.info.features
    keys = [k for k, f in features.items() if isinstance(f, tfds.features.Text)]
    if not keys:
        raise ValueError(
            f"The data set {name!r} has no text feature (--tfds); its "
            f"features are {sorted(features.keys())}"
        )
    return "text" if "text" in keys else keys[0]


def _read_text_file(path):
    with open(path, "rb") as handle:
        data = handle.read()
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise ValueError(f"{path!r} is a binary file, not UTF-8 text (--text-files)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path!r} is not UTF-8 text (--text-files): {error.reason} at "
            f"byte {error.start}"
        ) from error


def _passages(texts, max_words, drop_doctest=False):
    """Paragraphs, whitespace collapsed, cut at `max_words`, de-duplicated."""
    seen = set()
    passages = []
    for text in texts:
        for paragraph in _BLANK_LINES.split(text.replace("\r\n", "\n")):
            if drop_doctest and paragraph.lstrip().startswith(">>>"):
                continue
            words = paragraph.split()
            if not words:
                continue
            step = max_words or len(words)
            for start in range(0, len(words), step):
                passage = " ".join(words[start : start + step])
                if passage not in seen:
                    seen.add(passage)
                    passages.append(passage)
    return passages


def _bucket(passage):
    return zlib.crc32(passage.encode("utf-8")) / _HASH_BUCKETS


def _split(name, passages, validation_fraction, max_passages):
    if max_passages is not None:
        passages = passages[:max_passages]
    if len(passages) < 2:
        raise ValueError(
            f"{name} holds {len(passages)} passage; at least 2 are needed to "
            "split train and validation"
        )
    buckets = [_bucket(p) for p in passages]
    held_out = [b < validation_fraction for b in buckets]
    if not any(held_out):  # A tiny corpus: hold out its lowest hash.
        held_out[min(range(len(buckets)), key=buckets.__getitem__)] = True
    if all(held_out):
        held_out[max(range(len(buckets)), key=buckets.__getitem__)] = False
    train = tuple(p for p, h in zip(passages, held_out) if not h)
    validation = tuple(p for p, h in zip(passages, held_out) if h)
    return Corpus(name, train=train, validation=validation)
