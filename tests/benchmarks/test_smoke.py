"""Every script in benchmarks/ runs end to end at its tiny `--smoke` size.

A benchmark nobody runs rots; this runs each one for seconds (figures
meaningless) and checks it finishes and prints its Markdown table. The
scripts run in this process (`main()` with `sys.argv` set), which saves a
TensorFlow start-up per script.
"""

import importlib.util
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def load(script):
    spec = importlib.util.spec_from_file_location(f"benchmark_{script[:-3]}", BENCHMARKS / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "script", sorted(p.name for p in BENCHMARKS.glob("*.py")), ids=lambda name: name[:-3]
)
def test_benchmark_smoke_run(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / script), "--smoke"])
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    try:
        status = load(script).main()
    except SystemExit as exit_:
        status = exit_.code
    printed = capsys.readouterr().out
    assert status in (None, 0), f"{script} --smoke returned {status}:\n{printed[-3000:]}"
    table = [line for line in printed.splitlines() if line.startswith("|")]
    assert len(table) >= 3, printed[-2000:]  # header, rule, a row at least
    assert "nan" not in "\n".join(table[2:]).split("|")[3], table
