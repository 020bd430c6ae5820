"""Remotes in tether.toml and the user config; credentials refused; the remote's entries."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import TetherError
from tether.sync import remotes
from tether.sync.entries import Entry, FileDigest, Snapshot, parse_entries
from tether.sync.merge import LockConflict, check_lock, merge_for_push, pull_files


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "proj").mkdir()
    toml = tmp_path / "proj" / "tether.toml"
    toml.write_text('# my project\nproject-id = "p"\n\n[ops.train]\nexec = "python t.py"\n')
    monkeypatch.chdir(tmp_path / "proj")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    return toml


@pytest.mark.parametrize(
    "url",
    [
        "sftp://me:secret@host/path",
        "https://user:pw@example.org/dav",
        "s3:bucket?key=AKIA123",
        "remote:path,access_key_id=AKIA123",
        ":s3,secret_access_key=x:bucket",
    ],
)
def test_a_url_with_a_credential_is_refused(project: Path, url: str) -> None:
    before = project.read_text()
    with pytest.raises(TetherError) as info:
        remotes.add_remote("r", url)
    assert "password or key" in info.value.message and "rclone" in str(info.value.hint)
    assert project.read_text() == before


def test_add_list_remove_keeps_the_rest_of_tether_toml(project: Path) -> None:
    before = project.read_text()
    remotes.add_remote("s3", "mys3:bucket/runs")
    remotes.add_remote("nas", "/mnt/nas/runs")
    text = project.read_text()
    assert text.startswith(before)
    assert '[remotes]\ns3 = "mys3:bucket/runs"\nnas = "/mnt/nas/runs"\n' in text
    found = {r.name: r for r in remotes.list_remotes()}
    assert not found["s3"].is_folder and found["nas"].is_folder
    assert found["nas"].folder() == Path("/mnt/nas/runs")
    with pytest.raises(TetherError, match="already exists"):
        remotes.add_remote("s3", "other:x")
    remotes.remove_remote("s3")
    remotes.remove_remote("nas")
    assert project.read_text() == before + "\n[remotes]\n"


def test_the_table_grows_where_it_is(project: Path) -> None:
    project.write_text('[remotes]\na = "/x"\n\n[ops.t]\nexec = "x"\n')
    remotes.add_remote("b", "./rel")
    assert project.read_text() == '[remotes]\na = "/x"\nb = "./rel"\n\n[ops.t]\nexec = "x"\n'
    assert remotes.get_remote("b").folder() == project.parent / "rel"


def test_user_remotes_outside_a_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    made = remotes.add_remote("home", "gdrive:runs")
    assert made.scope == "user" and made.source == tmp_path / "cfg" / "tether" / "remotes.toml"
    assert remotes.get_remote("home").url == "gdrive:runs"
    with pytest.raises(TetherError, match="no remote 'hom'") as info:
        remotes.get_remote("hom")
    assert "home" in str(info.value.hint)


def test_bad_names_are_refused(project: Path) -> None:
    for name in ("", "1x", "a b", "x" * 70):
        with pytest.raises(TetherError, match="remote name"):
            remotes.add_remote(name, "/x")


def _entry(run: str = "r1", updated: str = "2026-01-01T00:00:00Z", **files: str) -> Entry:
    return Entry(
        run=run,
        lock="l" * 64,
        lock_digest="d" * 64,
        files=[FileDigest(p, len(d), 1, d) for p, d in files.items()],
        state={"status": "completed", "updated": updated},
        snapshots=[Snapshot("c" * 40, "bundles/x.bundle")],
    )


def test_entries_round_trip_and_torn_lines_are_skipped() -> None:
    e = _entry(**{"run.lock": "aa", "attrs/1-me.json": "bb"})
    line = e.to_line()
    assert "\n" not in line[:-1]
    back = parse_entries([line, line[: len(line) // 2], "{}"])
    assert list(back) == ["r1"] and back["r1"].same_content(e)


def test_merge_rules() -> None:
    remote = _entry(**{"run.lock": "aa", "attrs/1-b.json": "bb"})
    local = _entry(**{"run.lock": "aa", "attrs/2-a.json": "cc"})
    merged, upload = merge_for_push(local, remote)
    assert upload == ["attrs/2-a.json"]
    assert sorted(f.path for f in merged.files) == ["attrs/1-b.json", "attrs/2-a.json", "run.lock"]
    take, replaced = pull_files(remote, local)
    assert take == ["attrs/1-b.json"] and replaced == []
    newer = _entry(updated="2026-02-01T00:00:00Z", **{"run.lock": "aa", "metrics.jsonl": "zz"})
    take, replaced = pull_files(newer, local)
    assert replaced == ["metrics.jsonl"]
    other = _entry(**{"run.lock": "aa"})
    other.lock, other.lock_digest = "e" * 64, "f" * 64
    with pytest.raises(LockConflict, match="run.lock differs") as info:
        check_lock("r1", local, other, here="here", there="there")
    assert "llllllll" in str(info.value) and "eeeeeeee" in str(info.value)
