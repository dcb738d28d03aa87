"""`make demo`: pre-train a masked LM with dynamic masking, serve it, query it.

1. `examples/pretrain_mlm.py` with its defaults: learns a WordPiece
   vocabulary from the Python standard library's docstrings (no download),
   trains a small Transformer encoder with `DynamicMLMMasking` in `tf.data`,
   reports held-out loss and accuracy, and exports a SavedModel to
   `saved_models/mlm_encoder/1/`;
2. loads that SavedModel with plain TensorFlow (`tf.saved_model.load`, as
   `examples/serving_client.py` does: no Keras, no keras_dynmask) and asks
   it to fill in the `[MASK]` of held-out sentences chosen by a fixed rule
   (`pick_queries`), saying for each whether it found the word, and how
   often it does over every passage the rule admits;
3. calls the export's `mask` signature, the served dynamic masking;
4. lists both exports with the ops each needs beyond core TensorFlow
   (`keras_dynmask.export.required_ops`): the text export needs
   tensorflow-text's, the id-level one (`saved_models/mlm_encoder_ids/1/`)
   none, and answers a query through the id-level export with
   `saved_model_cli run`, which loads it as TF Serving would;
5. prints where the time went, phase by phase (wall and CPU seconds).

Every flag of `pretrain_mlm.py` works here too, e.g.
`python examples/demo.py --epochs 2` or `--text-files "notes/*.txt"`.
Keras prints a progress bar on a terminal and one line per epoch when the
output goes to a file (`--verbose` chooses).
"""

import time

# The job's clock starts before TensorFlow loads (the process's CPU seconds
# count from its start); example_common starts TensorFlow through
# quiet_start, without the GPU probe's messages on a machine without a GPU.
STARTED = (time.perf_counter(), 0.0)

import example_common  # noqa: E402  (first: it imports TensorFlow)
import collections  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

from keras_dynmask import export  # noqa: E402

import pretrain_mlm  # noqa: E402
import serving_client  # noqa: E402

# The fill-mask queries follow this rule, fixed before any of the demo's
# answers was seen and never tuned to them: held-out passages (the model
# never trained on them), in corpus order, that are plain prose of
# QUERY_WORDS words, each with its first common word masked. A common word
# is one of the COMMON_WORDS most frequent words of the training text, is a
# single wordpiece (one [MASK] stands for it), and is not one of the
# SKIP_COMMONEST most frequent (the, of, a, to, ...: function words that
# show little of what the model learned). The first QUERY_COUNT are shown;
# the score over every passage the rule admits is printed below them.
QUERY_COUNT = 5
QUERY_WORDS = (6, 14)
COMMON_WORDS = 300
SKIP_COMMONEST = 30
PLAIN_PROSE = re.compile(r"[A-Za-z ,.;:'()-]+")
WORD = re.compile(r"[a-z]+")

# The text the served masking is shown on.
MASKING_EXAMPLE = "Return a new list with the items of the iterable in sorted order."


def common_words(corpus, vocabulary):
    """The words a query may mask, most frequent first (see the rule above).

    Args:
        corpus: the `Corpus` trained on.
        vocabulary: the tokenizer's pieces.

    Returns:
        A list of str.
    """
    counts = collections.Counter(
        word for passage in corpus.train for word in WORD.findall(passage.lower())
    )
    pieces = set(vocabulary)
    ranked = [word for word, _ in counts.most_common(COMMON_WORDS)]
    return [word for word in ranked[SKIP_COMMONEST:] if word in pieces]


def pick_queries(corpus, vocabulary, count=QUERY_COUNT):
    """Held-out passages with their first common word masked, by the rule above.

    Args:
        corpus: the `Corpus` trained on; queries come from its validation
            split.
        vocabulary: the tokenizer's pieces.
        count: int, the most queries to return, or `None` for all.

    Returns:
        A list of `(query, word)`: the passage with one `[MASK]`, and the
        (lower-case) word it hides. Fewer than `count` if fewer passages
        fit the rule.
    """
    maskable = set(common_words(corpus, vocabulary))
    low, high = QUERY_WORDS
    queries = []
    for passage in corpus.validation:
        words = passage.split()
        if not (low <= len(words) <= high and PLAIN_PROSE.fullmatch(passage)):
            continue
        for i, token in enumerate(words):
            core = token.strip(",.;:'()-")
            if core.isalpha() and core.lower() in maskable:
                words[i] = token.replace(core, "[MASK]", 1)
                queries.append((" ".join(words), core.lower()))
                break
        if count is not None and len(queries) == count:
            break
    return queries


