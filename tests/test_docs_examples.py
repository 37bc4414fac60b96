"""The documentation runs: every fenced block of README.md and docs/*.md is executed, or marked
in the markdown as not runnable offline with a reason (and reported as a skipped test).

How a page is run, like a user following it top to bottom:

* The page gets its own temporary working directory and no ``TRODO_STORE``, so the default store
  ``./.trodo/trodo.db`` lands there and nothing is written into the repository.
* ``python`` blocks run in order in one namespace (a module registered in ``sys.modules``, so
  pickling and ``inspect`` work as in a script). Spans are flushed before each shell block, as a
  script's exit would.
* ``console`` blocks run each ``$ command`` line (the lines under it are sample output, not compared);
  ``bash`` blocks run each line. Commands run with this virtualenv's ``bin`` first on ``PATH``, so
  ``python`` and ``trodo-trace`` are the project's. Every command must exit 0.
* ``text`` blocks are sample output, not code; any other language fails the inventory test.

Markers, an HTML comment on the line before the fence (invisible in the rendered page):

* ``<!-- docs-test: skip REASON -->`` the block cannot run offline; REASON is required.
* ``<!-- docs-test: file NAME -->`` the block is a file the reader saves as NAME (written into the
  page's directory, not executed by itself; a later block runs it).
* ``<!-- docs-test: receiver -->`` the block talks to an OTLP collector: the test starts a loopback
  receiver and points the block's ``127.0.0.1:4318`` (HTTP) / ``127.0.0.1:4317`` (gRPC) at it.
* ``<!-- docs-test: exit N -->`` the block's commands are expected to exit with status N.
* ``<!-- docs-test: last-run -->`` the sample run id after ``show`` (ids differ on every run) is
  replaced by the id of this page's most recent run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*([\w-]+)\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,})([\w+-]*)")
RUN_LANGUAGES = {"python", "console", "bash"}
OUTPUT_LANGUAGES = {"text"}
COMMAND_TIMEOUT_S = 120


@dataclass
class Block:
    """One fenced block of a page."""

    page: Path
    line: int
    language: str
    code: str
    marker: str = ""
    argument: str = ""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.language in RUN_LANGUAGES and self.marker not in ("skip", "file")


def parse(page: Path) -> list[Block]:
    """The fenced blocks of a page, with the marker on the line before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        indent, fence, language = match.group(1), match.group(2), match.group(3)
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else lines[index])
            index += 1
        index += 1
        previous = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.match(previous)
        blocks.append(
            Block(
                page,
                start + 1,
                language,
                textwrap.dedent("\n".join(body)) + "\n",
                marker.group(1) if marker else "",
                marker.group(2) if marker else "",
            )
        )
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in parse(page)]


def commands(block: Block) -> list[str]:
    """The commands of a shell block: ``$ `` lines in a console block, every line in a bash block."""
    lines = block.code.splitlines()
    if block.language == "console":
        return [line[2:] for line in lines if line.startswith("$ ")]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


