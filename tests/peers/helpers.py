"""Reading back what the agent wrote: plain boto3 clients against the peers."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import boto3
import botocore.config


def aws_client(service: str, endpoint: str) -> Any:
    """A plain boto3 client for reading back what the agent wrote."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=botocore.config.Config(retries={"total_max_attempts": 3, "mode": "standard"}),
    )


def new_stream(endpoint: str, shards: int = 1) -> str:
    """A fresh stream (tests share one server), ACTIVE when this returns."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    client = aws_client("kinesis", endpoint)
    client.create_stream(StreamName=name, ShardCount=shards)
    client.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 200}
    )
    return name


def read_stream(endpoint: str, stream: str) -> dict[str, list[tuple[str, bytes]]]:
    """Every record of every shard, in shard order: {shard id: [(partition key, data), …]}."""
    client = aws_client("kinesis", endpoint)
    out: dict[str, list[tuple[str, bytes]]] = {}
    shards = client.list_shards(StreamName=stream)["Shards"]
    for shard in shards:
        it = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records: list[tuple[str, bytes]] = []
        while it:
            page = client.get_records(ShardIterator=it, Limit=10_000)
            if not page["Records"]:
                break
            records.extend((r["PartitionKey"], r["Data"]) for r in page["Records"])
            it = page.get("NextShardIterator")
        out[shard["ShardId"]] = records
    return out


def shard_ranges(endpoint: str, stream: str) -> dict[str, tuple[int, int]]:
    client = aws_client("kinesis", endpoint)
    return {
        s["ShardId"]: (
            int(s["HashKeyRange"]["StartingHashKey"]),
            int(s["HashKeyRange"]["EndingHashKey"]),
        )
        for s in client.list_shards(StreamName=stream)["Shards"]
    }


def deaggregate(stored: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """The user records in stored Kinesis records, as aws-kinesis-agg (an independent
    implementation of the KPL format) unpacks them."""
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    raw = [
        {
            "SequenceNumber": str(i),
            "PartitionKey": key,
            "ApproximateArrivalTimestamp": datetime.datetime.now(datetime.UTC),
            "Data": data,
        }
        for i, (key, data) in enumerate(stored)
    ]
    return list(iter_deaggregate_records(raw, data_format="Boto3"))
