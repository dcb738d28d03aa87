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


# The runner: one child process per page, each chain of blocks (a block
# and those continuing it) in a fresh namespace; it reports per block.
_RUNNER = r"""
import json, sys, traceback
blocks = json.load(open(sys.argv[1], encoding="utf-8"))
namespace = None
for block in blocks:
    if not block["continues"] or namespace is None:
        namespace = {"__name__": "__main__"}
    print(json.dumps({"start": block["where"]}), flush=True)
    try:
        exec(compile(block["code"], block["where"], "exec"), namespace)
    except BaseException:
        print(json.dumps({"failed": block["where"], "error": traceback.format_exc()}), flush=True)
        sys.exit(1)
print(json.dumps({"done": len(blocks)}), flush=True)
"""


def run_blocks(blocks, work_dir, cwd, timeout, env=None):
    """Runs `blocks` in order in one new Python process.

    Args:
        blocks: a list of `Block`s of one page.
        work_dir: a folder for the runner's input.
        cwd: the working directory of the process.
        timeout: seconds before the process is killed.
        env: extra environment variables.

    Returns:
        `(ok, report)`: whether every block ran, and the process's output
        (which block failed, with its traceback; stderr's tail).
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
    except subprocess.TimeoutExpired as error:
        started = [
            json.loads(line)["start"]
            for line in (error.stdout or b"").decode(errors="replace").splitlines()
            if line.startswith('{"start"')
        ]
        return False, f"timed out after {timeout} s in {started[-1] if started else '?'}"
    done = any(line.startswith('{"done"') for line in completed.stdout.splitlines())
    report = completed.stdout[-6000:] + "\n--- stderr ---\n" + completed.stderr[-3000:]
    return completed.returncode == 0 and done, report
