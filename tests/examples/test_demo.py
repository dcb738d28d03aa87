"""examples/demo.py (`make demo`) runs end to end, here with tiny settings."""

import json
import os
import re
import subprocess
import sys

import demo
import pretrain_mlm
import quiet_start
from corpora import Corpus
from documentation_blocks import documentation_pages
from documentation_blocks import exec_blocks
from documentation_blocks import python_blocks

EXAMPLES = os.path.dirname(os.path.abspath(demo.__file__))


def answer_lines(section):
    """The `[MASK] #1:` lines of a printed section, in order."""
    return [line for line in section.splitlines() if line.startswith("  [MASK] #1: ")]


def test_demo_trains_exports_and_answers_through_the_saved_model(tiny_demo):
    # `tiny_demo` ran `demo.main` on the tiny flags (the run the
    # pretrain_mlm tests read too).
    output, printed = tiny_demo["output"], tiny_demo["printed"]
    assert tiny_demo["status"] == 0
    assert "Held-out masked LM (fixed masking): loss" in printed
    assert "loaded with plain TensorFlow" in printed
    queries = tiny_demo["queries"][: demo.QUERY_COUNT]
    assert queries, "the tiny run found no query by the rule"
    for query, _ in queries:
        assert query in printed
    # One answer per query from the text export, one from the id-level export.
    assert printed.count("[MASK] #1:") == len(queries) + 1
    # demo.show_masking: eight unseeded calls all agree with probability < 1e-7.
    assert (
        "without a seed 8 calls are not all identical: True; "
        "with the same seed they are identical: True" in printed
    )
    assert "make demo finished in" in printed
    assert (output / "1" / "saved_model.pb").is_file()
    ids_export = output.parent / "mlm_encoder_ids" / "1"
    assert (ids_export / "saved_model.pb").is_file()
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Exports (ops needed"))
    text_path, text_ops, ids_path, ids_ops = lines[start + 1 : start + 5]
    assert text_path.endswith(str(output / "1")) and "FastWordpieceTokenizeWithOffsets" in text_ops
    assert ids_path.endswith(str(ids_export)) and "none: any TensorFlow build" in ids_ops
    text_part, served = printed.split("Fill-mask through the id-level export, served by saved_model_cli")
    text, filled, answer = served.split("\n\n")[1].splitlines()[:3]
    assert text.count("[MASK]") == 1
    # (The top-1 may be a "##" piece, joined to the word before; exact.)
    best = answer[len("  [MASK] #1: "):].split(" ")[0]
    assert filled == "  -> " + text.replace("[MASK]", best).replace(" ##", "")
    # The id-level export gives the text export's answer to the first query.
    assert answer == answer_lines(text_part)[0]


def test_demo_queries_follow_the_stated_rule(tiny_demo):
    # The queries are recomputed from the corpus and the vocabulary: the
    # demo printed what the rule picks, and judged each answer as printed.
    args = pretrain_mlm.parse_args(tiny_demo["argv"])
    corpus = pretrain_mlm.load(args)
    vocabulary = tiny_demo["result"]["tokenizer"].vocabulary
    every_query = demo.pick_queries(corpus, vocabulary, count=None)
    assert every_query == tiny_demo["queries"]
    queries = every_query[: demo.QUERY_COUNT]
    assert demo.pick_queries(corpus, vocabulary) == queries
    printed = tiny_demo["printed"]
    shown = printed.split("(demo.pick_queries: the first common word of each masked):")[1]
    shown = shown.split("\n\nThe held-out word is the top answer")[0].strip("\n").split("\n\n")
    assert len(shown) == len(queries)
    right = 0
    for (query, word), answer in zip(queries, shown):
        lines = answer.splitlines()
        assert lines[0] == query and lines[-1].startswith(f"  held-out word: {word} (")
        verdict = lines[-1][len(f"  held-out word: {word} (") : -1]
        line = answer_lines(answer)
        if not line:  # The [MASK] lies past the tiny model's sequence length.
            assert verdict.startswith("not answered")
            continue
        candidates = [c.rsplit(" ", 1)[0] for c in line[0][len("  [MASK] #1: "):].split(", ")]
        if candidates[0] == word:
            assert verdict == "top-1 right"
            right += 1
        elif word in candidates:
            assert verdict == f"in the top 3 (rank {candidates.index(word) + 1})"
        else:
            assert verdict == "not in the top 3"
    assert f"is the top answer for {right} of these {len(queries)}," in printed
    # Every passage the rule admits is scored too (the shown ones among them).
    (top1, topk), = re.findall(
        rf"Over all {len(every_query)} held-out passages the rule admits: the top "
        r"answer for (\d+) \(\d+ %\), among the top 3 for (\d+)", printed
    )
    assert right <= int(top1) <= int(topk) <= len(every_query)


def test_pick_queries_masks_the_first_common_word_of_held_out_prose():
    common = [f"w{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(demo.COMMON_WORDS + 10)]
    # Word i of `common` appears 1000 - i times in training: ranks as listed.
    train = tuple(" ".join([word] * (1000 - i)) for i, word in enumerate(common))
    commonest, common_one, rare = common[0], common[demo.SKIP_COMMONEST], common[-1]
    validation = (
        f"{commonest} {rare} {common_one} x y z.",  # the commonest skipped: common_one
        f"Ends with {common_one} x y z w",  # no common word before the last
        f"{common_one} too short.",  # fewer than QUERY_WORDS[0] words
        f"{common_one} x y z w v, #not plain prose.",  # '#' is not plain prose
        f"{rare} x y z w {common_one.upper()} v.",  # case-folded, kept as typed
    )
    corpus = Corpus("toy", train=train, validation=validation)
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + common
    assert demo.pick_queries(corpus, vocabulary) == [
        (f"{commonest} {rare} [MASK] x y z.", common_one),
        ("Ends with [MASK] x y z w", common_one),
        (f"{rare} x y z w [MASK] v.", common_one),
    ]
    # A word outside the vocabulary (several pieces) is never masked.
    vocabulary.remove(common_one)
    assert all(word != common_one for _, word in demo.pick_queries(corpus, vocabulary))


def test_demo_prints_where_the_time_went(tiny_demo):
    summary = tiny_demo["printed"].split("Where the time went")[1]
    rows = dict(
        (name.strip(), float(wall))
        for name, wall in re.findall(r"^  (\S.*?)\s+(\d+\.\d) s\s+\d+ %\s+CPU", summary, re.M)
    )
    for phase in ("corpus", "vocabulary", "tokenize and pack", "train", "export",
                  "fill-mask (text export)", "fill-mask (id-level, saved_model_cli)",
                  "start-up and the rest", "total"):
        assert phase in rows, summary
    parts = sum(wall for name, wall in rows.items() if name != "total")
    assert abs(parts - rows["total"]) <= 0.1 * len(rows)  # Rounding of each row.


def test_demo_writes_one_line_per_epoch_off_a_terminal(tiny_demo):
    # The demo's output went to a StringIO, not a terminal: Keras wrote one
    # line per epoch, not a progress bar redrawn hundreds of times.
    printed = tiny_demo["printed"]
    epochs = pretrain_mlm.parse_args(tiny_demo["argv"]).epochs
    assert "\r" not in printed and "\x1b[" not in printed and "━" not in printed
    assert len(re.findall(r"^\d+/\d+ - \d+s - .*val_loss", printed, re.M)) == epochs
    assert len(printed) < 20_000


def test_tensorflow_starts_without_the_gpu_probe_messages(tmp_path):
    # A fresh process: TensorFlow's start-up writes before anything in
    # this one could filter it.
    script = (
        "import json, quiet_start; quiet_start.import_tensorflow(); "
        "print(json.dumps(quiet_start.captured_start_up))"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=EXAMPLES, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    unfiltered = json.loads(completed.stdout.strip().splitlines()[-1])
    probe = re.compile(r"cuInit|cuda drivers|absl::InitializeLog|^[IW]\d{4} ", re.M)
    assert not probe.search(completed.stderr), completed.stderr
    if not quiet_start.has_nvidia_driver():
        # Here the probe did fail: the filter, not luck, kept stderr clean.
        assert "failed call to cuInit" in unfiltered


def test_quiet_start_keeps_what_is_not_start_up_chatter():
    text = "\n".join([
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796591456.547142    5755 port.cc:153] oneDNN custom operations are on.",
        "W0000 00:00:1796591456.547142    5755 x.cc:1] a warning",
        "E0000 00:00:1796591466.773976    5755 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
        "E0000 00:00:1796591466.773976    5755 other.cc:7] a real error",
        "Traceback (most recent call last):",
    ])
    assert quiet_start.kept_lines(text, 2, driver_present=False) == text.splitlines()[4:]
    # With an NVIDIA driver a failed cuInit is an error worth showing.
    assert quiet_start.kept_lines(text, 2, driver_present=True) == text.splitlines()[3:]
    assert quiet_start.kept_lines(text, 0, driver_present=True) == text.splitlines()[1:]


def test_documentation_blocks_after_make_demo_run_on_its_exports(tiny_demo, tmp_path):
    blocks = [b for page in documentation_pages() for b in python_blocks(page) if b.after_demo]
    assert blocks, "no block says it runs after make demo"
    (tmp_path / "saved_models").symlink_to(tiny_demo["output"].parent, target_is_directory=True)
    exec_blocks(blocks, str(tmp_path))


def test_demo_reports_a_bad_corpus(tmp_path, capsys):
    output = tmp_path / "out"
    assert demo.main(["--tfds", "no_such_corpus_xyz", "--output", str(output)]) == 2
    assert "no_such_corpus_xyz" in capsys.readouterr().err
    assert not output.exists()
