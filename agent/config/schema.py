"""The key tables: every JSON key the agent accepts, its type, range and default's field.

Config is data: adding a key is a row here plus a field in model.py; values.py coerces by the row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.config.model import MIB


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

GLOBAL_BY_NAME = {k.name: k for k in GLOBAL_KEYS}
FLOW_BY_NAME = {k.name: k for k in FLOW_KEYS}
