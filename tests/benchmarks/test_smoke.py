"""Every script in benchmarks/ runs end to end at its tiny `--smoke` size.

A benchmark nobody runs rots; this runs each one for seconds (figures
meaningless) and checks it finishes and prints its Markdown table.
"""

import os
import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize(
    "script", sorted(p.name for p in BENCHMARKS.glob("*.py")), ids=lambda name: name[:-3]
)
def test_benchmark_smoke_run(script):
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=BENCHMARKS.parent,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert completed.returncode == 0, (
        f"{script} --smoke exited {completed.returncode}:\n"
        f"{completed.stdout[-2000:]}\n{completed.stderr[-3000:]}"
    )
    table = [line for line in completed.stdout.splitlines() if line.startswith("|")]
    assert len(table) >= 3, completed.stdout[-2000:]  # header, rule, a row at least
    assert "nan" not in "\n".join(table[2:]).split("|")[3], table
