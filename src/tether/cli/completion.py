"""Shell completion: `tether completion bash|zsh|fish|nu` prints the script; the script asks
tether itself what completes the word under the cursor.

The protocol (one for every shell, on top of click's `_TETHER_COMPLETE` variable): the script
runs `tether` with `_TETHER_COMPLETE=<shell>_complete` and the command line up to the cursor
in `_TETHER_COMP_LINE` (nu: its words, as JSON, in `_TETHER_COMP_WORDS`; bash: also its
COMP_WORDBREAKS, since readline completes only what follows the last `=` or `:`); tether answers
in the shell's own format. Scripts printed by older versions (click's, with COMP_WORDS and
COMP_CWORD) still work: without the variables above, click's protocol answers.

What tether adds to click's commands and options is here, in one table (`_special`): the
operations of the project file and their flags for `tether run`, field names for `--where`,
`--sort` and `--columns`, and run names listed once (`complete_runs`). Completion never loads
more than the project file and the index: no heavy library, no command's implementation.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import click
from click.shell_completion import (
    BashComplete,
    CompletionItem,
    FishComplete,
    ShellComplete,
    ZshComplete,
    add_completion_class,
    split_arg_string,
)

SHELLS = ("bash", "zsh", "fish", "nu")
LINE_VAR = "_TETHER_COMP_LINE"
WORDS_VAR = "_TETHER_COMP_WORDS"
BREAKS_VAR = "_TETHER_COMP_BREAKS"


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    bash:  eval "$(tether completion bash)"   (in ~/.bashrc)
    zsh:   eval "$(tether completion zsh)"    (in ~/.zshrc, after compinit)
    fish:  tether completion fish > ~/.config/fish/completions/tether.fish
    nu:    tether completion nu | save -f ~/.config/nushell/tether.nu
           then `source ~/.config/nushell/tether.nu` in config.nu
    """
    root = click.get_current_context().find_root().command  # the `tether` group
    click.echo(_CLASSES[shell](root, {}, "tether", "_TETHER_COMPLETE").source(), nl=False)


def register() -> None:
    """Put tether's shells in click's table, so `_TETHER_COMPLETE=<shell>_...` finds them."""
    for name, cls in _CLASSES.items():
        add_completion_class(cls, name)


# -- what completes what -----------------------------------------------------------------------


