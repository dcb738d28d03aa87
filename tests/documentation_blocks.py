"""The Python blocks of the project's Markdown pages, and how they run.

Every fenced ```python block of `README.md` and `docs/**/*.md` runs as
written. The convention, visible to a reader in the block itself:

- a block runs on its own, in a fresh namespace, from the repository root;
- a block whose first line is `# continues the block above` runs in the
  namespace the block above it in the same page left (the names it uses
  come from there);
- a block whose first line is `# after make demo` uses what `make demo`
  writes (`saved_models/mlm_encoder/1/` and its id-level twin): the demo
  test runs it in a folder holding the exports of its own (tiny) run.

Any other first line is code, and no other marker exists: a block that
cannot run is a block to fix.
"""

import contextlib
import dataclasses
import glob
import json
import os
import re
import subprocess
import sys
import textwrap

REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTINUES = "# continues the block above"
AFTER_DEMO = "# after make demo"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<language>[\w+-]*)\s*$")


@dataclasses.dataclass
class Block:
    """One fenced code block of a page.

    Attributes:
        page: str, the page's path relative to the repository root.
        line: int, the 1-based line of the block's opening fence.
        language: str, what follows the opening fence (`"python"`, `"bash"`, ...).
        code: str, the block's text, its common indentation removed.
    """

    page: str
    line: int
    language: str
    code: str

    @property
    def where(self):
        return f"{self.page}:{self.line}"

    @property
    def continues(self):
        return self.code.startswith(CONTINUES)

    @property
    def after_demo(self):
        return self.code.startswith(AFTER_DEMO)


def documentation_pages():
    """`README.md` and every `docs/**/*.md`, relative to the repository root."""
    pages = ["README.md"] + sorted(
        os.path.relpath(path, REPOSITORY_ROOT)
        for path in glob.glob(os.path.join(REPOSITORY_ROOT, "docs", "**", "*.md"), recursive=True)
    )
    return [page.replace(os.sep, "/") for page in pages]


def fenced_blocks(page):
    """Every fenced code block of `page`, in order.

    Args:
        page: a path relative to the repository root.

    Returns:
        A list of `Block`s. A fence may be indented (a block inside a list
        item); the closing fence is the next line of three backticks.
    """
    with open(os.path.join(REPOSITORY_ROOT, page), encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    blocks, index = [], 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{index + 1}: a code block is never closed")
        code = textwrap.dedent("\n".join(lines[index + 1 : end]))
        blocks.append(Block(page, index + 1, opening["language"], code.strip("\n") + "\n"))
        index = end + 1
    return blocks


def python_blocks(page):
    """The ```python blocks of `page`, checked against the convention.

    Raises:
        ValueError: a page's first Python block says it continues one.
    """
    blocks = [block for block in fenced_blocks(page) if block.language == "python"]
    if blocks and blocks[0].continues:
        raise ValueError(f"{blocks[0].where}: the first block has no block above to continue")
    return blocks


# The runner: one child process, each chain of blocks (a block and those
# continuing it) in a fresh namespace; a line of JSON per block.
_RUNNER = r"""
import json, sys, traceback
blocks = json.load(open(sys.argv[1], encoding="utf-8"))
namespace, failed = None, None
for block in blocks:
    if not block["continues"] or namespace is None:
        namespace, failed = {"__name__": "__main__"}, None
    if failed:
        report = {"block": block["where"], "error": f"not run: {failed} failed"}
    else:
        print(json.dumps({"start": block["where"]}), flush=True)
        try:
            exec(compile(block["code"], block["where"], "exec"), namespace)
            report = {"block": block["where"], "error": None}
        except BaseException:
            failed = block["where"]
            report = {"block": block["where"], "error": traceback.format_exc()}
    print(json.dumps(report), flush=True)
"""


def run_blocks(blocks, work_dir, cwd, timeout, env=None):
    """Runs `blocks` in order in one new Python process.

    A block that fails does not stop the others: the chain it belongs to
    is cut there (the blocks continuing it are reported as not run), and
    the next chain starts afresh.

    Args:
        blocks: a list of `Block`s.
        work_dir: a folder for the runner's input.
        cwd: the working directory of the process.
        timeout: seconds before the process is killed.
        env: extra environment variables.

    Returns:
        `(errors, report)`: a dict `block.where` -> `None` (it ran) or the
        error (a traceback, or why it did not run), for every block; and
        the process's stderr's tail, or how it ended if it did not finish.
    """
    path = os.path.join(work_dir, "blocks.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(
            [{"where": b.where, "code": b.code, "continues": b.continues} for b in blocks],
            handle,
        )
    runner = os.path.join(work_dir, "run_blocks.py")
    with open(runner, "w", encoding="utf-8") as handle:
        handle.write(_RUNNER)
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [REPOSITORY_ROOT] + [p for p in [environment.get("PYTHONPATH")] if p]
    )
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    environment.update(env or {})
    try:
        completed = subprocess.run(
            [sys.executable, runner, path],
            cwd=cwd,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        stdout, report = completed.stdout, completed.stderr[-3000:]
        if completed.returncode:
            report = f"the runner exited with status {completed.returncode}\n" + report
    except subprocess.TimeoutExpired as error:
        stdout = (error.stdout or b"").decode(errors="replace")
        report = f"timed out after {timeout} s"
    errors, running = {}, None
    for line in stdout.splitlines():
        if line.startswith('{"start"'):
            running = json.loads(line)["start"]
        elif line.startswith('{"block"'):
            reply = json.loads(line)
            errors[reply["block"]] = reply["error"]
    for block in blocks:
        if block.where not in errors:
            errors[block.where] = (
                f"{report} (in this block)" if block.where == running else f"not run: {report}"
            )
    return errors, report


@contextlib.contextmanager
def _working_directory(path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def exec_blocks(blocks, cwd):
    """Runs `blocks` in order in this process, each chain in a fresh namespace.

    For blocks whose imports this process has made already (TensorFlow):
    no start-up to pay. A failing block raises `AssertionError` naming it,
    from its exception.

    Args:
        blocks: a list of `Block`s.
        cwd: the working directory while they run.
    """
    namespace = None
    with _working_directory(cwd):
        for block in blocks:
            if not block.continues or namespace is None:
                namespace = {"__name__": "__main__"}
            try:
                exec(compile(block.code, block.where, "exec"), namespace)
            except Exception as error:
                raise AssertionError(f"{block.where} failed: {error!r}") from error
