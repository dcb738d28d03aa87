"""Query an exported masked-LM SavedModel with plain TensorFlow.

The text export (`saved_models/mlm_encoder/1`) needs `tensorflow` and
`tensorflow_text` (whose import registers the tokenizer's ops); the
id-level export (`saved_models/mlm_encoder_ids/1`) needs `tensorflow`
only, and is also run here through `saved_model_cli`, which loads a
SavedModel as TF Serving does. `keras_dynmask` and Keras are not used. This
is what a serving process does with the folders `examples/pretrain_mlm.py`
writes.

The token ids of a text depend on the vocabulary a run learned (in the
export's `assets.extra/vocab.txt`). Given texts, the id-level export is
queried after tokenizing them here, on the client, with that vocabulary
(`keras_dynmask.text.WordPieceTokenizer`: this one step needs keras_dynmask
and tensorflow_text on the client; the server needs neither). `--tokenize`
prints the inputs of the id-level fill-mask signature for texts (`token_ids`
and the `[MASK]` `positions`), or with `--seed=A,B` (`--seed=` for fresh
masks) those of its `mask` signature, as `saved_model_cli run
--input_exprs` takes them, or with `--json` as a TF Serving REST request's
`"inputs"`.

Run: `python examples/serving_client.py EXPORT "Return the [MASK] of the
list." [--json]` (EXPORT: `saved_models/mlm_encoder/1` or
`saved_models/mlm_encoder_ids/1`), `python examples/serving_client.py
saved_models/mlm_encoder_ids/1 --ids "2 48 45 4 3" [--json]`, or
`python examples/serving_client.py saved_models/mlm_encoder_ids/1
--tokenize "Return the [MASK] of the list." [--seed=7,42] [--json]`
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quiet_start  # noqa: E402  (TensorFlow's start-up, without the GPU probe's chatter)

tf = quiet_start.import_tensorflow()


def load(export_dir):
    """Loads a SavedModel written by `pretrain_mlm.export_for_serving`.

    Args:
        export_dir: the version folder, e.g. `saved_models/mlm_encoder/1`.

    Returns:
        The loaded object; its `signatures` hold `serving_default` and
        `mask`.
    """
    import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

    return tf.saved_model.load(export_dir)


def load_ids(export_dir):
    """Loads an id-level SavedModel (`id_level_export`): TensorFlow alone.

    Args:
        export_dir: the version folder, e.g. `saved_models/mlm_encoder_ids/1`.

    Returns:
        The loaded object; its `signatures` hold `serving_default`
        (fill-mask at positions) and `mask`.
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


def is_id_level(loaded):
    """Whether a loaded export's `serving_default` takes token ids, not text."""
    _, inputs = loaded.signatures["serving_default"].structured_input_signature
    return "token_ids" in inputs


def tokenize(export_dir, texts):
    """Token ids of `texts` in the export's vocabulary, as its inputs take them.

    Tokenizes on the client with `keras_dynmask.text.WordPieceTokenizer`
    and the export's `assets.extra/vocab.txt` (the tokenizer the export was
    trained with), so this needs keras_dynmask and tensorflow_text here.

    Args:
        export_dir: the version folder.
        texts: list of str.

    Returns:
        `(token_ids, positions)`: int32 `[B, T]` ids, `[CLS] ... [SEP]`,
        padded with 0 to the longest text, and int32 `[B, M]`, the
        `[MASK]` positions of each row (`mask_positions`).
    """
    from keras_dynmask.text import WordPieceTokenizer

    tokenizer = WordPieceTokenizer.from_file(
        os.path.join(export_dir, "assets.extra", "vocab.txt")
    )
    ids = tokenizer(tf.constant(texts, tf.string), pad_to_sequence_length=False)
    ids = ids.numpy().astype("int32")
    positions, _ = mask_positions(ids, tokenizer.mask_id)
    return ids, positions


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


def mask_positions(token_ids, mask_id):
    """The `[MASK]` positions of each row, padded with 0.

    Args:
        token_ids: int `[B, T]` array.
        mask_id: int, the id of `[MASK]`.

    Returns:
        `(positions, counts)`: int32 `[B, M]` (`M` the most masks in a
        row, at least 1) and int `[B]`, the masks in each row.
    """
    token_ids = np.asarray(token_ids)
    rows = [np.flatnonzero(row == mask_id) for row in token_ids]
    positions = np.zeros((len(rows), max([1] + [len(r) for r in rows])), "int32")
    for i, where in enumerate(rows):
        positions[i, : len(where)] = where
    return positions, np.array([len(r) for r in rows])