class PageRunner:
    """Runs one page's blocks in order in one namespace and one working directory."""

    def __init__(self, page: Path, workdir: Path):
        self.page = page
        self.workdir = workdir
        name = "docs_page_" + re.sub(r"\W", "_", page.stem)
        self.module = types.ModuleType(name)
        self.module.__file__ = str(workdir / f"{page.stem}.py")
        sys.modules[name] = self.module
        self.receivers: dict[str, object] = {}

    def close(self) -> None:
        sys.modules.pop(self.module.__name__, None)
        for receiver in self.receivers.values():
            receiver.stop()  # type: ignore[attr-defined]

    def _point_at_receivers(self, code: str) -> str:
        from otlp_receiver import OtlpReceiver

        for default, protocol in (("127.0.0.1:4318", "http"), ("127.0.0.1:4317", "grpc")):
            if default in code:
                if protocol not in self.receivers:
                    self.receivers[protocol] = OtlpReceiver(protocol).start()
                port = self.receivers[protocol].port  # type: ignore[attr-defined]
                code = code.replace(default, f"127.0.0.1:{port}")
        return code

    def run(self, block: Block) -> None:
        code = self._point_at_receivers(block.code) if block.marker == "receiver" else block.code
        if block.marker == "file":
            (self.workdir / block.argument).write_text(code, encoding="utf-8")
        elif block.language == "python":
            exec(compile(code, block.where, "exec"), self.module.__dict__)
        else:
            self._shell(block, code)

    def _shell(self, block: Block, code: str) -> None:
        import trodo_trace as trodo

        trodo.flush(10)  # what a script's exit would do before the next command runs
        expected = int(block.argument) if block.marker == "exit" else 0
        if block.marker == "last-run":
            run = trodo.last_run()
            assert run is not None, f"{block.where}: no run to show"
            code = re.sub(r"\b(show\s+)[0-9a-f]{6,32}\b", lambda m: m.group(1) + run.run_id[:12], code)
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        for command in commands(Block(block.page, block.line, block.language, code)):
            result = subprocess.run(
                command,
                shell=True,
                executable="/bin/bash",
                cwd=self.workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
            )
            assert result.returncode == expected, (
                f"{block.where}: `{command}` exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )


def undo_process_wide_instrumentation() -> None:
    """Take back what examples switch on for the whole process (framework handlers, HTTP client
    patches), so later tests in this worker start clean; the runtime itself is reset by conftest."""
    langchain = sys.modules.get("trodo_trace.callbacks.langchain")
    if langchain is not None:
        langchain.uninstrument()
    llamaindex = sys.modules.get("trodo_trace.callbacks.llamaindex")
    if llamaindex is not None:
        llamaindex.instrument().detach()
    http = sys.modules.get("trodo_trace.integrations.http")
    if http is not None:
        http.uninstrument_httpx()
        http.uninstrument_requests()


RUN_PAGES = [page for page in PAGES if any(block.runs for block in parse(page))]


@pytest.mark.parametrize("page", RUN_PAGES, ids=[str(p.relative_to(ROOT)) for p in RUN_PAGES])
def test_page_runs(page, tmp_path, monkeypatch):
    """Every runnable block of the page runs, in order, sharing state like a reader following it."""
    monkeypatch.delenv("TRODO_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = PageRunner(page, tmp_path)
    try:
        for block in parse(page):
            if block.runs or block.marker == "file":
                runner.run(block)
    finally:
        runner.close()
        undo_process_wide_instrumentation()


MARKED = [block for block in ALL_BLOCKS if block.marker == "skip"]


@pytest.mark.parametrize("block", MARKED, ids=[block.where for block in MARKED])
def test_block_marked_not_runnable(block):
    """A block marked not runnable offline is reported as skipped, with the reason the page gives."""
    assert block.argument, f"{block.where}: a skip marker needs a reason"
    pytest.skip(f"{block.where} ({block.language}) not run: {block.argument}")


def test_every_block_is_run_marked_or_output():
    """Every block is python/console/bash (run), text (sample output), or carries a known marker."""
    problems = []
    for block in ALL_BLOCKS:
        if block.language not in RUN_LANGUAGES | OUTPUT_LANGUAGES and block.marker != "file":
            problems.append(f"{block.where}: language {block.language!r} is neither run nor output")
        if block.marker and block.marker not in ("skip", "file", "receiver", "exit", "last-run"):
            problems.append(f"{block.where}: unknown marker {block.marker!r}")
        if block.marker == "file" and not re.fullmatch(r"[\w.-]+", block.argument):
            problems.append(f"{block.where}: file marker needs a plain file name")
        if block.language in RUN_LANGUAGES and block.marker not in ("skip", "file"):
            if block.language != "python" and not commands(block):
                problems.append(f"{block.where}: a shell block with no command")
    assert not problems, "\n".join(problems)
    counts = {
        "run": sum(block.runs for block in ALL_BLOCKS),
        "file": sum(block.marker == "file" for block in ALL_BLOCKS),
        "skip": len(MARKED),
        "output": sum(block.language in OUTPUT_LANGUAGES for block in ALL_BLOCKS),
    }
    assert counts["run"] > counts["skip"], counts


def test_docs_pages_are_in_the_nav():
    """Every page under docs/ is reachable from mkdocs.yml's nav, and the nav names only real pages."""
    nav = re.findall(r":\s*([\w-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert sorted(nav) == pages


def test_shell_commands_are_split_like_a_shell():
    """The command splitter reads console prompts and bash lines the way a reader types them."""
    console = Block(ROOT, 1, "console", "$ trodo-trace runs\nRUN ID  NAME\n$ trodo-trace show abc --json\n")
    bash = Block(ROOT, 1, "bash", "# a comment\npython -c 'print(1)'   # trailing\n\n")
    assert commands(console) == ["trodo-trace runs", "trodo-trace show abc --json"]
    assert [shlex.split(c, comments=True) for c in commands(bash)] == [["python", "-c", "print(1)"]]
