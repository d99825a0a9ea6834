"""The fault proxy itself: a test peer the reliability suite leans on must not misbehave on its own.

These run against a tiny upstream of ours (no kinesalite needed), so they are quick and exact.
"""

from __future__ import annotations

import gc
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.peers.faultproxy import PUT_RECORDS, FaultProxy

ANSWER = json.dumps({"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": "s"}]})


@contextmanager
def slow_upstream(delay: float) -> Iterator[int]:
    """Answers every request with one stored record, ``delay`` seconds after reading it."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(
                    next(
                        h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
                    ).split(b":")[1]
                )
                while len(body) < length:
                    body += conn.recv(65536)
                time.sleep(delay)
                payload = ANSWER.encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()


def put_records_request(host: str) -> bytes:
    body = json.dumps(
        {"StreamName": "s", "Records": [{"Data": "eA==", "PartitionKey": "k"}]}
    ).encode()
    return (
        b"POST / HTTP/1.1\r\nHost: " + host.encode()
        + b"\r\nX-Amz-Target: " + PUT_RECORDS.encode()
        + b"\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )  # fmt: skip


def test_answers_a_client_that_half_closed_while_upstream_is_slow() -> None:
    """A client that sends its request and shuts down its side (or dies, as a SIGKILLed agent does)
    leaves the proxy's connection unpolled while it waits for the upstream. Python's event loop holds
    tasks only weakly: unless the proxy holds its connection tasks itself, a garbage collection in
    that window destroys the pending task (CI saw "Task was destroyed but it is pending!" and
    unclosed-transport warnings). Here the half-closed client must still get its answer."""
    with slow_upstream(0.5) as upstream, FaultProxy(upstream) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port))
        client.settimeout(10)
        client.sendall(put_records_request(f"127.0.0.1:{proxy.port}"))
        client.shutdown(socket.SHUT_WR)
        time.sleep(0.2)  # the proxy has read the request, seen EOF, and is waiting upstream
        gc.collect()
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        client.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["FailedRecordCount"] == 0
        assert [len(e.forwarded) for e in proxy.events] == [1]


def test_stop_with_a_request_in_flight_is_clean() -> None:
    """Stopping the proxy while it waits on the upstream ends that connection without leaving a
    pending task or an open transport behind (pytest turns such warnings into errors here)."""
    with slow_upstream(3.0) as upstream:
        proxy = FaultProxy(upstream)
        proxy.start()
        client = socket.create_connection(("127.0.0.1", proxy.port))
        client.settimeout(10)
        client.sendall(put_records_request(f"127.0.0.1:{proxy.port}"))
        time.sleep(0.2)
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 2.0
        assert client.recv(65536) == b""  # closed, not answered
        client.close()
        gc.collect()
