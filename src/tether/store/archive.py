"""Archives of runs: `tether archive export` and `tether archive import`.

An archive is a gzip'd tar holding `manifest.json` (format, version, the runs it carries), each
run's folder under `runs/<id>/` (an explicit save_dir is followed, so the archive holds the files,
not the link) and, optionally, `snapshots/<n>.bundle`: git bundles of the runs' snapshot refs.

Importing checks every member before anything is written (`archive_checks`): absolute paths,
`..`, links that leave their run folder, devices and FIFOs, names outside the layout above, and
archives larger than they say or than fits are refused in one line. Members are extracted into a
staging folder inside the runs root and each run is then moved into place with one rename, so a
failed import leaves nothing half-imported.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import git
from ..clock import now_iso
from ..errors import StoreError, TetherError
from ..fsio import follow_umask
from ..git import SNAPSHOT_REF
from ..ids import is_run_id
from .archive_checks import (
    FORMAT,
    MANIFEST,
    RUNS,
    SNAPSHOTS,
    UnsafeArchive,
    check_budget,
    check_links,
    check_member,
)
from .layout import LOCK
from .lifecycle import TRASH
from .records import RunRecord
from .store import Store

if TYPE_CHECKING:
    import subprocess

VERSION = 1

Progress = Callable[[int], None]  # called with the bytes just processed


@dataclass
class ExportResult:
    path: Path
    runs: list[str]
    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)  # what was left out, and why
    bundles: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    imported: list[RunRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "<id>: why"
    refs: list[str] = field(default_factory=list)  # snapshot refs fetched, "<repo>: <n> refs"
    notes: list[str] = field(default_factory=list)


# -- export --------------------------------------------------------------------------------------
@dataclass
class _Item:
    path: Path
    arcname: str
    st: os.stat_result
    linkname: str | None = None


def plan_export(records: Iterable[RunRecord]) -> tuple[list[_Item], list[str], int]:
    """The members an export will write: (items, skipped, total bytes of regular files)."""
    items: list[_Item] = []
    skipped: list[str] = []
    total = 0
    for record in records:
        base = Path(os.path.realpath(record.dir))
        top = f"{RUNS}/{record.id}"
        items.append(_Item(base, top, base.stat()))
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            here = Path(folder)
            for name in sorted(dirs) + sorted(files):
                path = here / name
                rel = path.relative_to(base).as_posix()
                arcname = f"{top}/{rel}"
                try:
                    st = path.lstat()
                except OSError as exc:
                    skipped.append(f"{arcname}: unreadable ({exc.strerror})")
                    continue
                if stat.S_ISLNK(st.st_mode):
                    if name in dirs:
                        dirs.remove(name)  # os.walk does not follow it anyway; be explicit
                    linkname = _inner_link(path, base)
                    if linkname is None:
                        skipped.append(
                            f"{arcname}: a link to {os.readlink(path)}, outside the run folder"
                        )
                        continue
                    items.append(_Item(path, arcname, st, linkname))
                elif stat.S_ISDIR(st.st_mode):
                    items.append(_Item(path, arcname, st))
                elif stat.S_ISREG(st.st_mode):
                    items.append(_Item(path, arcname, st))
                    total += st.st_size
                else:
                    skipped.append(f"{arcname}: not a regular file")
    return items, skipped, total


def _inner_link(link: Path, base: Path) -> str | None:
    """The link's target relative to the link, if it stays inside `base`; else None."""
    target = os.readlink(link)
    resolved = os.path.normpath(os.path.join(link.parent, target))
    if not _within(resolved, str(base)):
        return None
    return os.path.relpath(resolved, link.parent)