def judged(answer, word):
    """`format_answer`'s lines and a line saying where the hidden word ranks."""
    candidates = [token for token, _ in answer["masks"][0]] if answer["masks"] else []
    if not candidates:
        verdict = "not answered: the [MASK] lies past the model's sequence length"
    elif candidates[0] == word:
        verdict = "top-1 right"
    elif word in candidates:
        verdict = f"in the top {len(candidates)} (rank {candidates.index(word) + 1})"
    else:
        verdict = f"not in the top {len(candidates)}"
    return serving_client.format_answer(answer) + f"\n  held-out word: {word} ({verdict})"


def scores(answers, queries):
    """`(top-1 right, in the top k)` counts of `answers` to `queries`.

    A query whose `[MASK]` lies past the model's sequence length has no
    answer and counts as not found.
    """
    candidates = [[t for t, _ in a["masks"][0]] if a["masks"] else [] for a in answers]
    words = [word for _, word in queries]
    top1 = sum(c[:1] == [word] for c, word in zip(candidates, words))
    topk = sum(word in c for c, word in zip(candidates, words))
    return top1, topk


def query_text_export(result, queries, every_query):
    """Fill-mask through the text export, loaded with plain TensorFlow.

    Args:
        result: what `pretrain_mlm.run` returned.
        queries: the `(query, word)` pairs to show.
        every_query: every pair the rule admits (`queries` first), scored.

    Returns:
        The loaded export.
    """
    print(f"\nFill-mask through the exported SavedModel ({result['export_dir']}),")
    print("loaded with plain TensorFlow, on held-out sentences picked by the")
    print("demo's rule (demo.pick_queries: the first common word of each masked):\n")
    loaded = serving_client.load(result["export_dir"])
    answers = serving_client.fill_mask(loaded, [query for query, _ in every_query])
    shown = answers[: len(queries)]
    print("\n\n".join(judged(a, word) for a, (_, word) in zip(shown, queries)))
    k = max(len(a["masks"][0]) for a in answers if a["masks"]) if any(a["masks"] for a in answers) else 0
    top1, topk = scores(shown, queries)
    print(
        f"\nThe held-out word is the top answer for {top1} of these {len(queries)}, "
        f"among the top {k} for {topk}."
    )
    top1, topk = scores(answers, every_query)
    n = len(every_query)
    print(
        f"Over all {n} held-out passages the rule admits: the top answer for {top1} "
        f"({100 * top1 / n:.0f} %), among the top {k} for {topk} ({100 * topk / n:.0f} %)."
    )
    return loaded


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


def train_and_query(args, corpus, stopwatch):
    """Trains and exports with `pretrain_mlm.run`, then queries the export.

    Args:
        args: the `pretrain_mlm.parse_args()` namespace.
        corpus: the `Corpus` to train on.
        stopwatch: the `example_common.Stopwatch` timing the job.

    Returns:
        What `pretrain_mlm.run` returns.
    """
    result = pretrain_mlm.run(args, corpus, stopwatch=stopwatch)
    every_query = pick_queries(corpus, result["tokenizer"].vocabulary, count=None)
    queries = every_query[:QUERY_COUNT]
    if not queries:
        print("\nNo held-out passage fits the query rule (see demo.pick_queries).")
        return result
    with stopwatch.phase("fill-mask (text export)"):
        loaded = query_text_export(result, queries, every_query)
    with stopwatch.phase("served masking"):
        show_masking(loaded, serving_client.vocabulary(result["export_dir"]), MASKING_EXAMPLE)
    with stopwatch.phase("required ops"):
        show_exports(result)
    with stopwatch.phase("fill-mask (id-level, saved_model_cli)"):
        query_ids_export(result, queries[0][0])
    return result


def main(argv=None, started=None):
    """`make demo` with `pretrain_mlm.py`'s flags; returns 0, or 2.

    Args:
        argv: list of str, or `None` for `sys.argv[1:]`.
        started: `None` (now), or `(wall, CPU)` seconds when the process
            began (`STARTED`), so that start-up counts in the summary.
    """
    stopwatch = example_common.Stopwatch(started)

    def load(args):
        with stopwatch.phase("corpus"):
            return pretrain_mlm.load(args)

    return example_common.run_from_command_line(
        pretrain_mlm.parse_args(argv),
        load,
        lambda args, corpus: train_and_query(args, corpus, stopwatch),
        done_message="\nmake demo finished in",
    )


if __name__ == "__main__":
    sys.exit(main(started=STARTED))
