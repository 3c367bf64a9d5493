"""Checkpoint sinks: the HTTP endpoint gets every checkpoint, retried until it answers."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from domicile.router.decision_log import Checkpoint, HttpSink
from tests.unit.decision_log_helpers import SIGNER


def checkpoint(seq: int) -> Checkpoint:
    return SIGNER.sign("replica-a", seq, "ab" * 32, "2026-11-30T04:00:00Z", decisions=seq, max_catalog_revision=1)


def test_the_http_sink_posts_each_checkpoint_and_retries_until_the_endpoint_answers() -> None:
    received: list[dict] = []
    failures = [2]  # the endpoint is down for the first two attempts

    class Endpoint(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if failures[0]:
                failures[0] -= 1
                self.send_response(503)
            else:
                received.append(body)
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink = HttpSink(f"http://127.0.0.1:{server.server_address[1]}/anchors", timeout=5)
    try:
        sink._delay_cap = 0.05  # (a test need not wait the production backoff)
        for seq in (1, 2):
            sink.publish(checkpoint(seq))
        deadline = time.monotonic() + 30
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sink.close()
        server.shutdown()
    assert [Checkpoint.from_record(body) for body in received] == [checkpoint(1), checkpoint(2)]
