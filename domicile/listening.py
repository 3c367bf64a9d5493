"""Listening on the server's addresses (gRPC, gRPC health, HTTP, console, ops): when an
address cannot be bound, one line that names it and says why, as the operating system puts it."""

from __future__ import annotations

import os
import socket
import ssl

import grpc
from aiohttp import web

from domicile import http_server
from domicile.config import HTTPSettings, split_host_port


class ListenError(OSError):
    """An address the server cannot listen on; the message is one line naming it."""

    def __init__(self, what: str, address: str, problem: str) -> None:
        super().__init__(f"cannot listen on {address} ({what}): {problem}")


def bind_problem(address: str) -> str | None:
    """Why `address` cannot be bound (as the operating system says it), or None when it can
    (at this moment). Binds as gRPC does, with SO_REUSEADDR."""
    host, port = split_host_port(address)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror}"
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                return _problem(exc)
    return None


def add_grpc_port(server: grpc.aio.Server, what: str, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """Bind `server` to `address` (TLS with `credentials`, else plaintext); the bound port, or
    ListenError naming the address. Checked first: gRPC's own refusal is a log line and
    "Failed to bind to address"."""
    problem = bind_problem(address)
    if problem is not None:
        raise ListenError(what, address, problem)
    try:
        port = (
            server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
        )
    except RuntimeError:
        port = 0
    if port == 0:  # taken between the check and the bind
        raise ListenError(what, address, "address in use or not available")
    return port


async def serve_http(
    http_app: web.Application,
    address: str,
    settings: HTTPSettings,
    ssl_context: ssl.SSLContext | None,
    what: str,
) -> http_server.HTTPServer:
    """`http_server.serve`, with ListenError when `address` cannot be listened on."""
    try:
        return await http_server.serve(http_app, address, settings, ssl_context, what)
    except OSError as exc:
        raise ListenError(what, address, _problem(exc)) from None


def _problem(error: OSError) -> str:
    return os.strerror(error.errno).lower() if error.errno else str(error)
