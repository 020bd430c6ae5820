"""Completion through the real shells: bash, zsh, fish and nu run the script `tether completion
SHELL` prints, and it asks the real `tether` (issue 14, item 5).

Each shell is driven without a terminal: bash gets COMP_WORDS/COMP_LINE as readline would set
them and calls the function; zsh calls the function with `words`/`CURRENT`/`PREFIX` set and
`compadd` recording what it is given; fish answers `complete -C`; nu calls the external
completer closure the script installs. A shell that is not installed skips its tests, except
under CI (CI=true), where it fails: scripts/system-deps.sh installs them all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tether
from tests.conftest import BIN

PROJECT = """\
[ops.train]
description = "Train the model"
exec = "python -c pass"
config = { lr = 0.1, epochs = 3, optim = { default = "adam", choices = ["adam", "sgd"] } }

[ops.prepare]
exec = "python -c pass"
config = { n = 5 }
"""

FLAGS = ["lr=", "epochs=", "optim="]


def need(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{shell} is not installed (scripts/system-deps.sh installs it)")
        pytest.skip(f"{shell} is not installed here (apt-get install {shell}, or npm for nu)")
    return path


@pytest.fixture
def project(tmp_path: Path, runs_root: Path) -> Path:
    """A project with two ops; three `train` runs and one `prepare` run in the index."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "tether.toml").write_text(PROJECT)
    for name in ("train", "train", "prepare", "train"):
        with tether.start_run({"lr": 0.1}, name=name, snapshot=False, capture_output=False) as run:
            run.log_metrics({"eval/acc": 0.9, "loss": 0.2})
    return root


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def _shell(argv: list[str], cwd: Path, script: str = "", **extra: str) -> list[str]:
    proc = subprocess.run(
        argv,
        input=script or None,
        cwd=cwd,
        env={**_env(), **extra},
        capture_output=True,
        text=True,
        timeout=120,  # a hung shell fails the test instead of the suite
    )
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


# -- bash ---------------------------------------------------------------------------------------