def complete_runs(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Run names (each once, newest first), then unique id prefixes, from the index."""
    try:
        from ..ids import short_ids
        from ..store import open_store

        store = open_store(ctx.find_root().params.get("runs_dir"))
        rows = store.list(limit=500)
    except Exception:
        return []
    shorts = short_ids([row.id for row in rows], minimum=13)  # 13: as commands print ids
    names: dict[str, list[Any]] = {}
    for row in rows:
        names.setdefault(row.name, []).append(row)
    out = []
    for name, runs in names.items():
        if name.startswith(incomplete):
            newest = runs[0]
            what = f"{len(runs)} runs, newest " if len(runs) > 1 else ""
            out.append(CompletionItem(name, help=f"{what}{shorts[newest.id]} {newest.status}"))
    for row in rows:
        if row.id.startswith(incomplete):
            out.append(CompletionItem(shorts[row.id], help=f"{row.name} {row.status}"))
    return out


def _project() -> Any:
    from ..project.parse import load_project

    return load_project()


def _ops(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    project = _project()
    return [
        CompletionItem(name, help=op.description or "")
        for name, op in sorted(project.ops.items())
        if name.startswith(incomplete)
    ]


def _word(value: Any) -> str:
    """A value as `tether run` reads it back (YAML-like), without spaces."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def _op_flags(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    """`lr=` for each flag not given yet; after `name=`, its choices (or true/false, or its
    default, to edit)."""
    opdef = _project().ops.get(ctx.params.get("op") or "")
    if opdef is None:
        return []
    name, eq, typed = incomplete.partition("=")
    if not eq:
        given = {word.partition("=")[0] for word in ctx.params.get("flags") or ()}
        return [
            CompletionItem(
                f"{flag.name}=",
                type="nospace",
                help=flag.description or f"default {_word(flag.default)}",
            )
            for flag in opdef.flags.values()
            if flag.name.startswith(name) and flag.name not in given
        ]
    flag = opdef.flags.get(name)
    if flag is None:
        return []
    if flag.choices:
        values, note = list(flag.choices), "a choice"
    elif isinstance(flag.default, bool):
        values, note = [True, False], "a boolean"
    else:
        values, note = [flag.default], "the default"
    words = [_word(v) for v in values]
    return [
        CompletionItem(f"{name}={w}", help=note + (" (default)" if v == flag.default else ""))
        for v, w in zip(values, words, strict=True)
        if w.startswith(typed)
    ]


# The characters that end a field name in an expression (fields.STOP, and spaces).
_FIELD_TAIL = re.compile(r"[^\s()=!<>~,\"']*\Z")
_FIELD_BEFORE = re.compile(r"(?:^|[\s(]|\band|\bor|\bnot)\s*\Z", re.IGNORECASE)


def _field_names(ctx: click.Context, typed: str) -> list[str]:
    """The fields the language has and the keys the index knows (`metrics.eval/acc`,
    `config.lr`); the `.min`/`.max`/... of a metric once its name and a dot are typed."""
    from ..store.fields import FIELDS, STATS

    names = [f for f in FIELDS if "<" not in f]
    try:
        from ..store import open_store
        from ..store.select import known_keys

        store = open_store(ctx.find_root().params.get("runs_dir"))
        keys = known_keys(store.index) if store.root.is_dir() else []
    except Exception:
        keys = []
    for key in keys:
        stem, _, stat = key.rpartition(".")
        if key.startswith("metrics.") and stat in STATS:
            names.append(stem)
            if typed.startswith(f"{stem}."):
                names.append(key)
        else:
            names.append(key)
    return [n for n in dict.fromkeys(names) if n.startswith(typed)]


def _where(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    """The field name at the end of a --where expression (at its start, after `(`, `and`,
    `or`, `not`); the text before it is kept."""
    tail = _FIELD_TAIL.search(incomplete)
    assert tail is not None  # the pattern matches the empty string at the end
    head = incomplete[: tail.start()]
    if not _FIELD_BEFORE.search(head):
        return []
    return [CompletionItem(head + n) for n in _field_names(ctx, tail.group())]


def _field_list(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    """The last name of a comma-separated list (--columns, --sort; `-` first sorts down)."""
    head, _, last = incomplete.rpartition(",")
    head = f"{head}," if head or incomplete.startswith(",") else ""
    sign = "-" if last.startswith("-") else ""
    return [CompletionItem(head + sign + n) for n in _field_names(ctx, last.removeprefix(sign))]


def _special(
    ctx: click.Context, obj: click.Command | click.Parameter
) -> Callable[[click.Context, str], list[CompletionItem]] | None:
    """tether's own completion for `obj` (a parameter of ctx's command), or None: click's."""
    if not isinstance(obj, click.Parameter):
        return None
    command = ctx.command.name
    if command == "run" and obj.name == "op":
        return _ops
    if command == "run" and obj.name == "flags":
        return _op_flags
    if command == "run" and obj.name == "restart":
        return lambda c, inc: complete_runs(c, obj, inc)
    if isinstance(obj, click.Option) and obj.name == "where":
        return _where
    listing = command in ("runs", "list")  # `tether runs` and `tether runs list`
    if isinstance(obj, click.Option) and obj.name in ("sort", "columns") and listing:
        return _field_list
    return None


def _option_named(ctx: click.Context, word: str) -> click.Option | None:
    """The option of ctx's command that `word` names, if it takes a value."""
    for param in ctx.command.get_params(ctx):
        if isinstance(param, click.Option) and word in param.opts and not param.is_flag:
            return param
    return None


# -- the shells --------------------------------------------------------------------------------


