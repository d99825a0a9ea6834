"""CloudWatch metrics as the AWS agent publishes them: namespace, names, dimensions, statistic sets.

Every send call adds one value per metric (``FlowMetrics.send_call``); each period
(``cloudwatch.metricsBufferTimeMillis``, 30 s) the emitter takes those statistic sets per
(metric, dimensions) and sends them with PutMetricData. Failures never touch shipping.

Metrics never claim more than happened. A put that certainly stored nothing (no connection could
be made, or CloudWatch answered 4xx, e.g. throttled) is kept and merged into the next period
(bounded by ``cloudwatch.metricsQueueSize`` distinct keys). A put that may have landed (a timeout
after the request went out, a dropped answer, a 5xx) is dropped, counted (``datums_dropped``) and
logged, never sent again: CloudWatch does not deduplicate, it adds datapoints that share a
timestamp, so a resend (with or without a fixed timestamp) would count that period twice. Such a
gap under-reports one period; a resend could only over-report it. Warnings come at most once a
minute.

When to emit: ``cloudwatch.emitMetrics`` defaults to true as in AWS, but an agent whose flows all go
to the embedded store and that names no ``cloudwatch.endpoint`` has no AWS account to report to;
it does not try (no calls to AWS from a standalone install). Setting ``cloudwatch.endpoint`` turns
emission on for any configuration.

Batch size: PutMetricData takes up to 1,000 datums (and 1 MB) per request today; the AWS agent
still sends 20, the old limit. An agent emits five datums per flow per period, so 1,000 means one
request per period for up to 200 flows, which is the fewest billable requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from agent.config import AgentConfig
from agent.errors import MetricsNotSent
from agent.observability.metrics import SEND_METRICS, AgentMetrics, StatSet

log = logging.getLogger(__name__)

MAX_DATUMS_PER_REQUEST = 1000
UNITS = {"BytesSent": "Bytes"}
GAUGE_METRIC = "ConsecutiveProcessingErrors"
LOUD_EVERY = 60.0
FINAL_FLUSH_SECONDS = 10.0

Key = tuple[str, tuple[tuple[str, str], ...]]  # (metric name, dimensions)
PutMetricData = Callable[[str, list[dict[str, Any]]], None]


def should_emit(config: AgentConfig) -> bool:
    """On when enabled and there is somewhere to report: an endpoint, or an AWS destination."""
    if not config.cloudwatch_emit_metrics:
        return False
    if config.cloudwatch_endpoint:
        return True
    return any(f.local_stream is None for f in config.flows)


def instance_name() -> str:
    """The ``Instance`` dimension: the EC2 instance id when IMDS answers quickly, else the host name."""
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true":
        try:
            from agent.processors.ec2 import ImdsClient

            imds = ImdsClient("http://169.254.169.254", timeout=1.0)
            status, body = imds.get("/latest/meta-data/instance-id")
            if status == 200 and body:
                return body.decode("ascii", "replace").strip()
        except Exception:  # not on EC2, or IMDS off: the host name is what AWS falls back to
            pass
    return socket.gethostname()


def region_for(config: AgentConfig) -> str:
    """The endpoint's region, else ``kinesis.region``, else the SDK's chain (as the AWS agent)."""
    from agent.config.endpoints import DEFAULT_REGION, region_from_endpoint

    return (
        region_from_endpoint(config.cloudwatch_endpoint)
        or config.kinesis_region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or DEFAULT_REGION
    )


def boto_put_metric_data(config: AgentConfig, *, read_timeout: float = 5.0) -> PutMetricData:
    """PutMetricData on a client with the sinks' credentials (keys, chain, assumed role).

    One attempt per call (botocore's own retries would resend a put that may have landed), short
    timeouts: the last flush at exit (bounded at 10 s) never waits on a stuck call. Raises
    MetricsNotSent when the put certainly stored nothing; anything else may have landed.
    """
    import botocore.config
    import botocore.exceptions

    from agent.awsclient import install_user_agent, make_session

    region = region_for(config)
    client = make_session(config, region).create_client(
        "cloudwatch",
        region_name=region,
        endpoint_url=config.cloudwatch_endpoint or None,
        config=botocore.config.Config(
            region_name=region,
            connect_timeout=3,
            read_timeout=read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
        ),
    )
    install_user_agent(client, config)  # the same product name as the sinks' calls

    def put(namespace: str, datums: list[dict[str, Any]]) -> None:
        try:
            client.put_metric_data(Namespace=namespace, MetricData=datums)
        except (
            botocore.exceptions.ConnectionError,  # could not connect: nothing went out
            botocore.exceptions.NoCredentialsError,
            botocore.exceptions.ParamValidationError,
        ) as exc:
            raise MetricsNotSent(str(exc)) from exc
        except botocore.exceptions.ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if 400 <= status < 500:  # refused as a whole: nothing of it was stored
                raise MetricsNotSent(str(exc)) from exc
            raise

    return put


class CloudWatchEmitter:
    """Collects the flows' per-call statistic sets and sends them every period."""

    def __init__(
        self,
        config: AgentConfig,
        metrics: AgentMetrics,
        *,
        put: PutMetricData | None = None,
        instance: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.namespace = config.cloudwatch_namespace
        self.period = config.cloudwatch_metrics_buffer_time_millis / 1000
        self.max_keys = config.cloudwatch_metrics_queue_size
        self._put = put
        self._instance = instance
        self._clock = clock
        self.pending: dict[Key, StatSet] = {}
        self.datums_sent = 0
        self.requests_sent = 0
        self.failures = 0
        self.datums_dropped = 0  # in puts that may have landed: never sent again
        self._last_loud = float("-inf")
        self._lock = asyncio.Lock()

    def _dimensions(self, destination: str) -> tuple[tuple[str, str], ...]:
        if self.config.cloudwatch_tag_instance:
            if self._instance is None:
                self._instance = instance_name()
            # as AWS: with tagInstance the metrics go out only with both dimensions
            return (("Destination", destination), ("Instance", self._instance))
        return (("Destination", destination),)

    def collect(self) -> None:
        """Move every flow's statistic sets into ``pending``, with one sample of its gauge.

        ``ConsecutiveProcessingErrors`` (the stuck-flow gauge) is sampled once per period for
        every flow with an AWS destination, under the same ``Destination`` dimension as the
        send metrics (the AWS agent uses the bare stream name there, so its gauge cannot be
        put on one graph with them).
        """
        for m in self.metrics.flows.values():
            taken = m.take_send_stats()
            dims = self._dimensions(m.destination)
            if not m.destination.startswith("LocalStream:"):
                gauge = StatSet()
                gauge.add(m.consecutive_errors)
                taken[GAUGE_METRIC] = gauge
            for name in (*SEND_METRICS, GAUGE_METRIC):
                stats = taken.get(name)
                if stats is None or stats.count == 0:
                    continue
                key = (name, dims)
                existing = self.pending.get(key)
                if existing is None:
                    if len(self.pending) >= self.max_keys:
                        self._loud(
                            "CloudWatch metrics queue full (%d); dropping %s", self.max_keys, key
                        )
                        continue
                    existing = self.pending[key] = StatSet()
                existing.merge(stats)

    def datums(self) -> list[tuple[Key, dict[str, Any]]]:
        out = []
        for key, s in self.pending.items():
            name, dims = key
            out.append(
                (
                    key,
                    {
                        "MetricName": name,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                        "StatisticValues": {
                            "SampleCount": float(s.count),
                            "Sum": float(s.sum),
                            "Minimum": float(s.min),
                            "Maximum": float(s.max),
                        },
                        "Unit": UNITS.get(name, "Count"),
                    },
                )
            )
        return out

    async def flush(self) -> bool:
        """Send what is pending; True when nothing is left (all sent, or nothing to send)."""
        async with self._lock:
            if self.config.cloudwatch_tag_instance and self._instance is None:
                self._instance = await asyncio.to_thread(instance_name)  # IMDS: off the loop
            self.collect()
            items = self.datums()
            if not items:
                return True
            if self._put is None:
                try:
                    self._put = await asyncio.to_thread(boto_put_metric_data, self.config)
                except Exception as exc:
                    self._failed(exc)
                    return False
            put = self._put
            for start in range(0, len(items), MAX_DATUMS_PER_REQUEST):
                chunk = items[start : start + MAX_DATUMS_PER_REQUEST]
                try:
                    await asyncio.to_thread(put, self.namespace, [d for _, d in chunk])
                except MetricsNotSent as exc:
                    self._failed(exc)
                    return False  # all of it stays pending and merges into the next period
                except Exception as exc:
                    # It may have landed: sending it again could count it twice (module doc).
                    for key, _ in chunk:
                        self.pending.pop(key, None)
                    self.datums_dropped += len(chunk)
                    self.failures += 1
                    self._loud(
                        "CloudWatch metrics to %s may or may not have been stored (%s): dropped "
                        "%d datum(s) rather than risk counting them twice (%d so far); "
                        "shipping is unaffected",
                        self.config.cloudwatch_endpoint or "CloudWatch",
                        _one_line(exc),
                        len(chunk),
                        self.datums_dropped,
                    )
                    return False  # the chunks not tried stay pending
                for key, _ in chunk:
                    self.pending.pop(key, None)
                self.datums_sent += len(chunk)
                self.requests_sent += 1
            return True

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._loud(
            "cannot publish CloudWatch metrics to %s: %s (kept for the next period; shipping is unaffected)",
            self.config.cloudwatch_endpoint or "CloudWatch",
            exc,
        )

    def _loud(self, msg: str, *args: object) -> None:
        now = self._clock()
        if now - self._last_loud >= LOUD_EVERY:
            self._last_loud = now
            log.warning(msg, *args)

    async def run(self) -> None:
        """Flush every period until cancelled."""
        while True:
            await asyncio.sleep(self.period)
            await self.flush()

    async def final_flush(self, timeout: float = FINAL_FLUSH_SECONDS) -> None:
        """At exit (and after ``run --once``): one last send, bounded so exit never hangs."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.flush()


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
