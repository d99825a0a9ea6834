"""ADDEC2METADATA against a fake instance metadata service on 127.0.0.1 (IMDSv2 token protocol).

Nothing here may reach 169.254.169.254: every processor is built with a local endpoint, and an
autouse fixture points the environment default at a closed local port.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from agent.errors import ConfigError
from agent.processors import build_chain
from agent.processors.ec2 import (
    ENDPOINT_ENV,
    AddEc2Metadata,
    Ec2MetadataFetcher,
    ImdsClient,
    MetadataCache,
    add_ec2_metadata,
)

IDENTITY = {
    "accountId": "123456789012",
    "architecture": "x86_64",
    "availabilityZone": "eu-west-1b",
    "imageId": "ami-0abcdef1234567890",
    "instanceId": "i-0123456789abcdef0",
    "instanceType": "m7g.large",
    "privateIp": "10.1.2.3",
    "region": "eu-west-1",
}
EXPECTED_FIELDS = {
    "privateIp": "10.1.2.3",
    "availabilityZone": "eu-west-1b",
    "instanceId": "i-0123456789abcdef0",
    "instanceType": "m7g.large",
    "accountId": "123456789012",
    "amiId": "ami-0abcdef1234567890",
    "region": "eu-west-1",
}


@dataclass
class FakeImds:
    """State of the fake service; the handler reads it and records what it was asked."""

    tags: dict[str, str] | None = field(default_factory=lambda: {"Name": "web-1", "Env": "prod"})
    tokens_supported: bool = True
    delay: float = 0.0
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    issued: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, path: str) -> int:
        return sum(1 for _, p, _ in self.requests if p == path)


def _handler(state: FakeImds) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            state.requests.append(("PUT", self.path, None))
            if state.delay:
                state.release.wait(state.delay)
            if not state.tokens_supported:
                return self._send(405)
            if self.path != "/latest/api/token":
                return self._send(404)
            if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return self._send(400)
            token = f"token-{len(state.issued)}"
            state.issued.add(token)
            return self._send(200, token.encode())

        def do_GET(self) -> None:
            token = self.headers.get("X-aws-ec2-metadata-token")
            state.requests.append(("GET", self.path, token))
            if state.tokens_supported and token not in state.issued:
                return self._send(401)
            if self.path == "/latest/dynamic/instance-identity/document":
                return self._send(200, orjson.dumps(IDENTITY))
            prefix = "/latest/meta-data/tags/instance"
            if self.path.startswith(prefix) and state.tags is not None:
                if self.path == prefix:
                    return self._send(200, "\n".join(state.tags).encode())
                key = self.path[len(prefix) + 1 :]
                if key in state.tags:
                    return self._send(200, state.tags[key].encode())
            return self._send(404)

    return Handler


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    state = FakeImds()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def never_the_real_imds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, f"http://127.0.0.1:{closed_port()}")


def ec2_chain(endpoint: str, **options: Any) -> Any:
    return build_chain(
        [
            {
                "optionName": "ADDEC2METADATA",
                "logFormat": "COMMONAPACHELOG",
                "endpoint": endpoint,
                "describeTags": False,
                **options,
            }
        ]
    )


class TestAgainstFakeImds:
    def test_merges_identity_and_tags(self, imds: FakeImds) -> None:
        """A JSON record gains the AWS agent's fields, a timestamp and lower-cased tags."""
        chain = ec2_chain(imds.endpoint)
        out = chain(b'{"a":"1"}\n')
        assert out is not None and out.endswith(b"}\n")
        record = orjson.loads(out)
        assert record["a"] == "1"
        assert {k: record[k] for k in EXPECTED_FIELDS} == EXPECTED_FIELDS
        assert record["tags"] == {"name": "web-1", "env": "prod"}
        assert time.strptime(record["metadataTimestamp"], "%Y-%m-%dT%H:%M:%S+0000")

    def test_token_protocol(self, imds: FakeImds) -> None:
        """A token is PUT first (with a TTL header) and every GET carries it."""
        ec2_chain(imds.endpoint)(b"{}\n")
        assert imds.requests[0] == ("PUT", "/latest/api/token", None)
        gets = [r for r in imds.requests if r[0] == "GET"]
        assert gets and all(token == "token-0" for _, _, token in gets)
        assert imds.count("/latest/api/token") == 1

    def test_cached_for_ttl(self, imds: FakeImds) -> None:
        """Many records, one fetch: metadata is cached for metadataTTL."""
        chain = ec2_chain(imds.endpoint)
        for _ in range(100):
            chain(b"{}\n")
        assert imds.count("/latest/dynamic/instance-identity/document") == 1

    def test_refreshed_after_ttl_without_blocking(self, imds: FakeImds) -> None:
        """After the TTL a refresh is started and the old values serve meanwhile."""
        now = [0.0]
        pending: list[Any] = []
        imds_client = ImdsClient(imds.endpoint, timeout=1)
        cache = MetadataCache(
            Ec2MetadataFetcher(imds_client, None, time.time),
            ttl=10,
            first_wait=0,
            clock=lambda: now[0],
            spawn=pending.append,
        )
        process = AddEc2Metadata(cache, 0)
        assert process(b"{}\n") == b"{}\n"  # not fetched yet: passes unchanged
        pending.pop()()  # the first fetch, as its thread would run it
        assert b"instanceId" in process(b"{}")
        now[0] = 11
        assert b"instanceId" in process(b"{}")  # stale but present, refresh queued
        assert len(pending) == 1 and imds.count("/latest/dynamic/instance-identity/document") == 1
        pending.pop()()
        assert imds.count("/latest/dynamic/instance-identity/document") == 2

    def test_imdsv1_fallback(self, imds: FakeImds) -> None:
        """An IMDS without the token endpoint (405) is read without a token."""
        imds.tokens_supported = False
        record = orjson.loads(ec2_chain(imds.endpoint)(b"{}\n"))
        assert record["instanceId"] == IDENTITY["instanceId"]

    def test_rejected_token_is_renewed(self, imds: FakeImds) -> None:
        """A 401 (token expired) renews the token once and retries."""
        client = ImdsClient(imds.endpoint, timeout=1)
        assert client.identity()["region"] == "eu-west-1"
        imds.issued.clear()
        assert client.identity()["region"] == "eu-west-1"
        assert imds.count("/latest/api/token") == 2

    def test_tags_off_in_metadata_then_describe_tags(self, imds: FakeImds) -> None:
        """Without tags in IMDS, DescribeTags (when permitted) supplies them, keys lower-cased."""
        imds.tags = None
        calls: list[dict[str, Any]] = []

        class FakeEc2:
            def describe_tags(self, **kwargs: Any) -> dict[str, Any]:
                calls.append(kwargs)
                if "NextToken" not in kwargs:
                    return {"Tags": [{"Key": "Team", "Value": "a"}], "NextToken": "n"}
                return {"Tags": [{"Key": "Cost", "Value": "b"}]}

        regions: list[str] = []

        def factory(region: str) -> FakeEc2:
            regions.append(region)
            return FakeEc2()

        process = add_ec2_metadata({"endpoint": imds.endpoint}, "p", ec2_client=factory)
        record = orjson.loads(process(b"{}\n") or b"")
        assert record["tags"] == {"team": "a", "cost": "b"}
        assert regions == ["eu-west-1"]
        assert calls[0]["Filters"] == [{"Name": "resource-id", "Values": ["i-0123456789abcdef0"]}]

    def test_describe_tags_denied(self, imds: FakeImds, caplog: pytest.LogCaptureFixture) -> None:
        """DescribeTags refused: the identity fields still arrive, without tags, one warning."""
        imds.tags = None

        def factory(region: str) -> Any:
            raise PermissionError("UnauthorizedOperation")

        process = add_ec2_metadata({"endpoint": imds.endpoint}, "p", ec2_client=factory)
        with caplog.at_level(logging.WARNING):
            record = orjson.loads(process(b"{}\n") or b"")
        assert "tags" not in record and record["instanceId"] == IDENTITY["instanceId"]
        assert any("DescribeTags" in r.message for r in caplog.records)

    def test_non_json_record_goes_raw(self, imds: FakeImds) -> None:
        """The record must be a JSON object; otherwise it is sent raw and counted."""
        chain = ec2_chain(imds.endpoint)
        assert chain(b"plain text\n") == b"plain text\n"
        assert chain(b"[1, 2]\n") == b"[1, 2]\n"
        assert chain.errors == 2

    def test_pretty_print(self, imds: FakeImds) -> None:
        """jsonFormat PRETTYPRINT applies to the merged record."""
        out = ec2_chain(imds.endpoint, jsonFormat="PRETTYPRINT")(b"{}\n")
        assert out is not None and out.startswith(b"{\n  ") and out.endswith(b"}\n")


