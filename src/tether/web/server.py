"""Running the view on uvicorn: the socket bound first (so `--port 0` prints the port it got),
the URL printed, and Ctrl-C a clean stop (uvicorn finishes the requests in flight)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import uvicorn

from ..errors import TetherError
from .app import build_app
from .security import Policy

GRACE_S = 2


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise TetherError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc})",
            "choose another --port (0 picks a free one) or --host",
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    root: Path, host: str, port: int, announce: Callable[[Policy], None] | None = None
) -> None:
    """Serve runs root `root` until interrupted; `announce` gets the policy (its URL) once
    the socket listens."""
    sock = bind(host, port)
    policy = Policy(host=host, port=sock.getsockname()[1])
    app = build_app(root, policy)
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        access_log=False,
        # Open event streams never end by themselves: Ctrl-C closes them after this long.
        timeout_graceful_shutdown=GRACE_S,
    )
    server = uvicorn.Server(config)
    if announce is not None:
        announce(policy)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn has shut down cleanly, then raises the SIGINT it caught again: a stop asked
        # for, not an error.
        pass
    finally:
        sock.close()
