"""Who may use the admin HTTP server: loopback binds, tokens, Host headers (pure checks).

Bound to loopback, the admin API is open (like ZooKeeper's AdminServer on
localhost). Bound anywhere else it refuses to start without a token
(:func:`check_bind`); with no token, a request whose Host header is not a
loopback name is refused too (DNS rebinding, see ``node.admin.http``).
"""

from __future__ import annotations

import ipaddress


class AdminConfigError(ValueError):
    """The admin server cannot start with these settings; the message says what is allowed."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; any other name or address is 'beyond loopback'."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_is_loopback(host_header: str | None) -> bool:
    """The Host header's name (port stripped) is a loopback name or address."""
    if not host_header:
        return False
    name = host_header
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":")[0]
    return is_loopback(name)


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token (raises AdminConfigError)."""
    if not is_loopback(host) and not token:
        raise AdminConfigError(
            f"refusing to serve the admin API on {host}: it is reachable beyond this machine and "
            f"anyone reaching it could edit the tree. Pass an admin token (--admin-token TOKEN) or bind "
            f"the admin port to 127.0.0.1 (the default)."
        )


MIN_TOKEN_CHARS = 8


def check_admin_options(host: str, port: int, token: str | None) -> tuple[str, int, str | None]:
    """Validate ``--admin-host/--admin-port/--admin-token`` before anything starts; returns serve()'s tuple."""
    check_bind(host, token)
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise AdminConfigError(f"the admin token is too short: use at least {MIN_TOKEN_CHARS} characters")
    if not 0 <= port <= 65535:
        raise AdminConfigError(f"admin port {port} is out of range; allowed: 0 (any free port) .. 65535")
    return host, port, token or None


__all__ = [
    "AdminConfigError",
    "MIN_TOKEN_CHARS",
    "check_admin_options",
    "check_bind",
    "host_is_loopback",
    "is_loopback",
]
