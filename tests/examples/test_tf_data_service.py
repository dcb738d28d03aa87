"""examples/tf_data_service.py: trains on worker masks, leaves no process."""

import numpy as np

import tf_data_service
from service_processes import is_alive


def test_example_trains_on_worker_masks_and_leaves_no_process(tmp_path, capsys):
    words = np.array(
        "the a of to in is for on with as by an be this that from it or are "
        "value list file path name return string object module class data "
        "error type number default function argument call read write open "
        "close line text byte index key item set get new old first last".split()
    )
    picks = np.random.RandomState(0).randint(0, len(words), size=(300, 12))
    text = "\n\n".join(" ".join(words[row]) + "." for row in picks)
    (tmp_path / "corpus.txt").write_text(text)
    # In this process (`main`, as the command line runs it): only the
    # service's servers are processes of their own.
    history = tf_data_service.main(
        [
            "--text-files", str(tmp_path / "*.txt"),
            "--workers", "2",
            "--epochs", "2",
            "--batch-size", "16",
            "--sequence-length", "24",
            "--vocabulary-size", "200",
        ]
    )
    printed = capsys.readouterr().out
    assert len(history.history["loss"]) == 2
    assert "stopped: 3 of 3 server processes exited" in printed
    assert "trained 2 epochs" in printed
    pids_line = next(line for line in printed.splitlines() if "(pids [" in line)
    pids = [int(p) for p in pids_line.split("(pids [")[1].rstrip("])").split(",")]
    assert len(pids) == 3 and not [pid for pid in pids if is_alive(pid)]
