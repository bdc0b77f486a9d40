"""Is a TCP port free to listen on: checked before a server starts, so that a busy port is reported in one line
(naming the flag that chooses another) instead of a bind traceback halfway through the start."""
from __future__ import annotations

import socket


def port_in_use(address: str, port: int) -> bool:
    """Whether listening on ``address:port`` would fail because something holds the port. Binds a probe socket the
    way the servers do (SO_REUSEADDR, so a port in TIME_WAIT counts as free; no SO_REUSEPORT, so a second server
    cannot silently share the port of a running one). Port 0 (any free port) is never in use; an address that
    does not resolve here is left for the server to report."""
    if not port:
        return False
    host = address.strip("[]") or "0.0.0.0"
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                               flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError):
        return False
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError:
            return True
    return False
