"""examples/tf_data_service.py: trains on worker masks, leaves no process."""

import os
import subprocess
import sys

import numpy as np

from service_processes import is_alive


def test_example_trains_on_worker_masks_and_leaves_no_process(tmp_path):
    words = np.array(
        "the a of to in is for on with as by an be this that from it or are "
        "value list file path name return string object module class data "
        "error type number default function argument call read write open "
        "close line text byte index key item set get new old first last".split()
    )
    picks = np.random.RandomState(0).randint(0, len(words), size=(300, 12))
    text = "\n\n".join(" ".join(words[row]) + "." for row in picks)
    (tmp_path / "corpus.txt").write_text(text)
    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "tf_data_service.py")
    result = subprocess.run(
        [
            sys.executable,
            example,
            "--text-files",
            str(tmp_path / "*.txt"),
            "--workers",
            "2",
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--sequence-length",
            "24",
            "--vocabulary-size",
            "200",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    assert "stopped: 3 of 3 server processes exited" in result.stdout
    assert "trained 2 epochs" in result.stdout
    pids_line = next(line for line in result.stdout.splitlines() if "(pids [" in line)
    pids = [int(p) for p in pids_line.split("(pids [")[1].rstrip("])").split(",")]
    assert len(pids) == 3 and not [pid for pid in pids if is_alive(pid)]
