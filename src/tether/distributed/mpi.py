"""MPI flavours: which `mpiexec` this is (from `mpiexec --version`) and how it is spelled.

Each flavour is one small class: the pattern its `--version` output matches, the argv it takes
for a resolved `LaunchSpec`, and how its rank labels look (to print `[rank] line` uniformly
with --rank-prefix). Detection tries the classes in `FLAVOURS` order and takes the first whose
pattern matches; nothing about the machine is assumed.

- openmpi: `-np N --map-by ppr:P:node`, `--hostfile F` or `--host a:P,b:P`, `-x VAR` for each
  forwarded variable, rank labels from `--tag-output`;
- mpich (Hydra): `-n N -ppn P`, `--hostfile F` or `--hosts a,b`, `--envall`, `--prepend-rank`;
- pals (HPE Cray PALS): `-n N --ppn P`, `--hostfile F` or `--hosts a,b`, `--cpu-bind KIND`,
  `--envall`, `--label`;
- intel: `-n N -ppn P`, `-hostfile F` or `-hosts a,b`, `-genvall`, `-l`.

A hostfile is handed over in the flavour's own syntax (`host slots=N` for Open MPI, `host:N` for
Hydra, one host per line for PALS): a file in another spelling is rewritten into a copy
(tether.distributed.hostfile.hostfile_for), so an MPICH-style `node:4` works under Open MPI.

Open MPI refuses to run as root without `--allow-run-as-root` and refuses more ranks than cores
without `--oversubscribe`; both are added when they apply.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from ..patterns import LazyPattern
from . import hostfile as hostfiles
from .spec import LaunchSpec


class LineLabeller:
    """Turns the launcher's labelled output into `[rank] line`, one whole line at a time.
    `feed` returns what is ready to print; `flush` the rest at the end."""

    def __init__(self, relabel: Callable[[str], str | None]) -> None:
        self.relabel = relabel
        self.pending = ""

    def _one(self, line: str) -> str:
        try:
            labelled = self.relabel(line)
        except Exception:
            labelled = None
        return line if labelled is None else labelled

    def feed(self, text: str) -> str:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        return "".join(self._one(line) + "\n" for line in lines)

    def flush(self) -> str:
        rest, self.pending = self.pending, ""
        return self._one(rest) + "\n" if rest else ""


class TagStream:
    """Open MPI's `--tag-output` stream, put back together per rank.

    Open MPI forwards each write of each rank as its own chunk, tagged `[job,rank]<stdout>:`
    (and tags again after every newline inside a chunk). A rank that writes a line in two
    pieces (Python unbuffered: the text, then the newline) can have another rank's chunk land
    in between, so lines are rebuilt in one buffer per rank before they are printed. Text after
    a newline without a tag is mpiexec's own (its error reports) and stays unlabelled."""

    TAG = LazyPattern(r"\[\d+,(\d+)\]<std(?:out|err|diag)>:")
    PARTIAL = LazyPattern(r"\[\d*(?:,\d*(?:\](?:<[a-z]*(?:>:?)?)?)?)?")

    def __init__(self) -> None:
        self.held = ""  # the start of a tag cut off at the end of a chunk
        self.rank: str | None = None
        self.lines: dict[str | None, str] = {}

    def feed(self, text: str) -> str:
        data, self.held = self.held + text, ""
        cut = data.rfind("[")
        if cut >= 0 and self.PARTIAL.fullmatch(data[cut:]) and not self.TAG.match(data, cut):
            data, self.held = data[:cut], data[cut:]
        out: list[str] = []
        pos = 0
        for m in self.TAG.finditer(data):
            self._add(data[pos : m.start()], out)
            self.rank, pos = m.group(1), m.end()
        self._add(data[pos:], out)
        return "".join(out)

    def _add(self, text: str, out: list[str]) -> None:
        while text:
            line, newline, text = text.partition("\n")
            buffered = self.lines.pop(self.rank, "") + line
            if not newline:
                self.lines[self.rank] = buffered
                return
            out.append(f"[{self.rank}] {buffered}\n" if self.rank is not None else buffered + "\n")
            self.rank = None  # after a newline, only a new tag names a rank

    def flush(self) -> str:
        out = []
        if self.held:
            self.lines[self.rank] = self.lines.get(self.rank, "") + self.held
            self.held = ""
        for rank, text in self.lines.items():
            if text:
                out.append(f"[{rank}] {text}\n" if rank is not None else text + "\n")
        self.lines.clear()
        return "".join(out)


Labeller = LineLabeller | TagStream


class MPIFlavour:
    """How one MPI implementation's `mpiexec` is recognised and spelled."""

    name: ClassVar[str]
    title: ClassVar[str]
    version_pattern: ClassVar[LazyPattern]
    label_pattern: ClassVar[LazyPattern]  # group 1: the rank
    label_args: ClassVar[tuple[str, ...]]
    program: ClassVar[str] = "mpiexec"
    hostfile_syntax: ClassVar[str] = hostfiles.PLAIN  # how its --hostfile spells a host line

    @classmethod
    def matches(cls, version_text: str) -> bool:
        return bool(cls.version_pattern.search(version_text))

    def argv(self, spec: LaunchSpec) -> list[str]:
        raise NotImplementedError

    def hostfile_path(self, spec: LaunchSpec) -> str:
        """The hostfile to pass: spec.hostfile_arg, in this flavour's syntax."""
        return hostfiles.hostfile_for(spec.hostfile_arg or "", self.hostfile_syntax)

    def labeller(self) -> Labeller:
        return LineLabeller(self.relabel)

    def relabel(self, line: str) -> str | None:
        """`[rank] text` for a line the launcher labelled; None when it carries no label."""
        m = self.label_pattern.match(line)
        if m is None:
            return None
        return f"[{m.group(1)}] {line[m.end() :]}"


