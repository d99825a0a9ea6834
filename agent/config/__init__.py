"""agent.json (+ agent.d/*.json) → frozen dataclasses, once; every error names its JSON path.

Every key of the AWS Kinesis Agent is accepted with its default and range, comments are allowed and
numbers/booleans may be strings (as AWS). Unlike AWS, an unknown or misplaced key is an error that
names the nearest valid key. Keys that mean nothing here are accepted with a warning.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from agent.config.jsonfile import ConfigBudget, extra_config_files, read_config_file
from agent.errors import ConfigError

log = logging.getLogger(__name__)

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


# --- key tables -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Key:
    """One JSON key: its field, type, range and whether it is only accepted with a warning."""

    name: str
    kind: str  # int | bool | str | enum | list | regex | any
    lo: int | None = None
    hi: int | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False
    ignored: str | None = None  # accepted with this warning, no effect
    only: tuple[str, ...] = ()  # destination kinds this flow key applies to
    clamp: bool = False  # out of [lo, hi] is moved into it with a warning (AWS has no range there)

    @property
    def field(self) -> str:
        return _snake(self.name)


def _snake(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name.replace(".", "_"))
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", s).lower()


_NO_EFFECT = "has no effect in this agent"
GLOBAL_KEYS: tuple[Key, ...] = (
    Key("flows", "list"),
    Key("checkpointFile", "str"),
    Key("checkpointTimeToLiveDays", "int", 1, 3650),
    Key("checkpoints.queryTimeoutSeconds", "int", 1, 3600),
    Key("checkpoints.connectionTimeoutSeconds", "int", 1, 3600, ignored=_NO_EFFECT),
    Key("cloudwatch.emitMetrics", "bool"),
    Key("cloudwatch.endpoint", "str"),
    Key("cloudwatch.namespace", "str"),
    Key("cloudwatch.tagInstance", "bool"),
    # The AWS agent reads it with no range check and its sample sets 25, so every integer is
    # accepted; the period is clamped to CloudWatch's finest resolution (1 s, high-resolution
    # metrics; finer only multiplies PutMetricData calls against the account's TPS quota) and
    # its coarsest retained one (1 h: statistic sets held longer land as one datapoint).
    Key("cloudwatch.metricsBufferTimeMillis", "int", 1000, 3_600_000, clamp=True),
    Key("cloudwatch.metricsQueueSize", "int", 1, 1_000_000),
    Key("kinesis.endpoint", "str"),
    Key("kinesis.region", "str"),
    Key("firehose.endpoint", "str"),
    Key("sts.endpoint", "str"),
    Key("assumeRoleARN", "str"),
    Key("assumeRoleExternalId", "str"),
    Key("awsAccessKeyId", "str"),
    Key("awsSecretAccessKey", "str"),
    Key(
        "userDefinedCredentialsProvider.classname",
        "str",
        ignored="Java credential providers cannot be loaded; use the standard credential chain",
    ),
    Key(
        "userDefinedCredentialsProvider.location",
        "str",
        ignored="Java credential providers cannot be loaded; use the standard credential chain",
    ),
    Key(
        "maxSendingThreads",
        "int",
        1,
        10_000,
        ignored="sending is asynchronous here; no thread pool to size",
    ),
    Key(
        "maxSendingThreadsPerCore",
        "int",
        1,
        1000,
        ignored="sending is asynchronous here; no thread pool to size",
    ),
    Key(
        "sendingThreadsKeepAliveMillis",
        "int",
        0,
        3_600_000,
        ignored="sending is asynchronous here; no thread pool to size",
    ),
    Key(
        "sendingThreadsMaxQueueSize",
        "int",
        1,
        1_000_000,
        ignored="sending is asynchronous here; no thread pool to size",
    ),
    Key("maxConnections", "int", 1, 10_000),
    Key("connectionTimeoutMillis", "int", 1, 3_600_000),
    Key("socketTimeoutMillis", "int", 1, 3_600_000),
    Key("connectionTTLMillis", "int", -1, 86_400_000),
    Key("useTcpKeepAlive", "bool"),
    Key("useHttpGzip", "bool", ignored="HTTP gzip is not supported by the AWS APIs used here"),
    Key("userAgent", "str"),
    Key("userAgentOverride", "str"),
    Key("shutdownTimeoutMillis", "int", 0, 3_600_000),
    Key("log.emitMetrics", "bool"),
    Key("log.emitInternalMetrics", "bool"),
    Key("log.statusReportingPeriodSeconds", "int", 1, 86_400),
    Key(
        "log.level",
        "str",
        ignored="removed from the AWS agent in 2018; set the level with --log-level",
    ),
    Key(
        "log.file",
        "str",
        ignored="removed from the AWS agent in 2018; logs go to journald or stderr",
    ),
    Key("log.maxBackupIndex", "int", ignored="removed from the AWS agent in 2018"),
    Key("log.maxFileSize", "int", ignored="removed from the AWS agent in 2018"),
    Key("localStore.directory", "str"),
    Key("localStore.shardCount", "int", 1, 1024),
    Key("localStore.retentionHours", "int", 1, 8760),
    Key("localStore.listen", "str"),
    Key("localStore.accessKeyId", "str"),
    Key("localStore.secretAccessKey", "str"),
    Key("localStore.shardLimits", "bool"),
    Key("metrics.prometheusListen", "str"),
    Key("processing.workerProcess", "bool"),
    Key("statusSocket", "str"),
)

_KDS_LOCAL = ("kinesis", "local")
FLOW_KEYS: tuple[Key, ...] = (
    Key("filePattern", "str"),
    Key("kinesisStream", "stream"),
    Key("deliveryStream", "stream"),
    Key("localStream", "stream"),
    Key(
        "partitionKeyOption", "enum", choices=("RANDOM", "DETERMINISTIC", "FIELD"), only=_KDS_LOCAL
    ),
    Key("partitionKeyField", "str", only=_KDS_LOCAL),
    Key("aggregatedRecordSizeBytes", "int", 0, 1_024_000, only=("firehose",)),
    Key("aggregateRecords", "bool", only=("kinesis",)),
    Key("initialPosition", "enum", choices=("START_OF_FILE", "END_OF_FILE")),
    Key("maxBufferAgeMillis", "int", 1000, 900_000),
    Key("maxBufferSizeBytes", "int", 1, 5 * MIB),
    Key("maxBufferSizeRecords", "int", 1, 500),
    Key("minTimeBetweenFilePollsMillis", "int", 1, 3_600_000),
    Key("maxTimeBetweenFileTrackerRefreshMillis", "int", 1, 3_600_000),
    Key("multiLineStartPattern", "regex"),
    Key("skipHeaderLines", "int", 0, 1_000_000),
    Key("truncatedRecordTerminator", "str"),
    Key("fileFooterPattern", "regex"),
    Key("dataProcessingOptions", "list"),
    Key("retryInitialBackoffMillis", "int", 1, 3_600_000),
    Key("retryMaxBackoffMillis", "int", 1, 3_600_000),
    Key("publishQueueCapacity", "int", 1, 1_000_000),
    Key(
        "waitOnFullPublishQueueMillis",
        "int",
        1000,
        900_000,
        ignored="the tailer waits for room instead",
    ),
    Key("waitOnEmptyPublishQueueMillis", "int", 1000, 900_000),
    Key("waitOnFullRetryQueueMillis", "int", ignored="never read by the AWS agent either"),
    Key("log.emitInternalMetrics", "bool"),
    Key("maxInFlightBytes", "int", 64 * 1024, 4096 * MIB),
    Key("partialLineFlushMillis", "int", 0, 3_600_000),
    Key("closeInactiveMillis", "int", 0, 86_400_000),
)

_GLOBAL_BY_NAME = {k.name: k for k in GLOBAL_KEYS}
_FLOW_BY_NAME = {k.name: k for k in FLOW_KEYS}
_STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
_TRUE = {"true", "yes", "t", "y", "1"}
_FALSE = {"false", "no", "f", "n", "0"}


# --- loading ----------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str] | None = None) -> AgentConfig:
    """Read agent.json and every ``agent.d/*.json`` beside it; raise ConfigError on anything wrong.

    Nothing else escapes: ``check`` and ``run`` exit 78 on a ConfigError, and a SIGHUP reload keeps
    the running configuration, so an unforeseen failure while validating is reported as one too.
    """
    main_path = Path(path if path is not None else DEFAULT_CONFIG)
    try:
        return _load(main_path)
    except ConfigError:
        raise
    except Exception as exc:
        log.debug("validating %s failed unexpectedly", main_path, exc_info=True)
        raise ConfigError(
            "",
            f"cannot be validated (internal error {type(exc).__name__}: {exc}); please report it",
            source=str(main_path),
        ) from exc


def _load(main_path: Path) -> AgentConfig:
    budget = ConfigBudget()
    doc = read_config_file(main_path, budget)
    if not isinstance(doc, dict):
        raise ConfigError(
            "",
            f"the configuration must be a JSON object, not {_typename(doc)}",
            source=str(main_path),
        )
    sources = [str(main_path)]
    flow_docs: list[tuple[Any, str, str]] = []
    raw_flows = doc.get("flows", [])
    if not isinstance(raw_flows, list):
        raise ConfigError(
            "flows",
            f"must be a list of flow objects, not {_typename(raw_flows)}",
            source=str(main_path),
        )
    flow_docs += [(f, f"flows[{i}]", str(main_path)) for i, f in enumerate(raw_flows)]
    for extra in extra_config_files(main_path):
        extra_doc = read_config_file(extra, budget)
        if not isinstance(extra_doc, dict):
            raise ConfigError(
                "",
                f"must be a JSON object with a 'flows' list, not {_typename(extra_doc)}",
                source=str(extra),
            )
        for key in extra_doc:
            if key != "flows":
                raise ConfigError(key, "agent.d files may only contain 'flows'", source=str(extra))
        more = extra_doc.get("flows", [])
        if not isinstance(more, list):
            raise ConfigError(
                "flows",
                f"must be a list of flow objects, not {_typename(more)}",
                source=str(extra),
            )
        flow_docs += [(f, f"flows[{i}]", str(extra)) for i, f in enumerate(more)]
        sources.append(str(extra))
    return parse_config(doc, flow_docs, source=str(main_path), sources=tuple(sources))


def parse_config(
    doc: Mapping[str, Any],
    flow_docs: Sequence[tuple[Any, str, str]] | None = None,
    *,
    source: str | None = None,
    sources: tuple[str, ...] = (),
) -> AgentConfig:
    """Validate an already-parsed document (``flow_docs`` lets agent.d flows carry their own file)."""
    values: dict[str, Any] = {}
    for name, raw in doc.items():
        if name == "flows":
            continue
        key = _GLOBAL_BY_NAME.get(name)
        if key is None:
            if name in _FLOW_BY_NAME:
                raise ConfigError(
                    name, "is a per-flow key; move it inside each entry of 'flows'", source=source
                )
            raise ConfigError(
                name, f"unknown key{_did_you_mean(name, _GLOBAL_BY_NAME)}", source=source
            )
        value = _coerce(key, raw, name, source)
        if key.ignored:
            log.warning("%s: %s %s", name, "accepted but", key.ignored)
            continue
        if value is not None:  # null means "not set" (the default), as in the AWS agent
            values[key.field] = value
    if flow_docs is None:
        raw_flows = doc.get("flows", [])
        if not isinstance(raw_flows, list):
            raise ConfigError(
                "flows",
                f"must be a list of flow objects, not {_typename(raw_flows)}",
                source=source,
            )
        flow_docs = [(f, f"flows[{i}]", source or "") for i, f in enumerate(raw_flows)]
    if not flow_docs:
        raise ConfigError("flows", "no flows are configured; add at least one flow", source=source)
    flows: list[FlowConfig] = []
    seen: dict[str, str] = {}
    for raw_flow, path, flow_source in flow_docs:
        flow = _parse_flow(raw_flow, path, flow_source or None)
        if flow.flow_id in seen:
            raise ConfigError(
                path,
                f"duplicates the flow at {seen[flow.flow_id]} (same destination and filePattern)",
                source=flow_source or None,
            )
        seen[flow.flow_id] = path
        flows.append(flow)
    _check_global_values(values, source)
    return AgentConfig(flows=tuple(flows), sources=sources, **values)


# A Unix socket path, NUL included, fits in sockaddr_un.sun_path (108 bytes on Linux).
_MAX_SOCKET_PATH = 107
_PATH_FIELDS = ("checkpoint_file", "local_store_directory", "status_socket")


def _check_global_values(values: Mapping[str, Any], source: str | None) -> None:
    """What only fails once the agent runs, caught here so that ``check`` and exit 78 see it."""
    for name in _PATH_FIELDS:
        if "\x00" in (values.get(name) or ""):
            raise ConfigError(_camel_key(name), "must not contain a NUL character", source=source)
    socket = values.get("status_socket")
    if socket is not None and len(os.fsencode(socket)) > _MAX_SOCKET_PATH:
        raise ConfigError(
            "statusSocket",
            f"is {len(os.fsencode(socket))} bytes long; a Unix socket path may have at most "
            f"{_MAX_SOCKET_PATH}",
            source=source,
        )
    listen = values.get("metrics_prometheus_listen")
    if listen is not None:
        from agent.observability.prometheus import parse_listen

        try:
            parse_listen(listen)
        except ConfigError as exc:
            raise ConfigError(exc.path, exc.message, source=source) from None
    # here, not when the endpoint starts: check must refuse what run refuses, and a reload with
    # a malformed address must apply nothing rather than everything but the endpoint
    endpoint_listen = values.get("local_store_listen")
    if endpoint_listen:
        from agent.endpoint.server import parse_listen as parse_endpoint_listen

        try:
            parse_endpoint_listen(endpoint_listen)
        except ValueError as exc:
            raise ConfigError("localStore.listen", str(exc), source=source) from None


def _camel_key(field_name: str) -> str:
    return next(k.name for k in GLOBAL_KEYS if k.field == field_name)


def _parse_flow(raw: Any, path: str, source: str | None) -> FlowConfig:
    if not isinstance(raw, dict):
        raise ConfigError(path, f"must be a flow object, not {_typename(raw)}", source=source)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = _FLOW_BY_NAME.get(name)
        here = f"{path}.{name}"
        if key is None:
            if name in _GLOBAL_BY_NAME:
                raise ConfigError(
                    here,
                    "is a global key; move it to the top level of the configuration",
                    source=source,
                )
            raise ConfigError(
                here, f"unknown key{_did_you_mean(name, _FLOW_BY_NAME)}", source=source
            )
        coerced = _coerce(key, value, here, source)
        if key.ignored:
            log.warning("%s: accepted but %s", here, key.ignored)
            continue
        if coerced is not None:  # null means "not set" (the default), as in the AWS agent
            values[key.field] = coerced
    destinations = [
        k
        for k in ("kinesis_stream", "delivery_stream", "local_stream")
        if values.get(k) is not None
    ]
    if not destinations:
        raise ConfigError(
            path,
            "has no destination; set one of kinesisStream, deliveryStream or localStream",
            source=source,
        )
    if len(destinations) > 1:
        names = ", ".join(_camel(d) for d in destinations)
        raise ConfigError(
            path,
            f"has {len(destinations)} destinations ({names}); a flow ships to exactly one",
            source=source,
        )
    if "file_pattern" not in values:
        raise ConfigError(
            f"{path}.filePattern", "is required (a glob of the files to tail)", source=source
        )
    pattern = values["file_pattern"]
    if "\x00" in pattern:
        raise ConfigError(f"{path}.filePattern", "must not contain a NUL character", source=source)
    if not pattern.startswith("/"):
        raise ConfigError(
            f"{path}.filePattern", f"must be an absolute path, not {pattern!r}", source=source
        )
    if pattern.endswith("/"):
        raise ConfigError(f"{path}.filePattern", "must name files, not end with '/'", source=source)
    kind = {"kinesis_stream": "kinesis", "delivery_stream": "firehose", "local_stream": "local"}[
        destinations[0]
    ]
    for name in raw:
        key = _FLOW_BY_NAME[name]
        if key.only and kind not in key.only:
            log.warning(
                "%s.%s: applies only to %s flows; ignored for this one",
                path,
                name,
                " and ".join(key.only),
            )
            values.pop(key.field, None)
    max_bytes = 4 * MIB if kind == "firehose" else 5 * MIB
    if "max_buffer_size_bytes" not in values:
        values["max_buffer_size_bytes"] = max_bytes
    elif values["max_buffer_size_bytes"] > max_bytes:
        raise ConfigError(
            f"{path}.maxBufferSizeBytes",
            f"must be at most {max_bytes} for this destination, got {values['max_buffer_size_bytes']}",
            source=source,
        )
    if values.get("partition_key_option") == "FIELD" and not values.get("partition_key_field"):
        raise ConfigError(
            f"{path}.partitionKeyField",
            "is required when partitionKeyOption is FIELD",
            source=source,
        )
    terminator = values.get("truncated_record_terminator", "\n")
    if len(terminator.encode()) >= 1000 * 1024:
        raise ConfigError(
            f"{path}.truncatedRecordTerminator",
            "must be shorter than the record size limit",
            source=source,
        )
    if values.get("retry_max_backoff_millis", 10_000) < values.get(
        "retry_initial_backoff_millis", 100
    ):
        raise ConfigError(
            f"{path}.retryMaxBackoffMillis",
            "must not be smaller than retryInitialBackoffMillis",
            source=source,
        )
    options = values.get("data_processing_options", ())
    values["data_processing_options"] = _check_processing(
        options, f"{path}.dataProcessingOptions", source
    )
    return FlowConfig(**values)


def _check_processing(options: Any, path: str, source: str | None) -> tuple[Mapping[str, Any], ...]:
    from agent.processors import build_chain

    for i, option in enumerate(options):
        if not isinstance(option, dict):
            raise ConfigError(
                f"{path}[{i}]",
                f"must be an object with 'optionName', not {_typename(option)}",
                source=source,
            )
    frozen = tuple(dict(o) for o in options)
    try:
        build_chain(frozen, path=path)
    except ConfigError as exc:
        raise ConfigError(exc.path, exc.message, source=source) from None
    return frozen


def _coerce(key: Key, raw: Any, path: str, source: str | None) -> Any:
    def bad(msg: str) -> ConfigError:
        return ConfigError(path, msg, source=source)

    if raw is None:
        if key.nullable or key.kind in {"str", "stream", "regex"}:
            return None
        raise bad(f"must be {_expect(key)}, not null")
    if key.kind == "int":
        value: Any
        if isinstance(raw, bool):
            raise bad(f"must be {_expect(key)}, not a boolean")
        if isinstance(raw, int):
            value = raw
        elif (isinstance(raw, float) and raw.is_integer()) or (
            isinstance(raw, str) and re.fullmatch(r"\s*[-+]?\d+\s*", raw)
        ):
            value = int(raw)
        else:
            raise bad(f"must be {_expect(key)}, not {raw!r}")
        if (key.lo is not None and value < key.lo) or (key.hi is not None and value > key.hi):
            if not key.clamp:
                raise bad(f"must be {_expect(key)}, got {value}")
            lo = value if key.lo is None else key.lo
            hi = value if key.hi is None else key.hi
            used = min(max(value, lo), hi)
            log.warning("%s: %d is outside %d to %d; using %d", path, value, lo, hi, used)
            return used
        return value
    if key.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        raise bad(f"must be a boolean (true/false), not {raw!r}")
    if key.kind in {"str", "stream", "regex", "enum"}:
        if not isinstance(raw, str):
            raise bad(f"must be a string, not {_typename(raw)}")
        if key.kind == "stream" and not _STREAM_NAME.fullmatch(raw):
            raise bad(f"{raw!r} is not a valid stream name (1-128 of a-z A-Z 0-9 _ . -)")
        if key.kind == "enum" and raw not in key.choices:
            hint = _did_you_mean(raw, dict.fromkeys(key.choices), cutoff=0.3)
            raise bad(
                f"must be one of {', '.join(key.choices)} (case-sensitive), not {raw!r}{hint}"
            )
        if key.kind == "regex":
            from agent.processors._base import compile_regex

            # the agent matches it against the file's bytes, where \u and \N{} do not exist
            try:
                compile_regex(raw.encode(), path)
            except ConfigError as exc:
                raise bad(f"{exc.message} (it is matched against bytes)") from None
        return raw
    if key.kind == "list":
        if not isinstance(raw, list):
            raise bad(f"must be a list, not {_typename(raw)}")
        return tuple(raw)
    return raw


def _expect(key: Key) -> str:
    if key.kind == "int":
        if key.lo is not None and key.hi is not None:
            return f"an integer from {key.lo} to {key.hi}"
        return "an integer"
    return f"a {key.kind}"


def _did_you_mean(name: str, valid: Mapping[str, Any], cutoff: float = 0.6) -> str:
    lowered = {k.lower(): k for k in valid}
    if name.lower() in lowered:
        return f"; did you mean {lowered[name.lower()]!r}? (keys are case-sensitive)"
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


def _typename(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), "a number")


def _camel(field_name: str) -> str:
    head, *rest = field_name.split("_")
    return head + "".join(p.title() for p in rest)


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def expand_user_paths(config: AgentConfig, resolve: Callable[[str], str]) -> AgentConfig:
    """Return a copy with state paths passed through ``resolve`` (used by the demo)."""
    from dataclasses import replace

    return replace(
        config,
        checkpoint_file=resolve(config.checkpoint_file),
        local_store_directory=resolve(config.local_store_directory),
    )
