"""Who may call the API: bearer keys from CLIPLAB_API_KEYS, compared in constant time and never
logged; and where the server may listen (without keys, loopback only)."""

from __future__ import annotations

import hmac
import ipaddress

from core.errors import UserError

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


class ListenError(UserError, ValueError):
    """The server would listen where it must not."""


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback name or address (only this machine can connect)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(host: str, keys: tuple[str, ...]) -> None:
    """Refuse to listen beyond this machine without keys: anyone who can reach the port could
    otherwise use the model and read every job."""
    if not keys and not is_loopback(host):
        raise ListenError(
            f"Refusing to listen on {host} without API keys: anyone who can reach it could use "
            "the model and read every job; set CLIPLAB_API_KEYS (comma-separated secret keys "
            "that clients send as 'Authorization: Bearer <key>'), or listen on 127.0.0.1."
        )


def key_matches(authorization: str | None, keys: tuple[str, ...]) -> bool:
    """Whether an Authorization header carries one of `keys` as a bearer token. Every key is
    compared, in constant time, so the time taken says nothing about any key."""
    if not keys:
        return True
    scheme, _, token = (authorization or "").partition(" ")
    given = token.strip().encode() if scheme.lower() == "bearer" else b""
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found and bool(given)
