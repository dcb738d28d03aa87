"""`examples/static_vs_dynamic.py`: every arm runs, the arms compare, outputs are whole.

What is checked is the study's design (same data order and evaluation for
every arm, every arm and seed recorded) and its outputs' form, not which
masking scheme wins.
"""

import contextlib
import io
import json
import re

import matplotlib.image
import numpy as np
import pytest

import static_vs_dynamic
import static_vs_dynamic_arms as arms

LONG_ARMS = ("static-dupe1", "static-dupe10", "dynamic")
STRATEGY_ARMS = ("dynamic", "dynamic-word", "dynamic-span", "dynamic-schedule")
MEAN_STD = re.compile(r"^-?\d+(\.\d+)? ± \d+(\.\d+)?$")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    # In this process (`main`, as the command line runs it): a child would
    # start TensorFlow and parse the corpus again. A third of `--quick`'s
    # passages still fill every family's sequences (64 and 128 of 32 tokens).
    output = tmp_path_factory.mktemp("static_vs_dynamic")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = static_vs_dynamic.main(
            ["--quick", "--max-passages", "1000", "--output", str(output)]
        )
    assert status == 0, printed.getvalue()[-3000:]
    return output, printed.getvalue()


def tables(text):
    """`results.md` -> {section heading: (header cells, rows of cells)}."""
    found, heading = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:]
        elif line.startswith("|") and heading is not None:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            found.setdefault(heading, [])
            if not set(cells) <= {"---", "---:"}:
                found[heading].append(cells)
    return {h: (rows[0], rows[1:]) for h, rows in found.items()}


def test_one_table_per_family_with_every_arm_as_mean_and_std(quick_run):
    output, stdout = quick_run
    text = (output / "results.md").read_text(encoding="utf-8")
    found = tables(text)
    assert len(found) == 2
    (long_header, long_rows), (strategy_header, strategy_rows) = found.values()
    assert [row[0] for row in long_rows] == list(LONG_ARMS)
    assert [row[0] for row in strategy_rows] == list(STRATEGY_ARMS)
    for header, rows in ((long_header, long_rows), (strategy_header, strategy_rows)):
        assert header[0] == "arm (2 seeds)"
        for row in rows:
            assert len(row) == len(header)
            assert all(MEAN_STD.match(cell) for cell in row[1:]), row
            cells = dict(zip(header[1:], (float(c.split(" ± ")[0]) for c in row[1:])))
            assert cells["final held-out loss"] > 0
            assert 0 <= cells["final held-out acc."] <= cells["best held-out acc."] <= 1
    assert "own-masking acc." in strategy_header and "epoch of best" in long_header
    assert text.splitlines()[0] in stdout  # The tables are printed as well.
    assert "ETA" in stdout


def test_one_plot_per_question(quick_run):
    output, _ = quick_run
    for name in ("long_run.png", "strategies.png"):
        path = output / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = matplotlib.image.imread(path)
        height, width = image.shape[:2]
        assert width > height > 200  # Two panels side by side.
        assert image.std() > 0


def test_history_holds_every_run_seed_and_evaluated_epoch(quick_run):
    output, _ = quick_run
    history = json.loads((output / "history.json").read_text(encoding="utf-8"))
    args = history["args"]
    assert args["quick"] is True and history["unavailable"] == {}
    long, strategy = history["families"]["long"], history["families"]["strategy"]
    every = args["evaluate_every"]
    assert long["epochs_evaluated"] == list(
        range(every, args["long_epochs"] + 1, every)
    )
    assert strategy["epochs_evaluated"] == list(range(1, args["strategy_epochs"] + 1))
    for family, names in ((long, LONG_ARMS), (strategy, STRATEGY_ARMS)):
        assert list(family["runs"]) == list(names)
        for runs in family["runs"].values():
            assert [run["seed"] for run in runs] == [1, 2]
            for run in runs:
                assert run["epochs"] == family["epochs_evaluated"]
                for key in ("loss", "val_loss", "val_accuracy"):
                    assert len(run[key]) == len(family["epochs_evaluated"])
    # Arms that mask as the fixed evaluation does score the same on both.
    for run in strategy["runs"]["dynamic"]:
        assert run["own_loss"] == pytest.approx(run["val_loss"][-1], rel=1e-5)