def fill_mask_ids(outputs, token_ids, vocabulary, mask_id):
    """Fill-mask answers from the id-level `serving_default`'s outputs.

    Args:
        outputs: a dict with `"top_ids"` and `"scores"` `[B, M, k]`, as
            the signature returns them for `token_ids` and
            `mask_positions(token_ids, mask_id)[0]`.
        token_ids: int `[B, T]` array, the ids queried.
        vocabulary: from `vocabulary()`.
        mask_id: int, the id of `[MASK]`.

    Returns:
        A list (one entry per row) of dicts as `fill_mask` returns them:
        `"text"` (the row's wordpieces as words, without `[CLS]`,
        `[SEP]` and `[PAD]`), `"filled"` (the same with each `[MASK]`
        replaced by its top prediction) and `"masks"`.
    """
    _, counts = mask_positions(token_ids, mask_id)
    answers = []
    for i, row in enumerate(np.asarray(token_ids)):
        masks = []
        for m in range(counts[i]):
            ranked = zip(outputs["top_ids"][i, m], outputs["scores"][i, m])
            masks.append([(vocabulary[t], float(p)) for t, p in ranked])
        best = iter(candidates[0][0] for candidates in masks)
        pieces = [vocabulary[t] for t in row]
        pieces = [t for t in pieces if t not in ("[PAD]", "[CLS]", "[SEP]")]
        filled = [next(best) if t == "[MASK]" else t for t in pieces]
        answers.append(
            {
                "text": words(pieces),
                "filled": words(filled),
                "masks": masks,
            }
        )
    return answers


def fill_mask_at_ids(loaded, export_dir, token_ids):
    """`fill_mask_ids` answers of a loaded id-level export for `token_ids`."""
    vocab = vocabulary(export_dir)
    positions, _ = mask_positions(token_ids, vocab.index("[MASK]"))
    out = loaded.signatures["serving_default"](
        token_ids=tf.constant(token_ids), positions=tf.constant(positions)
    )
    out = {k: v.numpy() for k, v in out.items()}
    return fill_mask_ids(out, token_ids, vocab, vocab.index("[MASK]"))


def words(pieces):
    """Wordpieces joined into words: `["re", "##turn", "it"]` -> `"return it"`."""
    return " ".join(pieces).replace(" ##", "")


def saved_model_cli_run(export_dir, signature, inputs):
    """Runs one signature with `saved_model_cli run`, in its own process.

    `saved_model_cli` (installed with TensorFlow, beside this Python) loads
    the SavedModel as TF Serving does: every op of the graph must be
    registered, so it loads only exports of core TensorFlow ops, such as
    the id-level one.

    Args:
        export_dir: the version folder.
        signature: str, e.g. `"serving_default"`.
        inputs: dict input key -> NumPy array.

    Returns:
        A dict output key -> NumPy array.
    """
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    with tempfile.TemporaryDirectory() as work:
        files = []
        for key, value in inputs.items():
            np.save(os.path.join(work, key + ".npy"), value)
            files.append(f"{key}={os.path.join(work, key + '.npy')}")
        outdir = os.path.join(work, "outputs")
        completed = subprocess.run(
            [cli, "run", "--dir", export_dir, "--tag_set", "serve",
             "--signature_def", signature, "--inputs", ";".join(files), "--outdir", outdir],
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"saved_model_cli failed: {completed.stderr[-2000:]}")
        return {
            name[: -len(".npy")]: np.load(os.path.join(outdir, name))
            for name in os.listdir(outdir)
        }


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
    if argv[1] == "--tokenize":
        seed = [a for a in argv[2:] if a.startswith("--seed=")]
        texts = [a for a in argv[2:] if not a.startswith("--seed=")]
        ids, positions = tokenize(argv[0], texts)
        inputs = {"token_ids": ids.tolist()}
        if seed:  # The `mask` signature's inputs.
            inputs["seed"] = [int(s) for s in seed[-1][len("--seed="):].split(",") if s]
        else:  # The fill-mask `serving_default`'s.
            inputs["positions"] = positions.tolist()
        if as_json:
            print(json.dumps(inputs))
        else:
            print(";".join(f"{key}={value}" for key, value in inputs.items()))
        return 0
    if argv[1] == "--ids":
        rows = [[int(i) for i in text.split()] for text in argv[2:]]
        width = max(len(row) for row in rows)
        ids = np.array([row + [0] * (width - len(row)) for row in rows], "int32")
        answers = fill_mask_at_ids(load_ids(argv[0]), argv[0], ids)
    else:
        loaded = load(argv[0])
        if is_id_level(loaded):
            answers = fill_mask_at_ids(loaded, argv[0], tokenize(argv[0], argv[1:])[0])
        else:
            answers = fill_mask(loaded, argv[1:])
    if as_json:
        print(json.dumps(answers))
    else:
        print("\n".join(format_answer(a) for a in answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