class OpenMPI(MPIFlavour):
    name = "openmpi"
    title = "Open MPI"
    version_pattern = LazyPattern(r"Open MPI|OpenRTE|Open RTE|open-mpi\.org")
    label_pattern = LazyPattern(r"\[\d+,(\d+)\]<std(?:out|err|diag)>:")
    label_args = ("--tag-output",)
    hostfile_syntax = hostfiles.OPENMPI
    _any_tag = LazyPattern(r"\[\d+,\d+\]<std(?:out|err|diag)>:")

    def argv(self, spec: LaunchSpec) -> list[str]:
        argv = [self.program, "-np", str(spec.nprocs)]
        if spec.name_hosts:
            argv += ["--host", ",".join(f"{h}:{spec.ppn}" for h in spec.hosts)]
        elif spec.hostfile_arg:
            argv += ["--hostfile", self.hostfile_path(spec)]
        argv += ["--map-by", f"ppr:{spec.ppn}:node"]
        if spec.cpu_bind:
            argv += ["--bind-to", spec.cpu_bind]
        for name in spec.forwarded:
            argv += ["-x", name]
        if spec.as_root and "--allow-run-as-root" not in spec.extra_args:
            argv.append("--allow-run-as-root")
        oversubscribed = spec.local and (spec.ppn or 1) > spec.cores
        if oversubscribed and "--oversubscribe" not in spec.extra_args:
            argv.append("--oversubscribe")
        if spec.rank_prefix:
            argv += self.label_args
        return [*argv, *spec.extra_args, *spec.command]

    def labeller(self) -> Labeller:
        return TagStream()

    def relabel(self, line: str) -> str | None:
        # Open MPI 4 repeats the tag wherever a write began mid-line: drop every copy.
        m = self.label_pattern.match(line)
        if m is None:
            return None
        return f"[{m.group(1)}] {self._any_tag.sub('', line[m.end() :])}"


class MPICH(MPIFlavour):
    """MPICH's Hydra (also MVAPICH and other Hydra builds)."""

    name = "mpich"
    title = "MPICH (Hydra)"
    version_pattern = LazyPattern(r"HYDRA|MPICH|MVAPICH", re.IGNORECASE)
    label_pattern = LazyPattern(r"\[(\d+)\] ?")
    label_args: ClassVar[tuple[str, ...]] = ("--prepend-rank",)
    hostfile_syntax: ClassVar[str] = hostfiles.HYDRA
    np_flag = "-n"
    ppn_flag = "-ppn"
    hostfile_flag = "--hostfile"
    hosts_flag = "--hosts"
    bind_flag = "--bind-to"
    envall_flag = "--envall"

    def argv(self, spec: LaunchSpec) -> list[str]:
        argv = [self.program, self.np_flag, str(spec.nprocs), self.ppn_flag, str(spec.ppn)]
        if spec.name_hosts:
            argv += [self.hosts_flag, ",".join(spec.hosts)]
        elif spec.hostfile_arg:
            argv += [self.hostfile_flag, self.hostfile_path(spec)]
        if spec.cpu_bind:
            argv += [self.bind_flag, spec.cpu_bind]
        argv.append(self.envall_flag)
        if spec.rank_prefix:
            argv += self.label_args
        return [*argv, *spec.extra_args, *spec.command]


class PALS(MPICH):
    """HPE Cray PALS (Aurora, Polaris): `mpiexec --version` says `mpiexec version X`."""

    name = "pals"
    title = "HPE PALS"
    version_pattern = LazyPattern(r"^\s*mpiexec version|\bPALS\b|cray-pals", re.MULTILINE)
    label_pattern = LazyPattern(r"\s*(\d+): ?")
    label_args = ("--label",)
    hostfile_syntax = hostfiles.PLAIN  # a node list; the ranks per node come from --ppn
    ppn_flag = "--ppn"
    bind_flag = "--cpu-bind"


class IntelMPI(MPICH):
    name = "intel"
    title = "Intel MPI"
    version_pattern = LazyPattern(r"Intel\(R\) MPI|Intel MPI")
    label_args = ("-l",)
    hostfile_flag = "-hostfile"
    hosts_flag = "-hosts"
    bind_flag = "-bind-to"
    envall_flag = "-genvall"


# Tried in this order: Intel's Hydra also prints HYDRA, and PALS's pattern is the loosest.
FLAVOURS: dict[str, type[MPIFlavour]] = {cls.name: cls for cls in (IntelMPI, OpenMPI, MPICH, PALS)}


@dataclass
class Detected:
    path: str | None  # the mpiexec found on PATH, if any
    flavour: str | None  # None: not found, failed, or not recognised
    version: str = ""  # first line of `mpiexec --version`
    error: str | None = None


def flavour_of(version_text: str) -> str | None:
    """The flavour whose pattern matches `mpiexec --version` output first."""
    return next((name for name, cls in FLAVOURS.items() if cls.matches(version_text)), None)


def detect(program: str = "mpiexec", env: Mapping[str, str] | None = None) -> Detected:
    """Run `<program> --version` from PATH (of `env`) and recognise the flavour."""
    path = shutil.which(program, path=None if env is None else env.get("PATH"))
    if path is None:
        return Detected(None, None, error=f"no {program} on PATH")
    try:
        proc = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=20,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return Detected(path, None, error=f"{path} --version failed: {exc}")
    text = (proc.stdout or "") + (proc.stderr or "")
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    flavour = flavour_of(text)
    if flavour is None:
        return Detected(path, None, first, error=f"{path} --version is not recognised: {first!r}")
    return Detected(path, flavour, first)


def flavour(name: str) -> MPIFlavour:
    return FLAVOURS[name]()
