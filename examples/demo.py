"""`make demo`: pre-train a masked LM with dynamic masking, serve it, query it.

1. `examples/pretrain_mlm.py` with its defaults: learns a WordPiece
   vocabulary from the Python standard library's docstrings (no download),
   trains a small Transformer encoder with `DynamicMLMMasking` in `tf.data`,
   reports held-out loss and accuracy, and exports a SavedModel to
   `saved_models/mlm_encoder/1/`;
2. loads that SavedModel with plain TensorFlow (`tf.saved_model.load`, as
   `examples/serving_client.py` does: no Keras, no keras_dynmask) and asks
   it to fill in the `[MASK]`s of three sentences;
3. calls the export's `mask` signature, the served dynamic masking;
4. lists both exports with the ops each needs beyond core TensorFlow
   (`keras_dynmask.export.required_ops`): the text export needs
   tensorflow-text's, the id-level one (`saved_models/mlm_encoder_ids/1/`)
   none, and answers a query through the id-level export with
   `saved_model_cli run`, which loads it as TF Serving would.

Every flag of `pretrain_mlm.py` works here too, e.g.
`python examples/demo.py --epochs 2` or `--text-files "notes/*.txt"`.
"""

import sys

import numpy as np

from keras_dynmask import export

import example_common
import pretrain_mlm
import serving_client

QUERIES = [
    "Return the [MASK] of the list.",
    "Open the [MASK] and return a file object.",
    "This [MASK] is deprecated; use the new one instead.",
]


def show_masking(loaded, vocabulary, text):
    """Prints what the served `mask` signature does to one text."""
    # Eight unseeded calls: with 14 or more tokens at mask_rate 0.15 (80/10/10)
    # each token stays put in one call with probability 0.865, so all eight
    # calls agree with probability below (0.865**8) ** 14 < 1e-7.
    fresh = [serving_client.mask(loaded, [text]) for _ in range(8)]
    seeded = [serving_client.mask(loaded, [text], seed=(7, 42)) for _ in range(2)]
    print(f"\nServed dynamic masking of {text!r} (selected tokens marked *):")
    for name, out in (("call 1", fresh[0]), ("call 2", fresh[1]), ("seed (7, 42)", seeded[0])):
        marked = [
            vocabulary[i] + ("*" if selected else "")
            for i, selected, real in zip(
                out["token_ids"][0], out["mask"][0], out["padding_mask"][0]
            )
            if real
        ]
        print(f"  {name:>12}: {' '.join(marked)}")
    same = all(np.array_equal(seeded[0][k], seeded[1][k]) for k in seeded[0])
    differ = any(
        not np.array_equal(fresh[0][k], out[k]) for out in fresh[1:] for k in ("token_ids", "mask")
    )
    print(
        f"  without a seed {len(fresh)} calls are not all identical: {differ}; "
        f"with the same seed they are identical: {same}"
    )


def show_exports(result):
    """Prints both exports and the ops each needs beyond core TensorFlow."""
    print("\nExports (ops needed beyond core TensorFlow, keras_dynmask.export.required_ops):")
    for name, key in (("text", "export_dir"), ("ids", "ids_export_dir")):
        needed = export.required_ops(result[key])
        print(f"  {name:>4}: {result[key]}")
        print(f"        {', '.join(needed) if needed else 'none: any TensorFlow build serves it'}")


def query_ids_export(result, text):
    """Fill-mask through the id-level export, run by `saved_model_cli`."""
    tokenizer = result["tokenizer"]
    ids = tokenizer([text], pad_to_sequence_length=False).numpy().astype("int32")
    positions, _ = serving_client.mask_positions(ids, tokenizer.mask_id)
    outputs = serving_client.saved_model_cli_run(
        result["ids_export_dir"],
        "serving_default",
        {"token_ids": ids, "positions": positions},
    )
    vocabulary = serving_client.vocabulary(result["ids_export_dir"])
    print(
        "\nFill-mask through the id-level export, served by saved_model_cli run "
        f"(token_ids {ids[0].tolist()}, positions {positions[0].tolist()}):\n"
    )
    answer = serving_client.fill_mask_ids(outputs, ids, vocabulary, tokenizer.mask_id)[0]
    print(serving_client.format_answer(answer))


def train_and_query(args, corpus):
    """Trains and exports with `pretrain_mlm.run`, then queries the export.

    Args:
        args: the `pretrain_mlm.parse_args()` namespace.
        corpus: the `Corpus` to train on.

    Returns:
        What `pretrain_mlm.run` returns.
    """
    result = pretrain_mlm.run(args, corpus)
    print(f"\nFill-mask through the exported SavedModel ({result['export_dir']}),")
    print("loaded with plain TensorFlow:\n")
    loaded = serving_client.load(result["export_dir"])
    answers = serving_client.fill_mask(loaded, QUERIES)
    print("\n\n".join(serving_client.format_answer(a) for a in answers))
    show_masking(
        loaded,
        serving_client.vocabulary(result["export_dir"]),
        "Return a new list with the items of the iterable in sorted order.",
    )
    show_exports(result)
    query_ids_export(result, QUERIES[0])
    return result


def main(argv=None):
    """`make demo` with `pretrain_mlm.py`'s flags; returns 0, or 2."""
    return example_common.run_from_command_line(
        pretrain_mlm.parse_args(argv),
        pretrain_mlm.load,
        train_and_query,
        done_message="\nmake demo finished in",
    )


if __name__ == "__main__":
    sys.exit(main())
