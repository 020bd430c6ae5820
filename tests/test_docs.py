"""The code blocks of README.md and docs/*.md run here, so the documentation cannot rot.

How a Markdown file is run
--------------------------
Each file is one *session*: its blocks run in order, top to bottom, in a fresh folder of its own
(under pytest's tmp_path, so the sessions are safe under `pytest -n auto`). The folder starts as
a small git repository holding a copy of `examples/` (so `python examples/digits/train.py` works
as it does in a checkout). Every command sees:

* `TETHER_RUNS` set to a runs root outside that folder (the `runs_root` fixture), `HOME` set to a
  folder of its own, so nothing touches ~/.tether or the checkout's runs;
* this environment's `bin/` first on `PATH`, so `python` and `tether` are the ones under test;
* `NO_COLOR=1`, `COLUMNS=120` and `PYTHONUNBUFFERED=1`, so output does not depend on the terminal.

What runs
---------
* ```` ```python ```` blocks are saved as `example.py` in the session folder and run with
  `python example.py`; they must exit 0.
* ```` ```console ```` blocks: each line starting with `$ ` is a command (a line ending in `\\`
  continues on the next one), run by `bash -o pipefail -c` in the session folder; `cd` and
  `export` do not carry over to the next command. It must exit 0 (a command killed by signal N
  counts as 128+N, as in a shell). The lines after a command, up to the next `$ `, are its
  expected output (stdout and stderr together): when there are any, they must match the real
  output line by line, where blank lines are ignored, runs of spaces count as one, `...` inside
  a line matches any text, and a line that is only `...` matches any number of lines.
* Blocks in other languages (yaml, toml, text, bash, ...) are shown, not run, unless they carry
  `file=`.

Markers
-------
An HTML comment on the line just before a block's opening fence (blank lines allowed between
them) changes what happens to it; several words may share one comment:

    <!-- doctest: skip -->          not run (`make demo`, `pip install`, an excerpt of a file)
    <!-- doctest: file=PATH -->     written to PATH in the session folder, not run; a later
                                    block can then use it (`$ python train.py lr=0.1`)
    <!-- doctest: exit=N -->        every command of the block must exit with N instead of 0
    <!-- doctest: no-output -->     run, but do not compare the output (it holds ids or times)

A marker that is not one of these, or that is not followed by a block, fails the suite.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TIMEOUT = 120

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
MARKER = re.compile(r"^\s*<!--\s*doctest:(?P<words>.*?)-->\s*$")
RUNNABLE = ("python", "console")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    skip: bool = False
    file: str | None = None
    exit: int = 0
    compare: bool = True

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return not self.skip and (self.file is not None or self.lang in RUNNABLE)


@dataclass
class Command:
    line: int
    command: str
    expected: list[str] = field(default_factory=list)


def _apply_marker(block: Block, words: str, where: str) -> None:
    for word in words.split():
        key, eq, value = word.partition("=")
        if word == "skip":
            block.skip = True
        elif word == "no-output":
            block.compare = False
        elif key == "file" and eq and value:
            block.file = value
        elif key == "exit" and eq and value.lstrip("-").isdigit():
            block.exit = int(value)
        else:
            raise ValueError(f"{where}: unknown doctest marker {word!r}")


def parse(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with their doctest markers applied."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: list[tuple[int, str]] = []  # markers waiting for their block
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = MARKER.match(line)
        if marker:
            pending.append((i + 1, marker.group("words")))
            i += 1
            continue
        opening = FENCE.match(line)
        if opening is None:
            if line.strip() and pending:
                first = pending[0][0]
                raise ValueError(
                    f"{path.relative_to(ROOT)}:{first}: doctest marker without a block"
                )
            i += 1
            continue
        indent, fence = len(opening.group("indent")), opening.group("fence")
        info = opening.group("info").strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = lines[j].strip()
            if closing.startswith(fence[0] * len(fence)) and closing.strip(fence[0]) == "":
                break
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        else:
            raise ValueError(f"{path.relative_to(ROOT)}:{i + 1}: code block is never closed")
        block = Block(path, i + 1, info.split()[0] if info else "", "\n".join(body) + "\n")
        for line_no, words in pending:
            _apply_marker(block, words, f"{path.relative_to(ROOT)}:{line_no}")
        pending = []
        blocks.append(block)
        i = j + 1
    if pending:
        raise ValueError(
            f"{path.relative_to(ROOT)}:{pending[0][0]}: doctest marker without a block"
        )
    return blocks


def commands(block: Block) -> list[Command]:
    """The `$ ` commands of a console block, each with the output lines shown after it."""
    out: list[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            start = block.line + 1 + i
            text = line[2:]
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1] + "\n" + lines[i]
            out.append(Command(start, text))
        elif out:
            out[-1].expected.append(line)
        elif line.strip():
            raise ValueError(f"{block.where}: console block text before the first `$ ` command")
        i += 1
    if not out:
        raise ValueError(f"{block.where}: console block without a `$ ` command")
    return out


# -- output matching ----------------------------------------------------------------------------
ANY_LINES = object()


def _norm(line: str) -> str:
    return " ".join(line.split())


def _pattern(line: str) -> object:
    text = _norm(line)
    if text == "...":
        return ANY_LINES
    return re.compile(".*".join(re.escape(part) for part in text.split("...")))


def output_matches(expected: list[str], actual: str) -> bool:
    """Doctest-style comparison: see the module docstring."""
    want = [_pattern(x) for x in expected if x.strip()]
    got = [_norm(x) for x in actual.splitlines() if x.strip()]
    memo: dict[tuple[int, int], bool] = {}

    def match(w: int, g: int) -> bool:
        key = (w, g)
        if key not in memo:
            if w == len(want):
                memo[key] = g == len(got)
            elif want[w] is ANY_LINES:
                memo[key] = match(w + 1, g) or (g < len(got) and match(w, g + 1))
            else:
                pattern = want[w]
                assert isinstance(pattern, re.Pattern)
                memo[key] = g < len(got) and bool(pattern.fullmatch(got[g])) and match(w + 1, g + 1)
        return memo[key]

    return match(0, 0)


def test_output_matching():
    assert output_matches(["a  b", "...", "c ... e"], "a b\nx\ny\n\nc d e\n")
    assert output_matches(["..."], "")
    assert not output_matches(["a"], "a\nb\n")
    assert not output_matches(["a ... c"], "a b d\n")


# -- sessions -----------------------------------------------------------------------------------
def _session(tmp_path: Path, runs_root: Path) -> tuple[Path, dict[str, str]]:
    if shutil.which("git") is None:
        pytest.skip("the documentation sessions need git")
    work = tmp_path / "work"
    shutil.copytree(
        ROOT / "examples",
        work / "examples",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".tether"),
    )
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ)
    env.pop("TETHER_DEBUG", None)
    env.update(
        TETHER_RUNS=str(runs_root),
        TETHER_CACHE_DIR=str(tmp_path / "cache"),
        HOME=str(home),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        NO_COLOR="1",
        COLUMNS="120",
        TERM="dumb",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Doc Tester",
        GIT_AUTHOR_EMAIL="docs@example.invalid",
        GIT_COMMITTER_NAME="Doc Tester",
        GIT_COMMITTER_EMAIL="docs@example.invalid",
    )
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "start"]):
        subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True)
    return work, env


def _run(command: str, work: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
    )


def _check(block: Block, line: int, command: str, proc: subprocess.CompletedProcess[str]) -> None:
    # bash hands a single command over with exec: a signal shows as -N here, as 128+N in a shell.
    code = 128 - proc.returncode if proc.returncode < 0 else proc.returncode
    if code != block.exit:
        pytest.fail(
            f"{block.path.relative_to(ROOT)}:{line}: `{command}` exited {code}, "
            f"the docs expect {block.exit}\n--- output ---\n{proc.stdout}",
            pytrace=False,
        )


def run_block(block: Block, work: Path, env: dict[str, str]) -> None:
    if block.file is not None:
        target = work / block.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text, encoding="utf-8")
        return
    if block.lang == "python":
        (work / "example.py").write_text(block.text, encoding="utf-8")
        _check(block, block.line, "python example.py", _run("python example.py", work, env))
        return
    for cmd in commands(block):
        proc = _run(cmd.command, work, env)
        _check(block, cmd.line, cmd.command, proc)
        if block.compare and cmd.expected and not output_matches(cmd.expected, proc.stdout):
            pytest.fail(
                f"{block.path.relative_to(ROOT)}:{cmd.line}: output of `{cmd.command}` differs "
                "from the docs\n--- docs ---\n"
                + "\n".join(cmd.expected)
                + f"\n--- real ---\n{proc.stdout}",
                pytrace=False,
            )


# Pages with nothing to run get no session (their structure is still checked below).
RUNNABLE_DOCS = [d for d in DOCS if any(b.runs for b in parse(d))]


@pytest.mark.parametrize(
    "doc", RUNNABLE_DOCS, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE_DOCS]
)
def test_doc_session(doc: Path, tmp_path: Path, runs_root: Path):
    blocks = [b for b in parse(doc) if b.runs]
    work, env = _session(tmp_path, runs_root)
    for block in blocks:
        run_block(block, work, env)


# -- structure ----------------------------------------------------------------------------------
def test_readme_and_docs_exist():
    assert (ROOT / "README.md").is_file()
    for name in ("index", "getting-started", "configuration", "runs", "store", "cli"):
        assert (ROOT / "docs" / f"{name}.md").is_file(), name


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_markers_and_blocks_are_well_formed(doc: Path):
    for block in parse(doc):
        if block.runs and block.lang == "console" and block.file is None:
            commands(block)


LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_relative_links_resolve(doc: Path):
    text = doc.read_text(encoding="utf-8")
    # Links inside code blocks are code, not links.
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    broken = []
    for m in LINK.finditer(text):
        target = m.group("target")
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: broken links {broken}"