class TestOffEc2:
    def test_absent_service(self, caplog: pytest.LogCaptureFixture) -> None:
        """Nothing listening: records pass unchanged, quickly, with a single warning."""
        chain = ec2_chain(f"http://127.0.0.1:{closed_port()}")
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            outputs = [chain(b'{"a":1}\n') for _ in range(50)]
        assert time.monotonic() - started < 2
        assert outputs == [b'{"a":1}\n'] * 50
        assert chain.errors == 0
        assert len([r for r in caplog.records if "no instance metadata" in r.message]) == 1

    def test_slow_service_does_not_hold_records(self, imds: FakeImds) -> None:
        """A service slower than the timeout: the first record waits only for the timeout."""
        imds.delay = 30
        chain = ec2_chain(imds.endpoint, timeoutMillis=200)
        started = time.monotonic()
        assert chain(b'{"a":1}\n') == b'{"a":1}\n'
        assert chain(b'{"a":2}\n') == b'{"a":2}\n'
        assert time.monotonic() - started < 1.5

    def test_env_endpoint(self, imds: FakeImds, monkeypatch: pytest.MonkeyPatch) -> None:
        """KINESIS_AGENT_IMDS_ENDPOINT chooses the endpoint when the option does not."""
        monkeypatch.setenv(ENDPOINT_ENV, imds.endpoint)
        chain = build_chain([{"optionName": "ADDEC2METADATA", "describeTags": "false"}])
        assert b"instanceId" in (chain(b"{}\n") or b"")

    def test_building_does_no_io(self) -> None:
        """Config checks build chains: building alone never contacts anything."""
        add_ec2_metadata({"endpoint": "http://127.0.0.1:9"}, "p")

    @pytest.mark.parametrize(
        ("option", "path"),
        [
            ({"metadataTTL": 0}, "p[0].metadataTTL"),
            ({"metadataTTL": "soon"}, "p[0].metadataTTL"),
            ({"endpoint": "https://x"}, "p[0].endpoint"),
            ({"timeoutMillis": -1}, "p[0].timeoutMillis"),
            ({"tags": True}, "p[0].tags"),
        ],
    )
    def test_bad_options(self, option: dict[str, Any], path: str) -> None:
        """Bad ADDEC2METADATA options name their path."""
        with pytest.raises(ConfigError) as info:
            build_chain([{"optionName": "ADDEC2METADATA", **option}], path="p")
        assert info.value.path == path

    def test_ttl_as_string(self) -> None:
        """metadataTTL may be written as a string, as AWS configs do."""
        build_chain([{"optionName": "ADDEC2METADATA", "metadataTTL": "60"}])
