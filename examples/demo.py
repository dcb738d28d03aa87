"""`make demo`: learn a WordPiece vocabulary from Python's own docstrings and
tokenize a few sentences in-graph (grows into the end-to-end job)."""

import ast
import pathlib
import sysconfig

import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset

RESERVED = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def docstrings(limit=40):
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(stdlib.glob("*.py"))[:limit]:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    texts.append(" ".join(doc.split()))
    return texts


def main():
    texts = docstrings()
    print(f"{len(texts)} docstrings from the standard library")
    params = dict(lower_case=True)
    vocab = bert_vocab_from_dataset.bert_vocab_from_dataset(
        tf.data.Dataset.from_tensor_slices(texts).batch(256),
        vocab_size=2000,
        reserved_tokens=RESERVED,
        bert_tokenizer_params=params,
        learn_params={},
    )
    print(f"vocabulary: {len(vocab)} wordpieces")
    tokenizer = tf_text.BertTokenizer(
        tf.lookup.StaticVocabularyTable(
            tf.lookup.KeyValueTensorInitializer(
                vocab, tf.range(len(vocab), dtype=tf.int64)
            ),
            num_oov_buckets=1,
        ),
        **params,
    )
    sentences = [
        "Return the number of items in a container.",
        "Raise ValueError if the argument is not a valid path.",
        "Open the file and read its contents as a string.",
    ]
    ids = tokenizer.tokenize(sentences).merge_dims(-2, -1)
    for sentence, row in zip(sentences, ids.to_list()):
        pieces = [vocab[i] if i < len(vocab) else "[UNK]" for i in row]
        print(sentence)
        print("  ", " ".join(pieces))
        print("  ", row)


if __name__ == "__main__":
    main()
