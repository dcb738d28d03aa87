"""`examples/static_vs_dynamic.py --quick`: writes a well-formed table and plot.

What is checked is the output's form, not which masking scheme wins.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import matplotlib.image
import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "examples" / "static_vs_dynamic.py"
ARMS = ("static-dupe1", "static-dupe10", "dynamic")
MEAN_STD = re.compile(r"^-?\d+(\.\d+)? ± \d+(\.\d+)?$")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("static_vs_dynamic")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--verbose", "2", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return output, result.stdout


def test_table_has_one_row_per_arm_with_mean_and_std(quick_run):
    output, stdout = quick_run
    lines = (output / "results.md").read_text(encoding="utf-8").strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[0].startswith("arm")
    assert "final held-out loss" in header and "best held-out acc." in header
    assert "wall time per run (s)" in header
    assert set(lines[1].strip("|").split("|")) <= {"---", "---:"}
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [row[0] for row in rows] == list(ARMS)
    for row in rows:
        assert len(row) == len(header)
        for cell in row[1:]:
            assert MEAN_STD.match(cell), cell
    # Losses are cross-entropies (positive), accuracies lie in [0, 1].
    for row in rows:
        cells = dict(zip(header[1:], (float(c.split(" ± ")[0]) for c in row[1:])))
        assert cells["final held-out loss"] > 0
        assert cells["best held-out loss"] <= cells["final held-out loss"] + 1e-9
        assert 0 <= cells["final held-out acc."] <= cells["best held-out acc."] + 1e-9 <= 1 + 1e-9
    assert lines[0] in stdout  # The table is printed as well.


def test_plot_is_a_png_with_two_panels_worth_of_pixels(quick_run):
    output, _ = quick_run
    path = output / "static_vs_dynamic.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert width > height > 200  # Two panels side by side.
    assert image.std() > 0  # Something was drawn.


def test_history_holds_every_run_and_epoch(quick_run):
    output, _ = quick_run
    history = json.loads((output / "history.json").read_text(encoding="utf-8"))
    epochs = history["args"]["epochs"]
    seeds = history["args"]["seeds"]
    assert history["args"]["quick"] is True
    assert set(history["runs"]) == set(ARMS)
    for runs in history["runs"].values():
        assert [run["seed"] for run in runs] == list(range(1, 1 + seeds))
        for run in runs:
            for key in ("loss", "val_loss", "val_accuracy"):
                assert len(run[key]) == epochs
            assert run["seconds"] > 0


def test_bad_flags_are_rejected_quoting_the_value():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--epochs", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "--epochs must be >= 1, got 0" in result.stderr
