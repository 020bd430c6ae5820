"""The view's Starlette application: the JSON API over `data`, the page's static files, and the
guard of `security` in front of both."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import AmbiguousRun, RunNotFound, TetherError
from ..store import Store
from ..store.fields import WhereError
from ..store.layout import OUTPUT
from ..store.records import RunRecord
from . import data
from .files import FileRefused, list_files, resolve_file, serving
from .security import FILE_CSP, PAGE_CSP, TOKEN_HEADER, TOKEN_QUERY, Policy

STATIC = Path(__file__).parent / "static"
MAX_LOG = 1 << 20  # bytes of output.log one request returns at most
MAX_BODY = 1 << 16  # bytes of a POST body
MAX_RUNS = 200  # runs one /api/metrics or /api/compare answers for
EVENTS_EVERY_S = 1.0  # how often /api/events looks at the change journal
MAX_EVENTS = 500  # journal entries one look reads at most


class Guard:
    """Applies the Policy to every HTTP request, sets the token cookie when the token came in
    the query string, and adds the page's security headers to responses that have none."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        raw = bytes(scope.get("raw_path") or b"").lower()
        if b"%2f" in raw or b"%5c" in raw or b"%00" in raw:
            await _error(400, "encoded slashes are refused in paths")(scope, receive, send)
            return
        query_token = request.query_params.get(TOKEN_QUERY)
        token = (
            request.headers.get(TOKEN_HEADER)
            or query_token
            or request.cookies.get(self.policy.cookie)
        )
        refused = self.policy.refuse(
            request.method, request.headers.get("host"), request.headers.get("origin"), token
        )
        if refused is not None:
            await _error(*refused)(scope, receive, send)
            return
        set_cookie = query_token is not None and self.policy.token_ok(query_token)
        cookie = f"{self.policy.cookie}={self.policy.token}; Path=/; HttpOnly; SameSite=Strict"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                extra = {
                    b"content-security-policy": PAGE_CSP.encode(),
                    b"x-content-type-options": b"nosniff",
                    b"referrer-policy": b"no-referrer",
                    b"x-frame-options": b"DENY",
                    b"cache-control": b"no-store",
                }
                headers += [(k, v) for k, v in extra.items() if k not in have]
                if set_cookie:
                    headers.append((b"set-cookie", cookie.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(status: int, message: str, **extra: Any) -> Response:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _failure(exc: TetherError) -> Response:
    if isinstance(exc, WhereError):
        return _error(400, str(exc), detail=exc.detail, text=exc.text, pos=exc.pos)
    if isinstance(exc, FileRefused):
        return _error(404 if str(exc).startswith("no file") else 403, str(exc))
    if isinstance(exc, RunNotFound):
        return _error(404, str(exc))
    if isinstance(exc, AmbiguousRun):
        return _error(400, str(exc))
    return _error(400, str(exc))


Handler = Callable[[Request], Awaitable[Response]]


def build_app(root: Path, policy: Policy) -> ASGIApp:
    """The application serving runs root `root` under `policy`."""
    local = threading.local()

    def store() -> Store:
        # SQLite connections stay in their thread: one Store per worker thread.
        if getattr(local, "store", None) is None:
            local.store = Store(root)
        found: Store = local.store
        return found

    def record(request: Request) -> RunRecord:
        return store().resolve_one(request.path_params["run"])

    def folder(request: Request) -> Path:
        """The run's folder from the index alone (no run.lock read: metrics, files, log)."""
        spec = request.path_params["run"]
        rows = store().resolve(spec)
        if len(rows) > 1:
            raise AmbiguousRun(f"{spec!r} selects {len(rows)} runs; give one")
        return Path(rows[0].dir)

    def endpoint(fn: Callable[[Request], Any]) -> Handler:
        """A JSON endpoint: the function's result as JSON, a TetherError as one message."""

        def sync(request: Request) -> Response:
            try:
                out = fn(request)
            except TetherError as exc:
                return _failure(exc)
            if isinstance(out, Response):
                return out
            return Response(json.dumps(out, default=str), media_type="application/json")

        async def handler(request: Request) -> Response:
            # The store's calls block (SQLite, files): in a worker thread, not the event loop.
            return await run_in_threadpool(sync, request)

        return handler

    def writer(fn: Callable[[Store, RunRecord, dict[str, Any]], Any]) -> Handler:
        async def handler(request: Request) -> Response:
            raw = await request.body()
            if len(raw) > MAX_BODY:
                return _error(413, f"request body over {MAX_BODY} bytes")
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return _error(400, "the request body is not JSON")
            if not isinstance(body, dict):
                return _error(400, "the request body must be a JSON object")
            return await endpoint(lambda r: fn(store(), record(r), body))(request)

        return handler

    def runs(request: Request) -> Any:
        q = request.query_params
        return data.runs_page(
            store(),
            q.get("where"),
            q.get("sort"),
            q.get("columns"),
            q.get("limit"),
            q.get("offset"),
        )

    def run(request: Request) -> Any:
        return data.run_detail(store(), record(request))

    def metrics(request: Request) -> Any:
        q = request.query_params
        return data.metrics(folder(request), q.get("keys"), q.get("since"), q.get("points"))

    def many_metrics(request: Request) -> Any:
        """The series of several runs in one answer (compare draws 50 runs: one request)."""
        q = request.query_params
        specs = [x.strip() for x in (q.get("runs") or "").split(",") if x.strip()]
        if not specs or len(specs) > MAX_RUNS:
            raise data.BadRequest(f"runs=: give 1 to {MAX_RUNS} runs, comma-separated")
        out = {}
        for spec in specs:
            rows = store().resolve(spec)
            if len(rows) > 1:
                raise AmbiguousRun(f"{spec!r} selects {len(rows)} runs; give one")
            out[spec] = data.metrics(Path(rows[0].dir), q.get("keys"), None, q.get("points"))
        return {"runs": out}

    def files(request: Request) -> Any:
        listed, truncated = list_files(folder(request))
        return {"files": listed, "truncated": truncated}

    def file(request: Request) -> Response:
        path = resolve_file(folder(request), request.path_params["path"])
        served = serving(path)
        headers = {"content-security-policy": FILE_CSP, "x-content-type-options": "nosniff"}
        disposition = "attachment" if served.attachment else "inline"
        return FileResponse(
            path,
            media_type=served.media_type,
            headers=headers,
            filename=path.name,
            content_disposition_type=disposition,
        )

    def log(request: Request) -> Response:
        """output.log from byte `offset` (for following a running run), at most MAX_LOG."""
        offset = data._int(request.query_params.get("offset"), "offset", 0, 0, 1 << 62)
        try:
            with open(folder(request) / OUTPUT, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read(MAX_LOG)
        except FileNotFoundError:
            chunk = b""
        return PlainTextResponse(
            chunk.decode("utf-8", "replace"),
            headers={"x-next-offset": str(offset + len(chunk))},
        )

    def lineage(request: Request) -> Any:
        return data.run_detail(store(), record(request))["lineage"]

    def diff(request: Request) -> Any:
        from ..diffing import diff_runs  # noqa: PLC0415 (git and difflib: only for a diff)

        old = record(request)
        new = store().resolve_one(request.path_params["other"])
        return diff_runs(old, new, patch=True).to_dict()

    def head(request: Request) -> Any:
        from .headdiff import head_diff  # noqa: PLC0415 (git and difflib: only for a diff)

        return head_diff(record(request))

    def keys(request: Request) -> Any:
        return data.column_keys(store())

    def compare(request: Request) -> Any:
        specs = [s for s in (request.query_params.get("runs") or "").split(",") if s.strip()]
        if not 2 <= len(specs) <= MAX_RUNS:
            raise data.BadRequest(f"runs=: give 2 to {MAX_RUNS} runs, comma-separated")
        records = [store().resolve_one(s) for s in specs]
        every = request.query_params.get("all") in ("1", "true", "yes")
        return data.compare(store(), records, every=every)

    async def events(request: Request) -> Response:
        """Server-sent events: one `change` event per entry of the runs root's change journal
        (a run created, its state, attributes or summary changed), from now on."""
        journal = store().journal

        async def stream() -> AsyncIterator[str]:
            seen = await run_in_threadpool(journal.end)
            yield f"event: hello\ndata: {json.dumps({'position': seen})}\n\n"
            while not await request.is_disconnected():
                await anyio.sleep(EVENTS_EVERY_S)
                entries, seen = await run_in_threadpool(journal.read, seen, MAX_EVENTS)
                for e in entries:
                    payload = {"run": e.run, "kind": e.kind, "time": e.time, "seq": e.seq}
                    yield f"event: change\ndata: {json.dumps(payload)}\n\n"
                if not entries:
                    yield ": idle\n\n"  # a comment: finds a client that left

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    routes = [
        Route("/", page),
        Route("/api/runs", endpoint(runs)),
        Route("/api/compare", endpoint(compare)),
        Route("/api/keys", endpoint(keys)),
        Route("/api/events", events),
        Route("/api/metrics", endpoint(many_metrics)),
        Route("/api/runs/{run}", endpoint(run)),
        Route("/api/runs/{run}/metrics", endpoint(metrics)),
        Route("/api/runs/{run}/files", endpoint(files)),
        Route("/api/runs/{run}/files/{path:path}", endpoint(file)),
        Route("/api/runs/{run}/log", endpoint(log)),
        Route("/api/runs/{run}/lineage", endpoint(lineage)),
        Route("/api/runs/{run}/diff/{other}", endpoint(diff)),
        Route("/api/runs/{run}/headdiff", endpoint(head)),
        Route("/api/runs/{run}/label", writer(data.set_label), methods=["POST"]),
        Route("/api/runs/{run}/tags", writer(data.set_tags), methods=["POST"]),
        Route("/api/runs/{run}/note", writer(data.add_note), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Guard(Starlette(routes=routes), policy)
