"""Hostfiles: the hosts a job may use and how many ranks (slots) each takes.

One host per line, in any of the spellings the launchers and schedulers write:

    # a comment; blank lines are skipped
    node01                 # one slot, unless the host appears again
    node02 slots=4         # Open MPI
    node03:4               # MPICH / Hydra
    node04 max_slots=8     # Open MPI (max_slots alone is not a slot count)

A host listed on several lines gets one slot per line (a PBS nodefile lists a host once per
slot), and the lines add up: `a slots=2` then `a slots=2` is four slots on `a`. When no line
gives a count and no host repeats, the file says nothing about slots (`slots` is None): it is
a plain list of hosts, and the launcher decides how many ranks each takes.

Every launcher reads only its own spelling (Open MPI stops at `node03:4` with "illegal character
in node name"; Hydra does not know `slots=`), so the parsed file is one model (hosts in order,
slots per host) that `render_hostfile` writes back in a launcher's own syntax, and
`hostfile_for` hands the launcher the file as it is when it already reads every line, else
such a copy: written once per content and syntax in this node's tether cache
(`<cache>/launch/hostfile-<digest>.<syntax>`), never next to the user's file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TetherError
from ..fsio import atomic_write_text
from ..mounts import local_cache_dir
from ..patterns import LazyPattern

_SLOTS = LazyPattern(r"^slots=(\d+)$")
_IGNORED = LazyPattern(r"^(max_slots|max-slots|cpu|gpu)=\S*$")
_COLON = LazyPattern(r"^(?P<host>[^:\s]+):(?P<slots>\d+)$")

# The spellings of a host line: `host` (every launcher), `host slots=N` (Open MPI), `host:N`
# (Hydra: MPICH, Intel MPI, MVAPICH).
PLAIN = "plain"
OPENMPI = "openmpi"
HYDRA = "hydra"
SYNTAXES = (PLAIN, OPENMPI, HYDRA)


@dataclass
class Hostfile:
    """A parsed hostfile: hosts in first-seen order, with their slots when the file says."""

    hosts: list[str]
    slots: dict[str, int] | None = None
    path: str | None = None
    lines: int = 0  # host lines read (comments and blanks excluded)
    duplicates: list[str] = field(default_factory=list)  # hosts seen on more than one line
    syntaxes: set[str] = field(default_factory=set)  # the spellings its lines use (SYNTAXES)

    @property
    def total_slots(self) -> int | None:
        return sum(self.slots.values()) if self.slots is not None else None

    def slots_line(self, hosts: list[str] | None = None) -> str:
        """`a:4, b:4` for messages."""
        if self.slots is None:
            return ", ".join(hosts or self.hosts)
        return ", ".join(f"{h}:{self.slots[h]}" for h in (hosts or self.hosts))


def parse_hostfile(text: str, path: str | None = None) -> Hostfile:
    """Parse hostfile text; a malformed line raises TetherError naming the line."""
    order: list[str] = []
    counts: dict[str, int] = {}
    explicit = False
    seen_lines: dict[str, int] = {}
    syntaxes: set[str] = set()
    lines = 0
    where = path or "hostfile"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        host, slots, syntax = words[0], 1, PLAIN
        colon = _COLON.match(host)
        if colon:
            host, slots, explicit, syntax = colon["host"], int(colon["slots"]), True, HYDRA
        for word in words[1:]:
            m = _SLOTS.match(word)
            if m:
                slots, explicit, syntax = int(m[1]), True, OPENMPI
            elif _IGNORED.match(word):
                syntax = OPENMPI
            else:
                raise TetherError(
                    f"{where}:{number}: cannot read {raw.strip()!r}",
                    "write one host per line: `host`, `host slots=N` or `host:N`",
                )
        if slots < 1:
            raise TetherError(f"{where}:{number}: {host} has {slots} slots; give 1 or more")
        lines += 1
        syntaxes.add(syntax)
        if host not in counts:
            order.append(host)
            counts[host] = 0
        counts[host] += slots
        seen_lines[host] = seen_lines.get(host, 0) + 1
    duplicates = [h for h in order if seen_lines[h] > 1]
    known = explicit or bool(duplicates)
    return Hostfile(order, counts if known else None, path, lines, duplicates, syntaxes)


def read_hostfile(path: str | Path) -> Hostfile:
    """Read and parse a hostfile; a missing, unreadable or empty file raises TetherError."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise TetherError(f"hostfile {path} does not exist", "check the path given to --hostfile")
    except IsADirectoryError:
        raise TetherError(f"hostfile {path} is a folder, not a file")
    except OSError as exc:
        raise TetherError(f"hostfile {path} cannot be read: {exc.strerror}")
    parsed = parse_hostfile(text, str(path))
    if not parsed.hosts:
        raise TetherError(f"hostfile {path} lists no hosts", "write one host name per line")
    return parsed


def render_hostfile(parsed: Hostfile, syntax: str) -> str:
    """The hosts and slots of `parsed` in one launcher's syntax: `host slots=N` (openmpi),
    `host:N` (hydra), or one host per line (plain: the slots are left to the launcher's
    ranks-per-host flag). A file that gave no slots stays a list of hosts in every syntax."""
    if syntax not in SYNTAXES:
        raise TetherError(f"hostfile syntax {syntax!r} is not one of {', '.join(SYNTAXES)}")
    lines = []
    for host in parsed.hosts:
        slots = parsed.slots.get(host) if parsed.slots is not None else None
        if slots is None or syntax == PLAIN:
            lines.append(host)
        elif syntax == OPENMPI:
            lines.append(f"{host} slots={slots}")
        else:
            lines.append(f"{host}:{slots}")
    return "\n".join(lines) + "\n"


def hostfile_for(path: str, syntax: str) -> str:
    """The hostfile to give a launcher that reads `syntax`: `path` itself when every line is
    already spelled so (or plain), else a copy rewritten in that syntax (see the module doc).
    The copy's name is a digest of its content, so the argv is the same for the same file."""
    parsed = read_hostfile(path)
    if parsed.syntaxes <= {PLAIN, syntax}:
        return path
    import hashlib  # noqa: PLC0415 (10 ms on first import; only a file to rewrite needs it)

    text = render_hostfile(parsed, syntax)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    target = local_cache_dir() / "launch" / f"hostfile-{digest}.{syntax}"
    try:
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, text, durable=False)
    except OSError as exc:
        raise TetherError(
            f"cannot write {target} (hostfile {path} for the launcher): {exc.strerror}",
            f"write the hostfile in the launcher's own syntax ({syntax}) yourself",
        )
    return str(target)
