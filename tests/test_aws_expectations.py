"""The AWS agent's own expectations, checked as its users see them: on the wire, in real processes."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from agent.store.store import StreamStore
from tests.peers.faultproxy import FaultProxy
from tests.peers.helpers import deaggregate, new_stream, read_stream
from tests.peers.servers import Peer
from tests.support.agent import run_agent, run_once
from tests.support.config import kinesis_config, logs_flow, state_config
from tests.support.streams import stored_lines

PUT_RECORDS = "Kinesis_20131202.PutRecords"


class TestUserAgentOnTheWire:
    @pytest.mark.parametrize(
        ("keys", "expected"),
        [
            ({}, r"kinesis-agent/\S+ Botocore/\S+( .*)?"),
            ({"userAgent": "fleet-7"}, r"fleet-7 kinesis-agent/\S+ Botocore/\S+( .*)?"),
            ({"userAgentOverride": "exactly-this"}, r"exactly-this"),
            ({"userAgent": "ignored", "userAgentOverride": "exactly-this"}, r"exactly-this"),
        ],
    )
    def test_header_as_the_server_receives_it(
        self, tmp_path: Path, kinesalite: Peer, keys: dict[str, str], expected: str
    ) -> None:
        """The product name then botocore's own string, as text (it went out as b'Botocore/…');
        ``userAgent`` is a prefix, ``userAgentOverride`` the whole header; CloudWatch's too."""
        stream = new_stream(kinesalite.endpoint)
        (tmp_path / "logs").mkdir()
        (tmp_path / "logs" / "app.log").write_bytes(b"one\ntwo\n")
        with FaultProxy(int(kinesalite.endpoint.rsplit(":", 1)[1])) as proxy:
            config = kinesis_config(
                tmp_path,
                proxy.endpoint,
                stream,
                **keys,
                **{"cloudwatch.emitMetrics": True, "cloudwatch.endpoint": proxy.endpoint},
            )
            run_once(config)
            seen = list(proxy.user_agents)
        assert sum(len(r) for r in read_stream(kinesalite.endpoint, stream).values()) == 2
        puts = [ua for target, ua in seen if target == PUT_RECORDS]
        metrics = [ua for target, ua in seen if not (target or "").startswith("Kinesis_")]
        assert puts and metrics, seen
        for ua in puts + metrics:
            assert ua is not None and re.fullmatch(expected, ua), ua
            assert "b'" not in ua


def local_config(tmp: Path, **flow: Any) -> Path:
    """One flow over tmp/logs/*.log into the local stream ``s``; ``flow`` are more keys of it."""
    return state_config(tmp, logs_flow(tmp, "s", **flow))


class TestRunOnce:
    def test_ships_a_file_whose_only_line_is_unterminated(self, tmp_path: Path) -> None:
        """Every matched file up to its current end: a lone unterminated line too, exactly once."""
        logs = tmp_path / "logs"
        logs.mkdir()
        (logs / "lone.log").write_bytes(b"only line, no newline")
        (logs / "tail.log").write_bytes(b"first\nsecond, unterminated")
        config = local_config(tmp_path)
        run_once(config)
        run_once(config)  # nothing new: nothing sent again
        assert sorted(stored_lines(tmp_path / "state" / "streams", "s")) == [
            b"first\n",
            b"only line, no newline",
            b"second, unterminated",
        ]


MIB = 1024 * 1024
CUT = b"[cut]\n"  # truncatedRecordTerminator, recognisable


class TestKinesisTruncation:
    @pytest.mark.parametrize(
        "flow",
        [
            {},
            {"partitionKeyOption": "DETERMINISTIC"},
            {"partitionKeyOption": "FIELD", "partitionKeyField": "user"},
            {"aggregateRecords": True},
            {"aggregateRecords": True, "partitionKeyOption": "DETERMINISTIC"},
        ],
    )
    def test_cut_record_with_its_key_is_exactly_1_mib(
        self, tmp_path: Path, kinesalite: Peer, flow: dict[str, Any]
    ) -> None:
        """A 2 MiB line arrives cut so that data + partition key is 1,048,576 bytes, ending with
        the terminator, for every key option and with aggregation (which sends it plain)."""
        stream = new_stream(kinesalite.endpoint)
        (tmp_path / "logs").mkdir()
        small = [b'{"user": "u1", "n": 1}\n', b'{"user": "u2", "n": 2}\n']
        (tmp_path / "logs" / "app.log").write_bytes(small[0] + b"x" * (2 * MIB) + b"\n" + small[1])
        config = kinesis_config(
            tmp_path,
            kinesalite.endpoint,
            stream,
            {**flow, "truncatedRecordTerminator": CUT.decode()},
        )
        run_once(config)
        stored = [kd for recs in read_stream(kinesalite.endpoint, stream).values() for kd in recs]
        big = [(k, d) for k, d in stored if len(d) > 1000]
        [(key, data)] = big
        assert len(data) + len(key.encode()) == MIB
        assert data.endswith(CUT) and data.startswith(b"xxxx")
        assert not data.startswith(b"\xf3\x89\x9a\xc2")  # a plain record, not an aggregate
        if flow.get("partitionKeyOption") == "DETERMINISTIC":
            assert len(key) == 32
        if flow.get("aggregateRecords"):  # what a KCL consumer gets: the plain one unchanged
            users = {  # an unaggregated record passes through as it is, without the flag
                (
                    base64.b64decode(u["kinesis"]["data"])
                    if u["kinesis"].get("aggregated")
                    else u["kinesis"]["data"]
                ): u["kinesis"].get("aggregated", False)
                for u in deaggregate(stored)
            }
            assert users == {small[0]: True, data: False, small[1]: True}
        else:
            assert sorted(d for _, d in stored if len(d) <= 1000) == small

    def test_a_long_field_key_cuts_the_data_not_the_key(
        self, tmp_path: Path, kinesalite: Peer
    ) -> None:
        """A record under 1 MiB whose FIELD key pushes it over keeps that key (its shard) and is
        cut to fit beside it (the key was replaced by an MD5 before)."""
        stream = new_stream(kinesalite.endpoint)
        (tmp_path / "logs").mkdir()
        user = "u" * 200
        head = b'{"user": "' + user.encode() + b'", "pad": "'
        line = head + b"p" * (MIB - 100 - len(head) - 3) + b'"}\n'
        assert len(line) + 200 > MIB and len(line) < MIB - 1
        (tmp_path / "logs" / "app.log").write_bytes(line)
        config = kinesis_config(
            tmp_path,
            kinesalite.endpoint,
            stream,
            {
                "partitionKeyOption": "FIELD",
                "partitionKeyField": "user",
                "truncatedRecordTerminator": CUT.decode(),
            },
        )
        done = run_once(config)
        [(key, data)] = [
            kd for recs in read_stream(kinesalite.endpoint, stream).values() for kd in recs
        ]
        assert key == user
        assert len(data) + len(key) == MIB and data.endswith(CUT)
        assert data[: len(head)] == head
        assert "over the 1 MiB limit; cut to fit" in done.stderr


