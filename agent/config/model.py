"""What a configuration is: the frozen dataclasses the rest of the agent receives, and their defaults.

Field names are the JSON keys in snake_case (``maxBufferAgeMillis`` → ``max_buffer_age_millis``);
schema.py lists the keys, loading.py fills these from agent.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CONFIG = "/etc/agent.json"
DEFAULT_STATE_DIR = "/var/lib/kinesis-agent"
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """One entry of ``flows``: which files, how to frame and process them, where they go."""

    file_pattern: str
    kinesis_stream: str | None = None
    delivery_stream: str | None = None
    local_stream: str | None = None
    partition_key_option: str = "RANDOM"
    partition_key_field: str | None = None
    aggregated_record_size_bytes: int = 0
    aggregate_records: bool = False
    initial_position: str = "END_OF_FILE"
    max_buffer_age_millis: int = 60_000
    max_buffer_size_bytes: int = 5 * MIB
    max_buffer_size_records: int = 500
    min_time_between_file_polls_millis: int = 100
    max_time_between_file_tracker_refresh_millis: int = 10_000
    multi_line_start_pattern: str | None = None
    skip_header_lines: int = 0
    truncated_record_terminator: str = "\n"
    file_footer_pattern: str | None = None
    data_processing_options: tuple[Mapping[str, Any], ...] = ()
    retry_initial_backoff_millis: int = 100
    retry_max_backoff_millis: int = 10_000
    publish_queue_capacity: int = 100
    wait_on_full_publish_queue_millis: int = 60_000
    wait_on_empty_publish_queue_millis: int = 60_000
    log_emit_internal_metrics: bool = False
    # ours
    max_in_flight_bytes: int = 32 * MIB
    partial_line_flush_millis: int = 5_000
    # an idle file read to its end is closed after this long (0: never) and reopened by its
    # identity when it changes, so descriptors do not grow with every file ever matched
    close_inactive_millis: int = 300_000

    @property
    def destination_kind(self) -> str:
        if self.local_stream is not None:
            return "local"
        if self.delivery_stream is not None:
            return "firehose"
        return "kinesis"

    @property
    def stream_name(self) -> str:
        name = self.local_stream or self.delivery_stream or self.kinesis_stream
        assert name is not None
        return name

    @property
    def flow_id(self) -> str:
        """The AWS agent's flow id (``kinesis:<stream>:<pattern>``, ``fh:…``), ours ``local:…``."""
        prefix = {"kinesis": "kinesis", "firehose": "fh", "local": "local"}[self.destination_kind]
        return f"{prefix}:{self.stream_name}:{self.file_pattern}"

    @property
    def destination(self) -> str:
        """The CloudWatch ``Destination`` dimension value."""
        prefix = {
            "kinesis": "KinesisStream",
            "firehose": "DeliveryStream",
            "local": "LocalStream",
        }[self.destination_kind]
        return f"{prefix}:{self.stream_name}"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """The whole configuration: global keys and the flows."""

    flows: tuple[FlowConfig, ...]
    checkpoint_file: str = f"{DEFAULT_STATE_DIR}/checkpoints.db"
    checkpoint_time_to_live_days: int = 7
    checkpoints_query_timeout_seconds: int = 30
    checkpoints_connection_timeout_seconds: int = 5
    cloudwatch_emit_metrics: bool = True
    cloudwatch_endpoint: str | None = None
    cloudwatch_namespace: str = "AWSKinesisAgent"
    cloudwatch_tag_instance: bool = False
    cloudwatch_metrics_buffer_time_millis: int = 30_000
    cloudwatch_metrics_queue_size: int = 10_000
    kinesis_endpoint: str | None = None
    kinesis_region: str | None = None
    firehose_endpoint: str | None = None
    sts_endpoint: str | None = None
    assume_role_arn: str | None = None
    assume_role_external_id: str | None = field(default=None, repr=False)
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    user_defined_credentials_provider_classname: str | None = None
    user_defined_credentials_provider_location: str | None = None
    max_sending_threads: int | None = None
    max_sending_threads_per_core: int = 12
    sending_threads_keep_alive_millis: int = 60_000
    sending_threads_max_queue_size: int = 100
    max_connections: int | None = None
    connection_timeout_millis: int = 10_000
    socket_timeout_millis: int = 50_000
    connection_ttl_millis: int = -1
    use_tcp_keep_alive: bool = False
    use_http_gzip: bool = False
    user_agent: str | None = None
    user_agent_override: str | None = None
    shutdown_timeout_millis: int = 10_000
    log_emit_metrics: bool = False
    log_emit_internal_metrics: bool = False
    log_status_reporting_period_seconds: int = 30
    # ours
    local_store_directory: str = f"{DEFAULT_STATE_DIR}/streams"
    local_store_shard_count: int = 4
    local_store_retention_hours: int = 24
    local_store_listen: str | None = None
    local_store_access_key_id: str | None = field(default=None, repr=False)
    local_store_secret_access_key: str | None = field(default=None, repr=False)
    local_store_shard_limits: bool = False
    metrics_prometheus_listen: str | None = None
    processing_worker_process: bool = True
    status_socket: str | None = None
    sources: tuple[str, ...] = ()

    def flow(self, flow_id: str) -> FlowConfig:
        for f in self.flows:
            if f.flow_id == flow_id:
                return f
        raise KeyError(flow_id)
