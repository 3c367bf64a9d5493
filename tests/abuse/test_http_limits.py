"""The HTTP endpoint's connection limits: head and body timeouts, keep-alive, the cap on
connections that have not sent a complete request head (domicile/http_server.py)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from domicile.server import create_server
from tests.abuse.conftest import HANG, http_url
from tests.e2e.conftest import insecure_settings

HEAD = b"POST /api/v1/lineage HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"


@pytest.fixture
async def limited(tmp_path):
    settings = insecure_settings(
        tmp_path,
        http={
            "header_timeout_seconds": 0.5,
            "body_timeout_seconds": 0.5,
            "keepalive_timeout_seconds": 0.5,
            "max_pending_connections": 5,
        },
    )
    running = await create_server(settings)
    yield running
    await running.stop(0)


async def connect(server):
    return await asyncio.open_connection("127.0.0.1", server.http_port)


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    received = b""
    async with asyncio.timeout(HANG):
        while chunk := await reader.read(65536):
            received += chunk
    return received


async def healthy(server) -> bool:
    async with (
        aiohttp.ClientSession() as http,
        http.get(http_url(server, "/healthz"), timeout=aiohttp.ClientTimeout(total=HANG)) as response,
    ):
        return response.status == 200


async def test_a_request_head_that_does_not_complete_in_time_is_closed(limited):
    reader, writer = await connect(limited)
    writer.write(HEAD)  # no blank line: the head never completes
    await writer.drain()
    assert await until_closed(reader) == b""
    writer.close()
    assert limited.http.limits.waiting == 0
    assert await healthy(limited)


async def test_connections_beyond_the_pending_cap_are_closed_at_once(tmp_path):
    # A long head timeout: only the cap can close the extra connection.
    running = await create_server(
        insecure_settings(tmp_path, http={"header_timeout_seconds": 120, "max_pending_connections": 5})
    )
    try:
        idle = [await connect(running) for _ in range(5)]
        for _ in range(100):  # the server counts them as they are accepted
            if running.http.limits.waiting == 5:
                break
            await asyncio.sleep(0.05)
        assert running.http.limits.waiting == 5
        reader, writer = await connect(running)
        assert await until_closed(reader) == b""
        writer.close()
        assert running.http.limits.refused >= 1
        for _, idle_writer in idle:
            idle_writer.close()
        for _ in range(100):
            if running.http.limits.waiting == 0:
                break
            await asyncio.sleep(0.05)
        assert await healthy(running)
    finally:
        await running.stop(0)


async def test_a_body_that_does_not_arrive_in_time_is_408(limited):
    reader, writer = await connect(limited)
    writer.write(HEAD + b"Content-Length: 1000\r\n\r\n" + b'{"eventType": ')
    await writer.drain()
    answer = await until_closed(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code": "REQUEST_TIMEOUT"' in answer


async def test_an_idle_keep_alive_connection_is_closed(limited):
    reader, writer = await connect(limited)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    answer = await until_closed(reader)  # answered, then closed once idle too long
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_a_gzip_bomb_is_refused_by_its_decompressed_size(server):
    import gzip

    bomb = gzip.compress(b" " * (64 * 1024 * 1024))  # 64 MiB of spaces in ~64 KiB
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            http_url(server),
            data=bomb,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            timeout=aiohttp.ClientTimeout(total=HANG),
        ) as response,
    ):
        assert response.status == 413