README = Path(__file__).resolve().parent.parent / "README.md"


class TestReadmeSaysWhatHappens:
    def test_no_flows_refusal_is_shown_as_printed(self, tmp_path: Path) -> None:
        """The README's example of the no-flows refusal is the line the command prints."""
        config = tmp_path / "agent.json"
        config.write_text(json.dumps({"flows": []}))
        done = run_agent("check", "-c", str(config))
        assert done.returncode == 78
        printed = done.stderr.strip().replace(str(config), "/etc/agent.json")
        assert f"    {printed}\n" in README.read_text()

    def test_addbrackets_and_user_agent_are_described(self) -> None:
        """ADDBRACKETS' newline outside the braces and the product name in the User-Agent, as
        the README describes them to AWS users."""
        from agent.awsclient import user_agent_for
        from agent.config import AgentConfig
        from agent.processors import build_chain

        text = README.read_text()
        chain = build_chain(({"optionName": "ADDBRACKETS"},))
        assert chain(b"line\n") == b"{line}\n"
        assert "ADDBRACKETS writes `{line}` and then the newline" in text
        ua = user_agent_for(AgentConfig(flows=()), "Botocore/1.0")
        assert re.fullmatch(r"kinesis-agent/\S+ Botocore/1\.0", ua)
        assert "`User-Agent: kinesis-agent/<version> Botocore/…`" in text
        assert "`aws-kinesis-agent/<version>`" in text


class TestLocalStoreTruncation:
    @pytest.mark.parametrize(
        "flow",
        [{}, {"partitionKeyOption": "DETERMINISTIC"}],
    )
    def test_same_cut_as_kinesis(self, tmp_path: Path, flow: dict[str, Any]) -> None:
        """The embedded store takes what Kinesis takes: a 2 MiB line is stored cut to
        data + key = 1,048,576 bytes, ending with the terminator."""
        (tmp_path / "logs").mkdir()
        (tmp_path / "logs" / "app.log").write_bytes(b"a\n" + b"x" * (2 * MIB) + b"\nb\n")
        config = local_config(tmp_path, **flow, truncatedRecordTerminator=CUT.decode())
        run_once(config)
        with StreamStore.open(tmp_path / "state" / "streams", create=False) as store:
            stored = {r.data[:3]: r for r in store.read("s")}
        assert set(stored) == {b"a\n", b"xxx", b"b\n"}
        big = stored[b"xxx"]
        assert len(big.data) + len(big.partition_key) == MIB and big.data.endswith(CUT)

    def test_a_long_field_key_cuts_the_data_not_the_key(self, tmp_path: Path) -> None:
        """As into Kinesis: the FIELD key is kept, the data cut to fit beside it, and counted."""
        (tmp_path / "logs").mkdir()
        user = "u" * 200
        head = b'{"user": "' + user.encode() + b'", "pad": "'
        line = head + b"p" * (MIB - 100 - len(head) - 3) + b'"}\n'
        (tmp_path / "logs" / "app.log").write_bytes(line)
        config = local_config(
            tmp_path,
            partitionKeyOption="FIELD",
            partitionKeyField="user",
            truncatedRecordTerminator=CUT.decode(),
        )
        done = run_once(config)
        with StreamStore.open(tmp_path / "state" / "streams", create=False) as store:
            [record] = list(store.read("s"))
        assert record.partition_key == user
        assert len(record.data) + len(user) == MIB and record.data.endswith(CUT)
        assert "1 record(s) with a long partition key were over the 1 MiB limit" in done.stderr