class _Tether(ShellComplete):
    """tether's protocol: the line up to the cursor in, the shell's own format out."""

    def get_completion_args(self) -> tuple[list[str], str]:
        if WORDS_VAR in os.environ:
            words = [str(w) for w in json.loads(os.environ[WORDS_VAR])]
            return words[1:-1], (words[-1] if len(words) > 1 else "")
        line = os.environ.get(LINE_VAR)
        if line is None:
            return super().get_completion_args()  # click's own protocol: an older script
        words = split_arg_string(line)
        ended = bool(line) and line[-1].isspace() and not (words and words[-1][-1:].isspace())
        incomplete = "" if ended or not words else words.pop()
        return words[1:], incomplete

    def get_completions(self, args: list[str], incomplete: str) -> list[CompletionItem]:
        self.incomplete = incomplete
        try:
            from click.shell_completion import (  # click's own steps, private but stable
                _resolve_context,
                _resolve_incomplete,
            )

            ctx = _resolve_context(self.cli, self.ctx_args, self.prog_name, args)
            obj, incomplete = _resolve_incomplete(ctx, args, incomplete)
            if isinstance(obj, click.Command) and args:
                # `--sort -metrics.acc`: a value that starts with `-` is still the value
                option = _option_named(ctx, args[-1])
                if option is not None:
                    obj = option
            special = _special(ctx, obj)
            if special is not None:
                return special(ctx, incomplete)
            return list(obj.shell_complete(ctx, incomplete))
        except Exception:
            from ..debug import debug_enabled

            if debug_enabled():
                raise
            return []  # a completion that fails offers nothing; the shell goes on

    @property
    def ours(self) -> bool:
        return LINE_VAR in os.environ or WORDS_VAR in os.environ

    def source(self) -> str:
        return self.source_template % {"prog": self.prog_name, "var": self.complete_var}


_BASH = r"""# tether completion for bash: eval "$(tether completion bash)" in ~/.bashrc
_tether_completion() {
    local IFS=$'\n' line response nospace=
    COMPREPLY=()
    response=$(%(var)s=bash_complete _TETHER_COMP_LINE="${COMP_LINE:0:COMP_POINT}" \
_TETHER_COMP_BREAKS="$COMP_WORDBREAKS" "$1" 2>/dev/null) || return 0
    for line in $response; do
        case ${line%%%%$'\t'*} in
            file) COMPREPLY=(); compopt -o default; return 0 ;;
            dir) COMPREPLY=(); compopt -o dirnames; return 0 ;;
            nospace) nospace=1; COMPREPLY+=("${line#*$'\t'}") ;;
            *) COMPREPLY+=("${line#*$'\t'}") ;;
        esac
    done
    [[ -n $nospace ]] && compopt -o nospace
    return 0
}
complete -o nosort -F _tether_completion %(prog)s
"""

_ZSH = r"""#compdef %(prog)s
# tether completion for zsh: eval "$(tether completion zsh)" in ~/.zshrc, after compinit
_tether_completion() {
    local -a response parts plain plain_shown nospace nospace_shown
    local line shown
    (( $+commands[%(prog)s] )) || return 1
    response=("${(@f)$(%(var)s=zsh_complete \
_TETHER_COMP_LINE="${(j: :)${(@)words[1,CURRENT-1]}} ${compstate[quote]}${PREFIX}" \
%(prog)s 2>/dev/null)}")
    for line in $response; do
        parts=("${(@ps:\t:)line}")
        shown=$parts[2]
        [[ -n $parts[3] ]] && shown="$parts[2]  -- $parts[3]"
        case $parts[1] in
            file) _files; return ;;
            dir) _path_files -/; return ;;
            nospace) nospace+=("$parts[2]"); nospace_shown+=("$shown") ;;
            plain) plain+=("$parts[2]"); plain_shown+=("$shown") ;;
        esac
    done
    (( $#plain )) && compadd -V tether -l -d plain_shown -a plain
    (( $#nospace )) && compadd -V tether-nospace -S '' -l -d nospace_shown -a nospace
    return 0
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _tether_completion "$@"
else
    compdef _tether_completion %(prog)s
fi
"""

