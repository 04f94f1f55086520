"""Server addresses: whether one is reachable only from this machine."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(address: str) -> bool:
    """Whether a ZeroMQ address is reachable only from this machine.

    inproc:// and ipc:// are local; tcp:// is local for 127.0.0.0/8, ::1 and localhost.
    """
    parts = urlsplit(address)
    if parts.scheme in ("inproc", "ipc"):
        return True
    host = parts.netloc.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
