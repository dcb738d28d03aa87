"""`examples/mask_rate_schedule.py`: realised rates follow the schedule; the plot is written."""

import re

import matplotlib.image
import pytest

import mask_rate_schedule

# The script runs in this process (`main`, as its command line calls it):
# a child process would start TensorFlow again.


def test_short_run_reports_small_deviations_and_writes_a_plot(tmp_path, capsys):
    output = tmp_path / "rate.png"
    status = mask_rate_schedule.main(["--steps", "12", "--batch-size", "16", "--output", str(output)])
    printed = capsys.readouterr().out
    assert status == 0
    deviations = re.findall(r"mean ([+-]\d\.\d+), max \|\.\| (\d\.\d+) over 12 batches", printed)
    assert len(deviations) == 3, printed
    for mean, largest in deviations:
        # 16 x 128 tokens a batch: 5 sigma of a binomial share at 0.3 is 0.051.
        assert abs(float(mean)) < 0.02 and float(largest) < 0.051
    image = matplotlib.image.imread(output)
    assert image.shape[0] > 200 and image.shape[1] > 400


def test_bad_flags_exit_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        mask_rate_schedule.main(["--steps", "1"])
    assert exit_.value.code == 2 and "--steps" in capsys.readouterr().err