_FISH = r"""# tether completion for fish:
#   tether completion fish > ~/.config/fish/completions/tether.fish
function __tether_complete
    set -l response (env %(var)s=fish_complete _TETHER_COMP_LINE=(commandline -cp) \
%(prog)s 2>/dev/null)
    switch "$response[1]"
        case __tether_file__
            __fish_complete_path (commandline -ct)
        case __tether_dir__
            __fish_complete_directories (commandline -ct)
        case '*'
            string join \n -- $response
    end
end
complete --command %(prog)s --no-files --arguments '(__tether_complete)'
"""

_NU = r"""# tether completion for nushell (click has none; tether writes it):
#   tether completion nu | save -f ~/.config/nushell/tether.nu
# then add `source ~/.config/nushell/tether.nu` to config.nu. Other commands keep the external
# completer they had.
def _tether_complete [spans: list] {
    with-env {%(var)s: "nu_complete", _TETHER_COMP_WORDS: ($spans | to json --raw)} {
        ^%(prog)s | complete | get stdout | from json
    }
}
let _tether_previous = ($env.config.completions.external.completer? | default null)
$env.config.completions.external.enable = true
$env.config.completions.external.completer = {|spans|
    if ($spans | first) == "%(prog)s" {
        _tether_complete $spans
    } else if $_tether_previous != null {
        do $_tether_previous $spans
    } else {
        null
    }
}
"""


def _readline_word(line: str, breaks: str | None) -> str:
    """The text readline completes at the end of `line`: after the last of `breaks`
    (COMP_WORDBREAKS) outside quotes, or after the opening quote of an unclosed one."""
    breaks = " \t\n\"'><=;|&(:" if breaks is None else breaks
    start, quote, i = 0, "", 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"':
                i += 1
        elif c == "\\":
            i += 1
        elif c in "'\"":
            quote, start = c, i + 1
        elif c in breaks or c.isspace():
            start = i + 1
        i += 1
    return line[start:]


def _strip(item: CompletionItem, drop: int) -> str:
    value = str(item.value)
    return value[drop:] if drop > 0 else value


class TetherBash(_Tether, BashComplete):
    source_template = _BASH

    def complete(self) -> str:
        if not self.ours:
            return BashComplete.complete(self)
        args, incomplete = self.get_completion_args()
        items = self.get_completions(args, incomplete)
        # bash (readline) replaces only the text after the last word-break character (`=`,
        # `:` ...) outside quotes: `optim=ad` completes as `adam`, `optim=` as `adam`.
        word = _readline_word(os.environ.get(LINE_VAR, ""), os.environ.get(BREAKS_VAR))
        drop = len(self.incomplete) - len(word) if self.incomplete.endswith(word) else 0
        return "\n".join(f"{item.type}\t{_strip(item, drop)}" for item in items)


class TetherZsh(_Tether, ZshComplete):
    source_template = _ZSH

    def format_completion(self, item: CompletionItem) -> str:
        if not self.ours:
            return ZshComplete.format_completion(self, item)
        help_ = " ".join(str(item.help or "").split())
        return f"{item.type}\t{item.value}\t{help_}"


class TetherFish(_Tether, FishComplete):
    source_template = _FISH

    def format_completion(self, item: CompletionItem) -> str:
        if not self.ours:
            return FishComplete.format_completion(self, item)
        if item.type in ("file", "dir"):
            return f"__tether_{item.type}__"
        help_ = " ".join(str(item.help or "").split())
        return f"{item.value}\t{help_}" if help_ else str(item.value)


class TetherNu(_Tether):
    name = "nu"
    source_template = _NU

    def complete(self) -> str:
        args, incomplete = self.get_completion_args()
        items = self.get_completions(args, incomplete)
        if any(item.type in ("file", "dir") for item in items):
            return "null"  # nu completes paths itself when the completer gives nothing
        return json.dumps(
            [{"value": str(i.value), "description": str(i.help or "")} for i in items]
        )


_CLASSES: dict[str, type[ShellComplete]] = {
    "bash": TetherBash,
    "zsh": TetherZsh,
    "fish": TetherFish,
    "nu": TetherNu,
}
