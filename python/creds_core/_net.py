"""Listening sockets that another local process cannot take over."""

from __future__ import annotations

import socket
import socketserver

__all__ = ["bind_exclusively"]


def bind_exclusively(server: socketserver.TCPServer) -> None:
    """Bind ``server``'s socket (``TCPServer.server_bind``, without HTTPServer's reverse DNS
    lookup), never sharing its port. On Windows, SO_REUSEADDR would let a second socket bind
    the same port and take connections (and the tokens they carry) meant for this one:
    SO_EXCLUSIVEADDRUSE there instead. Elsewhere SO_REUSEADDR only allows a restart while old
    connections linger in TIME_WAIT, and the stdlib servers keep it."""
    exclusive = getattr(socket, "SO_EXCLUSIVEADDRUSE", None)
    if exclusive is not None:
        server.allow_reuse_address = False
        server.socket.setsockopt(socket.SOL_SOCKET, exclusive, 1)
    socketserver.TCPServer.server_bind(server)
