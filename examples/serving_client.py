"""Query an exported masked-LM SavedModel with plain TensorFlow.

Needs only `tensorflow` and `tensorflow_text` (whose import registers the
tokenizer's ops); `keras_dynmask` and Keras are not used. This is what a
serving process does with the folders `examples/pretrain_mlm.py` writes.

Run: `python examples/serving_client.py saved_models/mlm_encoder/1
"Return the [MASK] of the list." [--json]`
"""

import json
import os
import sys

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)


def load(export_dir):
    """Loads a SavedModel written by `pretrain_mlm.export_for_serving`.

    Args:
        export_dir: the version folder, e.g. `saved_models/mlm_encoder/1`.

    Returns:
        The loaded object; its `signatures` hold `serving_default` and
        `mask`.
    """
    return tf.saved_model.load(export_dir)


def vocabulary(export_dir):
    """The wordpieces of the export, in id order (`assets.extra/vocab.txt`).

    Args:
        export_dir: the version folder.

    Returns:
        A list of str: `vocabulary[i]` is the token of id `i`.
    """
    path = os.path.join(export_dir, "assets.extra", "vocab.txt")
    with open(path, encoding="utf-8") as handle:
        return handle.read().split("\n")[:-1]


def fill_mask(loaded, texts):
    """Top-k predictions at each `[MASK]` of each text.

    Args:
        loaded: the object `load()` returns.
        texts: list of str, each with zero or more `[MASK]`s.

    Returns:
        A list (one entry per text) of dicts: `"text"`, `"filled"` (the
        text with each `[MASK]` replaced by its top prediction) and
        `"masks"`, a list (one per `[MASK]`) of `(token, probability)`
        pairs, best first.
    """
    out = loaded.signatures["serving_default"](text=tf.constant(texts, tf.string))
    out = {k: v.numpy() for k, v in out.items()}
    answers = []
    for i, text in enumerate(texts):
        masks = []
        for m in range(int(out["num_masks"][i])):
            masks.append(
                [
                    (token.decode("utf-8"), float(score))
                    for token, score in zip(out["tokens"][i, m], out["scores"][i, m])
                ]
            )
        answers.append(
            {"text": text, "filled": out["filled"][i].decode("utf-8"), "masks": masks}
        )
    return answers


def mask(loaded, texts, seed=None):
    """Dynamically masked ids of `texts`, as the `mask` signature serves.

    Args:
        loaded: the object `load()` returns.
        texts: list of str.
        seed: `None` (fresh masks on every call) or two ints (masks a pure
            function of the texts and the seed).

    Returns:
        A dict of NumPy arrays `[B, T]`: `"token_ids"`, `"labels"`,
        `"mask"`, `"padding_mask"`.
    """
    seed = tf.constant([] if seed is None else list(seed), tf.int64)
    out = loaded.signatures["mask"](text=tf.constant(texts, tf.string), seed=seed)
    return {k: v.numpy() for k, v in out.items()}


def format_answer(answer):
    """A readable multi-line rendering of one `fill_mask` answer."""
    lines = [answer["text"], f"  -> {answer['filled']}"]
    for i, candidates in enumerate(answer["masks"]):
        ranked = ", ".join(f"{t} {p:.3f}" for t, p in candidates)
        lines.append(f"  [MASK] #{i + 1}: {ranked}")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv
    argv = [a for a in argv if a != "--json"]
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        print(__doc__.strip().split("\n\n")[-1])
        return 2
    loaded = load(argv[0])
    answers = fill_mask(loaded, argv[1:])
    if as_json:
        print(json.dumps(answers))
    else:
        print("\n".join(format_answer(a) for a in answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
