"""Every Python block of README.md and docs/ runs as written.

`documentation_blocks` says how blocks are found and run: each on its own
from the repository root, except those whose first line says they continue
the block above. Blocks that use `make demo`'s exports (first line
`# after make demo`) run in `tests/examples/test_demo.py`, on the demo
test's own exports. Shell blocks are not run; the scripts, flags and make
targets they name are checked to exist.
"""

import os
import re
import shlex

import pytest

from documentation_blocks import REPOSITORY_ROOT
from documentation_blocks import documentation_pages
from documentation_blocks import fenced_blocks
from documentation_blocks import python_blocks
from documentation_blocks import run_blocks

PAGES = documentation_pages()
BLOCKS = {page: [b for b in python_blocks(page) if not b.after_demo] for page in PAGES}
PAGES_WITH_PYTHON = [page for page in PAGES if BLOCKS[page]]
# Seconds for every block of every page in one process (TensorFlow's
# start-up and a local tf.data service included); each block uses tiny data.
TIMEOUT = 300


@pytest.fixture(scope="module")
def block_errors(tmp_path_factory):
    """Every page's blocks, run once in one process: `where` -> error or None."""
    blocks = [block for page in PAGES_WITH_PYTHON for block in BLOCKS[page]]
    work_dir = str(tmp_path_factory.mktemp("blocks"))
    errors, _ = run_blocks(blocks, work_dir, cwd=REPOSITORY_ROOT, timeout=TIMEOUT)
    return errors


def test_the_pages_hold_python_blocks():
    # The test below is parametrized by page: a parser that found nothing
    # would pass it vacuously.
    assert "README.md" in PAGES_WITH_PYTHON
    assert sum(len(blocks) for blocks in BLOCKS.values()) >= 10


@pytest.mark.parametrize("page", PAGES_WITH_PYTHON)
def test_python_blocks_run_as_written(page, block_errors):
    failed = {b.where: block_errors[b.where] for b in BLOCKS[page] if block_errors[b.where]}
    assert not failed, "\n\n".join(f"{where}:\n{error}" for where, error in failed.items())


def _page(tmp_path, text):
    page = tmp_path / "page.md"
    page.write_text(text)
    return python_blocks(os.path.relpath(page, REPOSITORY_ROOT))


def test_a_failing_block_is_reported_and_the_next_chain_still_runs(tmp_path):
    blocks = _page(
        tmp_path,
        "```python\nx = 1\n```\n\n```python\n# continues the block above\nassert x == 2\n```\n\n"
        "```python\n# continues the block above\nx = 3\n```\n\n```python\ny = 4\n```\n",
    )
    errors, _ = run_blocks(blocks, str(tmp_path), cwd=str(tmp_path), timeout=60)
    first, second, third, fourth = (errors[b.where] for b in blocks)
    assert first is None and fourth is None
    assert "AssertionError" in second and blocks[1].where in second  # The page and line.
    assert third == f"not run: {blocks[1].where} failed"


def test_a_block_runs_alone_unless_it_says_it_continues(tmp_path):
    blocks = _page(tmp_path, "```python\nx = 1\n```\n\n```python\nprint(x)\n```\n")
    errors, _ = run_blocks(blocks, str(tmp_path), cwd=str(tmp_path), timeout=60)
    assert errors[blocks[0].where] is None and "NameError" in errors[blocks[1].where]


def test_a_block_that_hangs_is_named(tmp_path):
    blocks = _page(tmp_path, "```python\nx = 1\n```\n\n```python\nimport time\ntime.sleep(60)\n```\n")
    errors, _ = run_blocks(blocks, str(tmp_path), cwd=str(tmp_path), timeout=3)
    assert errors[blocks[0].where] is None
    assert errors[blocks[1].where] == "timed out after 3 s (in this block)"


# Shell blocks.

_MAKE_TARGET = re.compile(r"^([A-Za-z][\w-]*)\s*:", re.MULTILINE)


def _shell_commands():
    """`(where, words)` of each command line of the pages' shell blocks."""
    commands = []
    for page in PAGES:
        for block in fenced_blocks(page):
            if block.language not in ("bash", "sh", "shell"):
                continue
            text = block.code.replace("\\\n", " ")
            for line in text.splitlines():
                line = line.split(" # ")[0].strip()
                if line and not line.startswith("#"):
                    commands.append((block.where, shlex.split(line, comments=True)))
    return commands


def _script_source(path):
    with open(os.path.join(REPOSITORY_ROOT, path), encoding="utf-8") as handle:
        return handle.read()


def test_shell_blocks_name_scripts_flags_and_targets_that_exist():
    with open(os.path.join(REPOSITORY_ROOT, "Makefile"), encoding="utf-8") as handle:
        targets = set(_MAKE_TARGET.findall(handle.read()))
    # Flags the example scripts share come from example_common.
    shared = _script_source("examples/example_common.py")
    checked = 0
    for where, words in _shell_commands():
        words = [w for w in words if "=" not in w or w.startswith("-")]
        scripts = [w for w in words if w.endswith(".py") and "/" in w]
        if words and words[0] == "make":
            for target in words[1:]:
                assert target in targets, f"{where}: no make target {target!r}"
                checked += 1
        for script in scripts:
            assert os.path.isfile(os.path.join(REPOSITORY_ROOT, script)), f"{where}: {script}"
            source = _script_source(script) + shared
            for word in words[words.index(script) + 1 :]:
                flag = word.strip("[]").split("=")[0]
                if flag.startswith("--"):
                    assert f'"{flag}' in source, f"{where}: {script} has no flag {flag}"
            checked += 1
    assert checked >= 10
