"""Who may ask the view what: the rules of `tether view`, as plain functions of a request's
method, Host, Origin and token (the middleware in app.py applies them).

- Bound to a loopback address, the server answers only requests whose Host header names that
  address (127.0.0.1, localhost or [::1], with the port): a page elsewhere that points its own
  name at 127.0.0.1 (DNS rebinding) is refused.
- Bound to any other address, every request needs the token printed in the URL (`?token=`,
  then a cookie; or the `X-Tether-Token` header).
- Writes (label, tags, note) need the token and an Origin header naming the server, on every
  address: a form on another site cannot post to the view.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from dataclasses import dataclass, field

TOKEN_HEADER = "x-tether-token"
TOKEN_QUERY = "token"
READS = frozenset({"GET", "HEAD"})

# The page's own responses: scripts, styles and requests to this server only.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# A run's files: no script, no plug-in, no same-origin access, whatever they hold.
FILE_CSP = "sandbox"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Policy:
    """The rules for one server: the address it is bound to, its port and its token."""

    host: str
    port: int
    token: str = field(default_factory=new_token)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def cookie(self) -> str:
        # Cookies ignore ports: two views on one machine must not overwrite each other's.
        return f"tether_token_{self.port}"

    def allowed_hosts(self) -> frozenset[str]:
        """The Host headers a loopback server answers."""
        names = ["127.0.0.1", "localhost", "[::1]"]
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            names.append(f"[{self.host}]" if ":" in self.host else self.host)
        out = {f"{n}:{self.port}" for n in names}
        if self.port == 80:
            out |= set(names)
        return frozenset(out)

    def token_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given).encode(), self.token.encode())

    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        if shown in ("0.0.0.0", "[::]"):
            shown = socket.gethostname()  # every address: this machine's name reaches it
        return f"http://{shown}:{self.port}/?{TOKEN_QUERY}={self.token}"

    def refuse(
        self, method: str, host: str | None, origin: str | None, token: str | None
    ) -> tuple[int, str] | None:
        """(status, reason) when the request must be refused, else None."""
        if self.loopback and (host or "").lower() not in self.allowed_hosts():
            return 403, (
                f"Host {host!r} is not this server's address; open "
                f"http://127.0.0.1:{self.port}/ (requests through other names are refused)"
            )
        has_token = self.token_ok(token)
        if not self.loopback and not has_token:
            return 403, "missing or wrong token; open the URL `tether view` printed"
        if method.upper() not in READS:
            if not has_token:
                return 403, "writes need the token; open the URL `tether view` printed"
            if origin is None or origin.lower() != f"http://{(host or '').lower()}":
                return 403, f"Origin {origin!r} is not this server; writes come from its page"
        return None