class FakeTokenizer:
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
        f"w{i}" if i % 2 else f"##p{i}" for i in range(55)
    ]
    vocabulary_size = len(vocabulary)
    pad_id, unk_id, cls_id, sep_id, mask_id = range(5)


@pytest.mark.parametrize("arm", ["static-dupe1", "static-dupe10", *STRATEGY_ARMS])
def test_every_arm_sees_the_same_sequences_in_the_same_order(arm):
    rows = np.random.default_rng(0).integers(5, 60, size=(24, 12)).astype("int32")
    masker = arms.arm_masker(
        arm, FakeTokenizer(), 0.15, total_steps=18, schedule_start=0.3
    )
    reference = arms.arm_masker("dynamic", FakeTokenizer(), 0.15, 18, 0.3)
    batches = list(
        arms.training_batches(arm, rows, masker, 8, 6, 3).as_numpy_iterator()
    )
    expected = list(
        arms.training_batches("dynamic", rows, reference, 8, 6, 3).as_numpy_iterator()
    )
    assert len(batches) == len(expected) == 18
    for (x, y, weight), (_, y_expected, _) in zip(batches, expected):
        np.testing.assert_array_equal(y, y_expected)  # Same rows, same order.
        np.testing.assert_array_equal(x[weight == 0], y[weight == 0])


def test_static_arms_replay_their_copies_and_dynamic_arms_do_not():
    rows = np.random.default_rng(1).integers(5, 60, size=(16, 20)).astype("int32")
    selections = {}
    for arm in ("static-dupe1", "static-dupe10", "dynamic"):
        masker = arms.arm_masker(arm, FakeTokenizer(), 0.3, 24, 0.3)
        batches = arms.training_batches(arm, rows, masker, 16, 12, 5)
        # Rows back in index order per epoch, so epochs compare row by row.
        per_epoch = []
        for epoch, (x, y, weight) in enumerate(batches.as_numpy_iterator()):
            order = np.lexsort(y.T[::-1])
            per_epoch.append(weight[order])
        selections[arm] = np.array(per_epoch)
    one, ten, dynamic = (
        selections["static-dupe1"],
        selections["static-dupe10"],
        selections["dynamic"],
    )
    assert all((one[e] == one[0]).all() for e in range(12))
    assert all((ten[e] == ten[e % 10]).all() for e in range(12))
    assert len({ten[e].tobytes() for e in range(10)}) == 10
    assert len({dynamic[e].tobytes() for e in range(12)}) == 12


def test_an_arm_the_layer_cannot_run_is_reported_not_run():
    class NoWords(FakeTokenizer):
        vocabulary = None  # word_starts cannot read it.

    with pytest.raises(
        arms.ArmUnavailable, match="`dynamic-word` needs DynamicMLMMasking"
    ):
        arms.arm_masker("dynamic-word", NoWords(), 0.15, 10, 0.3)


def test_held_out_maskings_are_fixed_and_token_level_for_every_arm():
    rows = np.random.default_rng(2).integers(5, 60, size=(20, 16)).astype("int32")

    class Flags:
        batch_size, mask_rate = 8, 0.15

    evaluation = arms.held_out(FakeTokenizer(), rows, Flags(), list(STRATEGY_ARMS))
    assert set(evaluation) == {"token", "dynamic-word", "dynamic-span"}
    first = [w for _, _, w in evaluation["token"].as_numpy_iterator()]
    again = [w for _, _, w in evaluation["token"].as_numpy_iterator()]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    # 15 % of the 320 eligible tokens, token by token: 48 expected, binomial
    # standard deviation 6.4; 5 sigma either way.
    selected = sum(float(w.sum()) for w in first)
    assert abs(selected - 48) < 5 * np.sqrt(320 * 0.15 * 0.85)


def test_bad_flags_are_rejected_quoting_the_value(capsys):
    for flags, message in (
        (["--long-epochs", "0"], "--long-epochs must be >= 1, got 0"),
        (["--long-epochs", "10", "--evaluate-every", "4"], "must be a multiple of"),
    ):
        with pytest.raises(SystemExit) as exit_:
            static_vs_dynamic.main(flags)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err