BASH = r"""
# compopt works only inside readline's completion: this one records what it is asked (nospace)
compopt() { local IFS=' '; printf 'compopt %s\n' "$*"; }
eval "$(tether completion bash)"
mapfile -t COMP_WORDS <<< "$WORDS"
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE=$LINE
COMP_POINT=${#LINE}
_tether_completion tether "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


def bash(cwd: Path, line: str, words: list[str]) -> list[str]:
    """What bash's completion function puts in COMPREPLY for `line`; `words` is COMP_WORDS as
    readline splits the line (at spaces and at the COMP_WORDBREAKS characters, `=` among
    them), the last one the word under the cursor."""
    return _shell(
        [need("bash"), "--norc", "--noprofile", "-c", BASH],
        cwd,
        LINE=line,
        WORDS="\n".join(words),
    )


def test_bash(project: Path):
    assert bash(project, "tether run ", ["tether", "run", ""]) == ["prepare", "train"]
    assert bash(project, "tether run train ", ["tether", "run", "train", ""]) == [
        "compopt -o nospace",
        *FLAGS,
    ]
    # bash replaces only its last word: `optim=s` is `optim` `=` `s` there
    words = ["tether", "run", "train", "optim", "=", "s"]
    assert bash(project, "tether run train optim=s", words) == ["sgd"]
    words = ["tether", "run", "train", "optim", "="]
    assert bash(project, "tether run train optim=", words) == ["adam", "sgd"]
    words = ["tether", "runs", "--where", "'status = completed and conf"]
    line = " ".join(words)  # inside an open quote, `=` breaks no word: all of it is replaced
    assert bash(project, line, words) == [
        "status = completed and config.lr",
        "status = completed and config.save_dir",
    ]
    assert bash(project, "tether show tr", ["tether", "show", "tr"]) == ["train"]  # once


# -- zsh ----------------------------------------------------------------------------------------

ZSH = r"""
compdef() { : }
eval "$(tether completion zsh)"
compadd() {   # what the function hands zsh: each match, and whether it adds no space
  local mark="" i=${@[(I)-S]}
  (( i )) && [[ -z ${@[i+1]} ]] && mark=" (no space)"
  local array=${@[-1]}
  print -rl -- ${^${(P)array}}$mark
}
words=(${(z)LINE})
[[ $LINE == *' ' ]] && words+=("")
CURRENT=$#words
PREFIX=$words[CURRENT]
_tether_completion
"""


def zsh(cwd: Path, line: str) -> list[str]:
    return _shell([need("zsh"), "-f", "-c", ZSH], cwd, LINE=line)


def test_zsh(project: Path):
    assert zsh(project, "tether run ") == ["prepare", "train"]
    assert zsh(project, "tether run train ") == [f"{f} (no space)" for f in FLAGS]
    assert zsh(project, "tether run train lr=0.2 ") == [f"{f} (no space)" for f in FLAGS[1:]]
    assert zsh(project, "tether run train optim=") == ["optim=adam", "optim=sgd"]
    assert zsh(project, "tether show tr") == ["train"]
    assert zsh(project, "tether runs --where metrics.ev") == ["metrics.eval/acc"]


# -- fish ---------------------------------------------------------------------------------------


def fish(cwd: Path, line: str) -> list[str]:
    script = f"tether completion fish | source; complete -C {json.dumps(line)}"
    return _shell([need("fish"), "--no-config", "-c", script], cwd)


def test_fish(project: Path):
    """fish sorts what it is given."""
    assert fish(project, "tether run ") == ["prepare", "train\tTrain the model"]
    assert [x.split("\t")[0] for x in fish(project, "tether run train ")] == sorted(FLAGS)
    assert [x.split("\t")[0] for x in fish(project, "tether run train optim=")] == [
        "optim=adam",
        "optim=sgd",
    ]
    shown = fish(project, "tether show tr")
    assert len(shown) == 1 and shown[0].startswith("train\t3 runs, newest ")
    assert "config.lr" in [x.split("\t")[0] for x in fish(project, "tether runs --where ")]


# -- nu -----------------------------------------------------------------------------------------


def nu(cwd: Path, script: Path, *spans: str) -> list[str]:
    call = f"do $env.config.completions.external.completer {json.dumps(list(spans))}"
    code = f"source {json.dumps(str(script))}; print ({call} | to json --raw)"
    out = _shell([need("nu"), "--no-config-file", "-c", code], cwd)
    result = json.loads(out[-1])
    return [] if result is None else [item["value"] for item in result]


def test_nu(project: Path, tmp_path: Path):
    need("nu")
    script = tmp_path / "tether.nu"
    with script.open("w") as fh:
        subprocess.run([str(BIN / "tether"), "completion", "nu"], stdout=fh, check=True, env=_env())
    assert nu(project, script, "tether", "run", "") == ["prepare", "train"]
    assert nu(project, script, "tether", "run", "train", "") == FLAGS
    assert nu(project, script, "tether", "run", "train", "optim=") == ["optim=adam", "optim=sgd"]
    assert nu(project, script, "tether", "show", "tr") == ["train"]
    assert nu(project, script, "tether", "runs", "--sort", "-metrics.l") == ["-metrics.loss"]
    # another command keeps nu's own completion (the closure gives nothing: nu's file paths)
    assert nu(project, script, "ls", "") == []


# -- without a shell: the protocol and its cost -------------------------------------------------


def _complete(cwd: Path, line: str) -> list[str]:
    env = {**_env(), "_TETHER_COMPLETE": "zsh_complete", "_TETHER_COMP_LINE": line}
    proc = subprocess.run(
        [str(BIN / "tether")], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return [line.split("\t")[1] for line in proc.stdout.splitlines() if line]


def test_where_fields_come_from_the_index(project: Path):
    where = _complete(project, "tether runs --where ")
    assert {"status", "op", "config.lr", "metrics.eval/acc", "metrics.loss"} <= set(where)
    assert _complete(project, "tether runs --where metrics.eval/acc.m") == [
        "metrics.eval/acc.max",
        "metrics.eval/acc.min",
    ]
    assert _complete(project, "tether runs --where 'op = train and conf") == [
        "op = train and config.lr",
        "op = train and config.save_dir",
    ]
    assert _complete(project, "tether runs --where 'op = tr") == []  # a value, not a field
    assert _complete(project, "tether runs --columns name,sta") == ["name,status", "name,started"]


def test_ids_are_unique_prefixes_listed_once(project: Path):
    ids = [r["id"] for r in json.loads(_run_json(project))]
    shown = _complete(project, "tether show 0")
    assert len(shown) == len(set(shown)) == len(ids)
    assert all(any(i.startswith(s) for i in ids) for s in shown)


def _run_json(cwd: Path) -> str:
    return subprocess.run(
        [str(BIN / "tether"), "runs", "--json"],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_old_scripts_keep_working(project: Path):
    """A script saved from an older tether (click's COMP_WORDS protocol) still completes."""
    env = {
        **_env(),
        "_TETHER_COMPLETE": "bash_complete",
        "COMP_WORDS": "tether run tr",
        "COMP_CWORD": "2",
    }
    proc = subprocess.run(
        [str(BIN / "tether")], cwd=project, env=env, capture_output=True, text=True, check=True
    )
    assert proc.stdout.split() == ["plain,train"]


def test_completion_imports_nothing_heavy(project: Path):
    code = textwrap.dedent(
        """
        import os, sys
        os.environ.update(_TETHER_COMPLETE="zsh_complete", _TETHER_COMP_LINE="tether run train ")
        from tether.cli.main import main
        try:
            main([])
        except SystemExit:
            pass
        heavy = ("torch", "mlflow", "omegaconf", "rich", "numpy", "yaml", "blake3")
        print("HEAVY=" + ",".join(m for m in heavy if m in sys.modules))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True
    )
    assert "lr=" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY="
