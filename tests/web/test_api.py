"""The view's HTTP API through Starlette's TestClient, on runs made by a real decorated main."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="tether view needs starlette (pip install 'tether[view]')")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")

from starlette.testclient import TestClient

import tether
from tests.conftest import run_cli
from tether.web.app import build_app
from tether.web.downsample import downsample
from tether.web.files import FileRefused, resolve_file
from tether.web.security import Policy

from .conftest import SPIKE, SPIKE_STEP

PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
ORIGIN = {"origin": BASE}


def client(root: Path, host: str = "127.0.0.1", base: str = BASE) -> tuple[TestClient, Policy]:
    policy = Policy(host=host, port=PORT)
    return TestClient(build_app(root, policy), base_url=base), policy


@pytest.fixture
def api(runs: list[Path], runs_root: Path) -> tuple[TestClient, Policy]:
    return client(runs_root)


def test_runs_page_has_the_total_the_columns_and_one_page(api):
    c, _ = api
    page = c.get("/api/runs", params={"limit": 2}).json()
    assert page["total"] == 4 and len(page["runs"]) == 2
    names = [col["name"] for col in page["columns"]]
    assert names[:4] == ["name", "status", "started", "label"]
    rest = c.get("/api/runs", params={"limit": 2, "offset": 2}).json()["runs"]
    ids = [r["id"] for r in page["runs"] + rest]
    assert len(set(ids)) == 4  # the two pages do not overlap


def test_where_sort_and_columns_are_the_cli_language(api):
    c, _ = api
    page = c.get(
        "/api/runs",
        params={
            "where": "status = completed",
            "sort": "-config.optim.lr",
            "columns": "config.optim.lr,metrics.train/loss.max",
        },
    ).json()
    assert page["total"] == 3
    assert [r["columns"]["config.optim.lr"] for r in page["runs"]] == [0.3, 0.2, 0.1]
    assert page["runs"][0]["columns"]["metrics.train/loss.max"] == SPIKE


def test_where_error_is_400_with_the_caret(api):
    c, _ = api
    r = c.get("/api/runs", params={"where": "config.optim.lr >="})
    assert r.status_code == 400
    body = r.json()
    assert body["pos"] == len("config.optim.lr >=")
    assert body["error"].splitlines()[-1].strip() == "^"


def test_bad_limit_is_400(api):
    c, _ = api
    assert c.get("/api/runs", params={"limit": "many"}).status_code == 400
    assert c.get("/api/runs", params={"limit": 0}).status_code == 400


def test_run_detail_has_state_attrs_config_and_sources(api):
    c, _ = api
    run = c.get("/api/runs/2").json()  # 1 is the failed run, newest
    assert run["state"]["status"] == "completed" and run["state"]["attempts"]
    assert run["config_flat"]["optim.lr"] == 0.3
    assert run["metrics"]["train/loss"]["max"] == SPIKE
    assert set(run) >= {"attrs", "summary", "sources", "data", "stages", "lineage"}
    assert c.get("/api/runs/nosuchrun").status_code == 404


def test_metrics_are_cut_to_the_budget_and_keep_the_spike(api):
    c, _ = api
    body = c.get("/api/runs/2/metrics", params={"keys": "train/loss", "points": 300}).json()
    loss = body["series"]["train/loss"]
    assert set(body["series"]) == {"train/loss"}
    assert loss["count"] == 10_000 and loss["downsampled"] and len(loss["x"]) <= 300
    assert SPIKE in loss["y"] and loss["x"][loss["y"].index(SPIKE)] == SPIKE_STEP
    assert loss["x"][-1] == 9999  # the last point survives
    assert loss["x"] == sorted(loss["x"])


def test_metrics_since_returns_only_new_rows(api):
    c, _ = api
    body = c.get("/api/runs/3/metrics").json()  # three steps
    assert body["next"] == 3 and body["series"]["eval/acc"]["x"] == [0, 1, 2]
    again = c.get("/api/runs/3/metrics", params={"since": 2}).json()
    assert again["series"]["eval/acc"]["x"] == [2] and again["next"] == 3
    assert c.get("/api/runs/3/metrics", params={"since": 3}).json()["series"] == {}


def test_metrics_carry_the_wall_clock_time_of_each_point(api):
    c, _ = api
    loss = c.get("/api/runs/2/metrics", params={"points": 300}).json()["series"]["train/loss"]
    assert len(loss["t"]) == len(loss["x"]) and all(isinstance(t, float) for t in loss["t"])
    assert loss["t"] == sorted(loss["t"]) and loss["t"][-1] > loss["t"][0]
    # The spike's time is its own row's: x, y and t are kept together.
    spike = loss["y"].index(SPIKE)
    assert loss["t"][0] <= loss["t"][spike] <= loss["t"][-1]


def test_keys_lists_the_columns_the_runs_have(api):
    c, _ = api
    keys = c.get("/api/keys").json()
    assert {"name", "status", "label", "started"} <= set(keys["plain"])
    assert "config.optim.lr" in keys["keys"] and "config.model" in keys["keys"]
    assert "metrics.train/loss" in keys["keys"] and "metrics.train/loss.max" in keys["keys"]
    assert "metrics.train/loss.last" not in keys["keys"]  # the plain name means the last
    # Every key offered is a column the runs page takes.
    page = c.get("/api/runs", params={"columns": ",".join(keys["keys"]), "limit": 1})
    assert page.status_code == 200, page.text


GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_headdiff_is_the_code_from_the_runs_snapshot_to_head(
    tmp_path: Path, runs_root: Path, monkeypatch: pytest.MonkeyPatch
):
    top = tmp_path / "repo"
    top.mkdir()
    env = {**os.environ, **GIT_ENV}

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=top, env=env, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    git("init", "-q", "-b", "main")
    (top / "a.py").write_text("print('a')\n")
    (top / "b.py").write_text("def f():\n    return 1\n")
    git("add", "a.py", "b.py")
    git("commit", "-qm", "init")
    monkeypatch.chdir(top)
    with tether.start_run({"lr": 0.1}, name="train", capture_output=False) as run:
        pass
    c, _ = client(runs_root)
    (same,) = c.get(f"/api/runs/{run.id}/headdiff").json()["sources"]
    assert same["change"] == "same" and same["head"] == git("rev-parse", "HEAD")
    (top / "b.py").write_text("def f():\n    return 2\n")
    git("commit", "-qam", "two")
    (moved,) = c.get(f"/api/runs/{run.id}/headdiff").json()["sources"]
    assert moved["change"] == "changed" and moved["head"] == git("rev-parse", "HEAD")
    assert moved["commit"] == same["commit"]
    assert "-    return 1" in moved["patch"] and "+    return 2" in moved["patch"]
    assert "a.py" not in moved["patch"] and "b.py" in moved["stat"]
    # A run without a snapshot says so.
    with tether.start_run({}, name="bare", snapshot=False, capture_output=False) as bare:
        pass
    assert c.get(f"/api/runs/{bare.id}/headdiff").json()["sources"] == []


def test_downsample_keeps_min_max_and_last_of_each_bucket():
    xs = [float(i) for i in range(100)]
    ys = [0.0] * 100
    ys[10], ys[55] = -5.0, 9.0
    out_x, out_y = downsample(xs, ys, 6)  # two buckets of 50
    assert -5.0 in out_y and 9.0 in out_y and out_x[-1] == 99.0 and len(out_x) <= 6
    assert downsample([0.0, 1.0], [1.0, float("nan")], 10) == ([0.0], [1.0])


def test_files_listing_and_text(api):
    c, _ = api
    listed = {f["path"]: f for f in c.get("/api/runs/2/files").json()["files"]}
    assert listed["output.log"]["kind"] == "text" and listed["report.html"]["kind"] == "download"
    r = c.get("/api/runs/2/files/output.log")
    assert r.status_code == 200 and "trained long" in r.text
    assert r.headers["content-security-policy"] == "sandbox"
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("name", ["report.html", "picture.svg"])
def test_html_and_svg_a_run_wrote_are_sandboxed_downloads(api, name):
    c, _ = api
    r = c.get(f"/api/runs/2/files/{name}")
    assert r.status_code == 200
    assert r.headers["content-disposition"].startswith("attachment")
    assert r.headers["content-security-policy"] == "sandbox"
    assert r.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "path",
    [
        "..%2F..%2Fetc%2Fpasswd",
        "..%2f..%2fetc%2fpasswd",
        "%2Fetc%2Fpasswd",
        "a%5C..%5C..%5Cetc",
    ],
)
def test_encoded_traversal_is_refused(api, path):
    c, _ = api
    r = c.get(f"/api/runs/2/files/{path}")
    assert r.status_code == 400 and "root:" not in r.text


def test_dot_dot_and_absolute_paths_are_refused(api, runs):
    c, _ = api
    # httpx folds a literal `..` away before sending; `%2E%2E` and `//` reach the server.
    for path in ("a/%2E%2E/run.lock", "%2E%2E/%2E%2E/etc/passwd", "/etc/passwd"):
        r = c.get(f"/api/runs/2/files/{path}")
        assert r.status_code == 403, path
        assert "root:" not in r.text
    for path in ("../../../../etc/passwd", "attrs/../run.lock", "./run.lock", "a\\..\\b", "x\x00y"):
        with pytest.raises(FileRefused):
            resolve_file(runs[2], path)


def test_symlink_out_of_the_run_is_refused(api, runs, tmp_path):
    c, _ = api
    secret = tmp_path / "secret.txt"
    secret.write_text("not the run's")
    os.symlink(secret, runs[2] / "leak.txt")
    os.symlink(tmp_path, runs[2] / "outside")
    assert c.get("/api/runs/2/files/leak.txt").status_code == 403
    assert c.get("/api/runs/2/files/outside/secret.txt").status_code == 403
    listed = [f["path"] for f in c.get("/api/runs/2/files").json()["files"]]
    assert "leak.txt" not in listed
    # A symlink that stays inside the run folder is its file.
    os.symlink(runs[2] / "output.log", runs[2] / "same.log")
    assert "trained" in c.get("/api/runs/2/files/same.log").text


def test_compare_shows_only_the_differing_config_keys(api):
    c, _ = api
    body = c.get("/api/compare", params={"runs": "2,3,4"}).json()
    assert body["keys"] == ["optim.lr", "model"]  # epochs is the same in all three
    assert [r["config"]["optim.lr"] for r in body["runs"]] == [0.3, 0.2, 0.1]
    assert body["runs"][1]["metrics"]["eval/acc"]["last"] == pytest.approx(0.9)
    every = c.get("/api/compare", params={"runs": "2,3,4", "all": "1"}).json()
    assert "epochs" in every["keys"]
    assert c.get("/api/compare", params={"runs": "2"}).status_code == 400


def test_label_posted_is_what_the_cli_shows(api, runs_root):
    c, policy = api
    headers = {**ORIGIN, "x-tether-token": policy.token}
    r = c.post("/api/runs/3/label", json={"label": "best"}, headers=headers)
    assert r.status_code == 200 and r.json()["label"] == "best"
    c.post("/api/runs/3/tags", json={"add": ["good"]}, headers=headers)
    c.post("/api/runs/3/note", json={"text": "from the view"}, headers=headers)
    shown = json.loads(run_cli("show", "3", "--json", check=True).stdout)
    assert shown["label"] == "best" and shown["tags"] == ["good"]
    assert shown["notes"][0]["text"] == "from the view"
    assert "best" in run_cli("runs", "--where", "label = best", check=True).stdout
    assert c.post("/api/runs/3/label", json={"label": " "}, headers=headers).status_code == 400
    assert c.post("/api/runs/3/tags", json={"add": ["a,b"]}, headers=headers).status_code == 400


def test_wrong_host_header_is_refused(api):
    c, _ = api
    assert c.get("/api/runs", headers={"host": "evil.example:8765"}).status_code == 403
    assert c.get("/api/runs", headers={"host": "127.0.0.1:9999"}).status_code == 403
    assert c.get("/", headers={"host": "localhost:8765"}).status_code == 200


def test_non_loopback_bind_needs_the_token(runs, runs_root):
    c, policy = client(runs_root, host="0.0.0.0", base=f"http://10.1.2.3:{PORT}")
    assert c.get("/api/runs").status_code == 403
    assert c.get("/api/runs", headers={"x-tether-token": "wrong"}).status_code == 403
    r = c.get("/", params={"token": policy.token})
    assert r.status_code == 200 and policy.cookie in r.headers["set-cookie"]
    assert "HttpOnly" in r.headers["set-cookie"]
    # The cookie now set carries the token on the next request.
    assert c.get("/api/runs").status_code == 200


def test_writes_need_the_token_and_the_server_origin(api):
    c, policy = api
    token = {"x-tether-token": policy.token}
    body = {"label": "x"}
    assert c.post("/api/runs/2/label", json=body, headers=ORIGIN).status_code == 403
    foreign = {"origin": "http://evil.example", **token}
    assert c.post("/api/runs/2/label", json=body, headers=foreign).status_code == 403
    assert c.post("/api/runs/2/label", json=body, headers=token).status_code == 403  # no Origin
    assert c.post("/api/runs/2/label", json=body, headers={**ORIGIN, **token}).status_code == 200


def test_the_page_allows_only_its_own_scripts(api):
    c, _ = api
    r = c.get("/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert c.get("/static/app.js").status_code == 200


def test_diff_and_lineage_of_runs(api):
    c, _ = api
    d = c.get("/api/runs/3/diff/4").json()
    assert [(x["key"], x["old"], x["new"]) for x in d["config"]] == [("optim.lr", 0.2, 0.1)]
    assert d["identical"] is False
    assert c.get("/api/runs/3/lineage").json()["children"] == []
    assert c.get("/api/runs/3/diff/nosuchrun").status_code == 404


def test_log_from_an_offset(api):
    c, _ = api
    whole = c.get("/api/runs/2/log")
    assert "trained long" in whole.text
    end = int(whole.headers["x-next-offset"])
    rest = c.get("/api/runs/2/log", params={"offset": end})
    assert rest.text == "" and rest.headers["x-next-offset"] == str(end)


def test_metrics_of_several_runs_in_one_answer(api):
    c, _ = api
    body = c.get("/api/metrics", params={"runs": "2,3", "keys": "eval/acc", "points": 30}).json()
    assert set(body["runs"]) == {"2", "3"}
    assert len(body["runs"]["2"]["series"]["eval/acc"]["x"]) <= 30
    assert body["runs"]["3"]["series"]["eval/acc"]["x"] == [0, 1, 2]
    assert c.get("/api/metrics", params={"runs": ""}).status_code == 400


@pytest.mark.parametrize(
    "text",
    [
        '{"step": 0, "a": 1}\n{"step": 1, "a": 2}\n',
        '{"step": 0, "a": 1}\n\n{"step": 1, "a": 2}',  # a blank line, no newline at the end
        '{"step": 0, "a": 1}\n{"step": 1, "a"',  # torn last line
        '{"a": 1}, {"a": 2}\n{"a": 3}\n',  # two objects on one line: no row
        '{"a": 1}\n[1, 2]\n{"a": 3}\n',  # a line that is not an object
    ],
)
def test_read_rows_is_iter_metrics_in_one_go(tmp_path, text):
    from tether.track.metrics_file import iter_metrics, read_rows

    path = tmp_path / "metrics.jsonl"
    path.write_text(text)
    for start in (0, 1):
        assert read_rows(path, start) == list(iter_metrics(path, start))


def test_a_finished_files_series_is_kept_on_the_host_cache(runs, tmp_path, monkeypatch):
    from tether.web import data

    monkeypatch.setenv("TETHER_CACHE_DIR", str(tmp_path / "cache"))
    metrics = runs[0] / "metrics.jsonl"
    old = time.time() - 3600  # finished an hour ago: no longer growing
    os.utime(metrics, (old, old))
    data._series.cache_clear()
    first = data.metrics(runs[0], points="50")
    (entry,) = (tmp_path / "cache" / "view-series").iterdir()
    data._series.cache_clear()
    assert data.metrics(runs[0], points="50") == first  # from the entry: same answer
    assert data._series.cache_info().misses == 0  # and no parse
    assert not list(runs[0].glob("*.json.*"))  # nothing written into the run folder
    with open(metrics, "a") as fh:  # a changed file is parsed again
        fh.write('{"step": 3, "train/loss": 9.5}\n')
    os.utime(metrics, (old + 1, old + 1))
    assert data.metrics(runs[0], points="50")["series"]["train/loss"]["y"][-1] == 9.5
    assert len(list((tmp_path / "cache" / "view-series").iterdir())) == 2
    # A file written in the last seconds (a running run's) is not cached.
    with open(metrics, "a") as fh:
        fh.write('{"step": 4, "train/loss": 9.0}\n')
    assert data.metrics(runs[0], points="50")["series"]["train/loss"]["y"][-1] == 9.0
    assert len(list((tmp_path / "cache" / "view-series").iterdir())) == 2
    assert entry.exists()