def _within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def export_runs(
    store: Store,
    records: list[RunRecord],
    out: Path,
    *,
    with_snapshots: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    plan: tuple[list[_Item], list[str], int] | None = None,
) -> ExportResult:
    """Write `records` into the archive `out` (a temp file renamed into place when complete)."""
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise TetherError(f"{out} already exists", "choose another name, or pass --force")
    if not out.parent.is_dir():
        raise TetherError(f"folder {out.parent} does not exist")
    items, skipped, _total = plan or plan_export(records)
    result = ExportResult(out, [r.id for r in records], skipped=list(skipped))
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created": now_iso(),
        # What the import will write: its size budget (see `check_budget`).
        "bytes": _total,
        "runs": [
            {
                "id": r.id,
                "name": r.name,
                "status": r.status,
                "created": r.lock.created,
                "dir": str(r.dir),
            }
            for r in records
        ],
        "snapshots": [],
    }
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    follow_umask(tmp)  # mkstemp makes it 0600: the archive gets the mode of any file made here
    with tempfile.TemporaryDirectory(prefix="tether-export-") as scratch:
        try:
            bundles: list[tuple[str, Path]] = []
            if with_snapshots:
                bundles = _bundles(records, Path(scratch), manifest, result)
            with tarfile.open(tmp, "w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
                data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
                _add_bytes(tar, MANIFEST, data)
                for item in items:
                    if item.path == tmp or item.path == out:
                        continue  # the archive being written inside a run being exported
                    _add_item(tar, item, progress)
                    if item.linkname is None and stat.S_ISREG(item.st.st_mode):
                        result.files += 1
                        result.bytes += item.st.st_size
                for arcname, path in bundles:
                    tar.add(path, arcname=arcname, recursive=False)
                    result.bundles.append(arcname)
            os.replace(tmp, out)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    return result


def _add_bytes(tar: tarfile.TarFile, arcname: str, data: bytes) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_item(tar: tarfile.TarFile, item: _Item, progress: Progress | None) -> None:
    # Built by hand, not with gettarinfo: no hard links between runs, no owner names, no
    # setuid bits; a file is always stored whole.
    info = tarfile.TarInfo(item.arcname)
    info.mtime = int(item.st.st_mtime)
    info.mode = stat.S_IMODE(item.st.st_mode) & 0o777
    if item.linkname is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = item.linkname
        info.mode = 0o777
        tar.addfile(info)
        return
    if stat.S_ISDIR(item.st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        return
    try:
        fh = open(item.path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise StoreError(f"cannot read {item.path} ({exc.strerror})")
    with fh:
        size = os.fstat(fh.fileno()).st_size
        info.size = size
        reader: Any = _Counting(fh, progress) if progress else fh
        tar.addfile(info, reader)


class _Counting:
    """A file wrapper that reports the bytes read (the progress of a large export)."""

    def __init__(self, fh: Any, progress: Progress) -> None:
        self._fh = fh
        self._progress = progress

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._fh.read(n)
        if data:
            self._progress(len(data))
        return data


def _bundles(
    records: list[RunRecord], scratch: Path, manifest: dict[str, Any], result: ExportResult
) -> list[tuple[str, Path]]:
    """One git bundle per repository holding snapshot refs of the exported runs."""
    by_repo: dict[str, tuple[str, list[str]]] = {}
    for record in records:
        for src in record.lock.sources:
            if src.commit and src.root:
                path, ids = by_repo.setdefault(src.root, (src.path, []))
                if record.id not in ids:
                    ids.append(record.id)
    out: list[tuple[str, Path]] = []
    for n, (root, (path, ids)) in enumerate(sorted(by_repo.items())):
        if not Path(root).is_dir():
            result.skipped.append(f"snapshots of {len(ids)} run(s): repository {root} not here")
            continue
        refs = []
        for run_id in ids:
            ref = SNAPSHOT_REF + run_id
            if _git(root, "show-ref", "--verify", "--quiet", ref).returncode == 0:
                refs.append(ref)
            else:
                result.skipped.append(f"snapshot of run {run_id[:13]}: no {ref} in {root}")
        if not refs:
            continue
        bundle = scratch / f"{n}.bundle"
        proc = _git(root, "bundle", "create", str(bundle), *refs)
        if proc.returncode != 0:
            raise TetherError(f"git bundle create in {root} failed: {proc.stderr.strip()}")
        arcname = f"{SNAPSHOTS}/{n}.bundle"
        manifest["snapshots"].append({"bundle": arcname, "path": path, "root": root, "refs": refs})
        out.append((arcname, bundle))
    return out


def _git(repo: str, *args: str) -> subprocess.CompletedProcess[str]:
    return git.run(repo, *args, check=False, hint="install git, or leave out --with-snapshots")


# -- import --------------------------------------------------------------------------------------
def read_manifest(tar: tarfile.TarFile, source: Path) -> dict[str, Any]:
    try:
        fh = tar.extractfile(MANIFEST)
    except KeyError:
        fh = None
    if fh is None:
        raise TetherError(f"{source} is not a tether archive (no {MANIFEST})")
    try:
        manifest = json.loads(fh.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise TetherError(f"{source}: {MANIFEST} is not valid JSON")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise TetherError(f"{source} is not a tether archive ({MANIFEST} has another format)")
    version = manifest.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise TetherError(
            f"{source}: {MANIFEST} has version {str(version)[:40]!r}, expected a whole number",
            "the archive is damaged or not made by `tether archive`",
        )
    if version > VERSION:
        raise TetherError(
            f"{source}: archive version {manifest.get('version')} is newer than this tether "
            f"reads ({VERSION})",
            "upgrade tether",
        )
    return manifest


def open_archive(path: Path) -> tarfile.TarFile:
    if not path.is_file():
        raise TetherError(f"{path}: no such file")
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError):
        raise TetherError(f"{path} is not a readable tar archive")


def archive_size(path: Path) -> int:
    """The bytes an import will extract (the sum of its regular files)."""
    with open_archive(path) as tar:
        return sum(m.size for m in tar.getmembers() if m.isfile())


def import_archive(
    store: Store,
    path: Path,
    *,
    snapshots_into: Path | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    path = Path(path)
    result = ImportResult()
    store.ensure_root()
    with open_archive(path) as tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise TetherError(f"{path} is damaged ({exc})")
        for member in members:
            check_member(member)
        check_links(members)
        manifest = read_manifest(tar, path)
        check_budget(members, manifest, path, store.root)
        listed = [r.get("id") for r in manifest.get("runs") or [] if isinstance(r, dict)]
        present = {m.name.split("/")[1] for m in members if m.name.startswith(f"{RUNS}/")}
        present.discard("")
        known = set(store.index.ids())
        trash = store.root / TRASH
        wanted: list[str] = []
        already: list[str] = []  # imported before: their snapshot refs may still be missing
        for run_id in listed:
            if not isinstance(run_id, str) or not is_run_id(run_id):
                raise TetherError(f"{path}: {MANIFEST} lists {run_id!r}, not a run id")
            if run_id not in present:
                result.skipped.append(f"{run_id}: listed in the manifest but not in the archive")
            elif os.path.lexists(store.root / run_id) or run_id in known:
                result.skipped.append(f"{run_id}: already in {store.root}")
                already.append(run_id)
            elif os.path.lexists(trash / run_id):
                result.skipped.append(f"{run_id}: in the trash (`tether restore {run_id[:13]}`)")
            else:
                wanted.append(run_id)
        for run_id in sorted(present - set(listed)):
            result.skipped.append(f"{run_id}: in the archive but not in its manifest")
        bundles = [
            s
            for s in manifest.get("snapshots") or []
            if isinstance(s, dict) and isinstance(s.get("bundle"), str)
        ]
        bundle_names = {s["bundle"] for s in bundles}
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=store.root))
        try:
            chosen = set(wanted)
            for member in members:
                parts = member.name.split("/")
                take = (parts[0] == RUNS and len(parts) > 1 and parts[1] in chosen) or (
                    member.name in bundle_names and (wanted or already)
                )
                if not take:
                    continue
                try:
                    _extract(tar, member, staging)
                except tarfile.TarError as exc:  # the data filter's second line (FilterError)
                    raise UnsafeArchive(
                        f"archive member {member.name!r} refused: {exc}", "nothing was imported"
                    )
                if progress and member.isfile():
                    progress(member.size)
            for run_id in wanted:
                folder = staging / RUNS / run_id
                if not (folder / LOCK).is_file():
                    result.skipped.append(f"{run_id}: no {LOCK} in the archive")
                    continue
                record = store.load_dir(folder)
                if record.id != run_id:
                    result.skipped.append(f"{run_id}: its {LOCK} says {record.id}")
                    continue
                with store.changing(record, "created"):
                    os.rename(folder, store.root / run_id)
                    record.dir = store.root / run_id
                record = store.load(run_id)
                result.imported.append(record)
            if bundles and (result.imported or already):
                _fetch_bundles(bundles, staging, result, snapshots_into, set(already))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return result


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    if member.isdir():
        # Made here with the usual mode: a read-only folder in the archive would stop its own
        # files from being extracted (extract() sets a folder's mode at once).
        (dest / member.name).mkdir(parents=True, exist_ok=True)
        return
    # The checks above already refused anything unsafe; the "data" filter (Python >= 3.11.4,
    # 3.10.12) is a second line that also strips setuid bits and odd modes.
    if hasattr(tarfile, "data_filter"):
        tar.extract(member, dest, set_attrs=True, filter="data")
    else:  # pragma: no cover - old Python patch releases
        tar.extract(member, dest, set_attrs=True)


def _fetch_bundles(
    bundles: list[dict[str, Any]],
    staging: Path,
    result: ImportResult,
    snapshots_into: Path | None,
    already: set[str],
) -> None:
    """Fetch the snapshot refs of the runs just imported, and those of runs imported before
    (`already`) that the repository still lacks: importing again, with --snapshots-into after a
    first import could not restore them, is how they are restored. Refs the repository has are
    left as they are."""
    imported = {r.id for r in result.imported}
    for entry in bundles:
        refs = [
            ref
            for ref in entry.get("refs") or []
            if isinstance(ref, str)
            and ref.startswith(SNAPSHOT_REF)
            and ref[len(SNAPSHOT_REF) :] in imported | already
        ]
        if not refs:
            continue
        bundle = staging / entry["bundle"]
        repo = snapshots_into or (Path(entry["root"]) if entry.get("root") else None)
        if repo is None or not _is_git(repo):
            result.notes.append(
                f"snapshot refs of {len(refs)} run(s) not restored: repository "
                f"{entry.get('root')} is not here; pass --snapshots-into REPO"
            )
            continue
        have = _snapshot_refs(repo)
        missing = [r for r in refs if r not in have]
        if not missing:
            continue
        proc = _git(
            str(repo), "fetch", "--no-tags", "--quiet", str(bundle), *[f"{r}:{r}" for r in missing]
        )
        if proc.returncode != 0:
            result.notes.append(f"snapshot refs not restored into {repo}: {proc.stderr.strip()}")
            continue
        earlier = sum(1 for r in missing if r[len(SNAPSHOT_REF) :] in already)
        result.refs.append(
            f"{repo}: {len(missing)} snapshot ref(s)"
            + (f", {earlier} of them for run(s) imported before" if earlier else "")
        )


def _snapshot_refs(repo: Path) -> set[str]:
    proc = _git(str(repo), "for-each-ref", "--format=%(refname)", SNAPSHOT_REF)
    return set(proc.stdout.split()) if proc.returncode == 0 else set()


def _is_git(path: Path) -> bool:
    if not path.is_dir():
        return False
    with contextlib.suppress(TetherError):
        return _git(str(path), "rev-parse", "--git-dir").returncode == 0
    return False
