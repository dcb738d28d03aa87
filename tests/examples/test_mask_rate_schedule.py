"""`examples/mask_rate_schedule.py`: realised rates follow the schedule; the plot is written."""

import os
import pathlib
import re
import subprocess
import sys

import matplotlib.image

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "examples" / "mask_rate_schedule.py"


def test_short_run_reports_small_deviations_and_writes_a_plot(tmp_path):
    output = tmp_path / "rate.png"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "12", "--batch-size", "16", "--output", str(output)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    deviations = re.findall(r"mean ([+-]\d\.\d+), max \|\.\| (\d\.\d+) over 12 batches", result.stdout)
    assert len(deviations) == 3, result.stdout
    for mean, largest in deviations:
        # 16 x 128 tokens a batch: 5 sigma of a binomial share at 0.3 is 0.051.
        assert abs(float(mean)) < 0.02 and float(largest) < 0.051
    image = matplotlib.image.imread(output)
    assert image.shape[0] > 200 and image.shape[1] > 400


def test_bad_flags_exit_with_status_2():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "1"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "--steps" in result.stderr
