"""PutRecords bodies written straight to bytes: the same JSON document botocore would send."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from botocore.exceptions import ParamValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.awsclient import make_client
from agent.config import AgentConfig
from agent.sinks.wire import PutRecordsSerializer, install_put_records_serializer, put_records_body


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    return make_client(AgentConfig(flows=(), kinesis_endpoint="http://127.0.0.1:9"), "kinesis")


def serialize(client: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    model = client.meta.service_model.operation_model(operation)
    request: dict[str, Any] = client._serializer.serialize_to_request(params, model)
    return request


keys = st.text(min_size=1, max_size=256)


class TestPutRecordsSerializer:
    @settings(max_examples=100, deadline=None)
    @given(st.text(min_size=1, max_size=20), st.lists(st.tuples(st.binary(), keys), min_size=1))
    def test_body_is_botocores_document(
        self, stream: str, entries: list[tuple[bytes, str]]
    ) -> None:
        """Any stream name, data and key (quotes, controls, non-ASCII) give botocore's JSON."""
        records = [{"Data": d, "PartitionKey": k} for d, k in entries]
        body = put_records_body(stream, records)
        assert body is not None
        assert json.loads(body) == {
            "StreamName": stream,
            "Records": [
                {"Data": base64.b64encode(d).decode(), "PartitionKey": k} for d, k in entries
            ],
        }

    def test_installed_serializer_matches_botocore(self, client: Any) -> None:
        """Method, headers, URL and the decoded body are what botocore makes on its own."""
        params = {
            "StreamName": "s-1",
            "Records": [
                {"Data": b"\x00\xff" * 300, "PartitionKey": k} for k in ("a", 'q"\\', "é", "\x01")
            ],
        }
        before = serialize(client, "PutRecords", params)
        assert install_put_records_serializer(client)
        after = serialize(client, "PutRecords", params)
        assert after["body"] != before["body"]  # ours: compact separators
        assert json.loads(after.pop("body")) == json.loads(before.pop("body"))
        assert after == before

    def test_other_shapes_go_to_botocore(self, client: Any) -> None:
        """A str datum, an explicit hash key or another operation are botocore's to serialize."""
        assert install_put_records_serializer(client)
        assert isinstance(client._serializer._serializer, PutRecordsSerializer)
        for params in (
            {"StreamName": "s", "Records": [{"Data": "text", "PartitionKey": "k"}]},
            {
                "StreamName": "s",
                "Records": [{"Data": b"x", "PartitionKey": "k", "ExplicitHashKey": "1"}],
            },
        ):
            body = json.loads(serialize(client, "PutRecords", params)["body"])
            assert body["Records"][0]["PartitionKey"] == "k"
            assert len(body["Records"][0]) == len(params["Records"][0])  # type: ignore[index]
        assert json.loads(serialize(client, "ListShards", {"StreamName": "s"})["body"]) == {
            "StreamName": "s"
        }

    def test_validation_still_runs(self, client: Any) -> None:
        """botocore's parameter validation still refuses a bad call before our body is built."""
        assert install_put_records_serializer(client)
        with pytest.raises(ParamValidationError):
            serialize(
                client,
                "PutRecords",
                {"StreamName": "s", "Records": [{"Data": 5, "PartitionKey": "k"}]},
            )

    def test_unknown_layout_is_left_alone(self) -> None:
        """A client whose serializer is not botocore's validated JSON serializer is not touched."""

        class Odd:
            _serializer = object()

        assert not install_put_records_serializer(Odd())
