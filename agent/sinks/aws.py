"""What the AWS sinks share: error translation into our tree, and the AwsSink base.

Clients come from agent.awsclient (credentials, endpoints, timeouts, user agent; botocore's own
retries off, so the sender's loop is the only layer that retries). A sink builds its client at
its first send, not when the flow starts: importing botocore and building a client is most of a
start-up (issue 14), and a run that sends nothing (``--once`` on files already shipped) needs
neither. What building could refuse from agent.json alone is checked when the configuration loads
(agent/config/endpoints.py); what remains (a region from the environment or a profile that
botocore refuses, say) fails the first send instead, as a FatalSinkError the sender shows.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from agent.errors import FatalSinkError, RetryableSinkError, SinkError
from agent.observability.metrics import FlowMetrics
from agent.records import Checkpoint, Record
from agent.sinks import SendResult
from agent.sinks.kpl import Aggregate

log = logging.getLogger(__name__)

# Error codes that waiting cannot fix (the request or the account is wrong). They are still retried,
# at the maximum backoff and loudly, so the data waits on disk until someone fixes the cause.
FATAL_CODES = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "IncompleteSignature",
        "InvalidArgumentException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSNotFoundException",
        "KMSOptInRequired",
        "MissingAuthenticationToken",
        "ResourceNotFoundException",
        "UnrecognizedClientException",
        "ValidationException",
        "InvalidParameterException",
        "SerializationException",
    }
)
# Codes that say "slow down or try again" even though some arrive with a 4xx status.
RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
        "KMSThrottlingException",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "ExpiredTokenException",  # refreshable credentials renew on the next call
        "RequestExpired",
    }
)


def translate_error(exc: BaseException, what: str) -> SinkError:
    """A boto3/botocore failure of a whole call as our error: retryable unless waiting cannot help."""
    import botocore.exceptions  # loaded already: the call that raised ``exc`` went through it

    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = str(err.get("Message", "")) or str(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = f"{what} failed: {code or status}: {message}"
        if code in RETRYABLE_CODES or status >= 500 or status == 429:
            return RetryableSinkError(text)
        if code in FATAL_CODES or 400 <= status < 500:
            return FatalSinkError(f"{text} (check the stream name, region and credentials)")
        return RetryableSinkError(text)
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.NoRegionError):
        return FatalSinkError(f"{what} failed: {exc} (configure credentials or a region)")
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return FatalSinkError(f"{what} failed: {exc}")
    if isinstance(exc, botocore.exceptions.BotoCoreError | OSError | TimeoutError):
        # Connection refused/reset/closed, timeouts, DNS: the network or the service will come back.
        return RetryableSinkError(f"{what} failed: {exc}")
    return RetryableSinkError(f"{what} failed: {type(exc).__name__}: {exc}")


class AwsSink:
    """What the Kinesis and Firehose sinks share: entries → calls within the API limits → results.

    A subclass turns records into entries (one per record, or aggregates) and makes one API call
    for a list of entries, returning each entry's error code or None. ``send`` cuts a batch into
    calls within the limits. A subclass may first ``route`` the batch into *lanes* that never
    share a shard (Kinesis with a shard map): each lane's calls go one after another, the lanes
    side by side, so one lane's call is at the service while another's is built or answered.

    Order: within a lane the calls go in order, and a lane stops at its first call that does not
    get everything through; what it did not deliver comes back in ``retry``, in order, ahead of
    anything of that lane sent later. So no shard ever takes a record before one queued ahead of
    it, however the lanes' calls interleave.
    """

    transactional = False
    packs_records = False
    api = ""
    max_call_entries = 500
    max_call_bytes = 5 * 1024 * 1024
    max_record_bytes: int
    max_batch_records: int
    max_batch_bytes: int
    max_send_records: int | None = None  # one batch per send unless a subclass overlaps calls
    max_send_bytes: int | None = None

    def __init__(
        self,
        client: Any,
        name: str,
        *,
        metrics: FlowMetrics | None = None,
        connect: Callable[[], Any] | None = None,
        endpoint: str | None = None,
    ) -> None:
        """``client``, or None and ``connect``: what builds it when it is first needed."""
        if client is None and connect is None:
            raise ValueError("an AWS sink needs a client or a way to build one")
        self._client = client
        self._connect = connect
        # Sends run their calls in worker threads, a send's lanes side by side: the first of
        # them to need the client builds it, the others wait for that one.
        self._connect_lock = threading.Lock()
        self.endpoint = endpoint
        self.name = name
        self.metrics = metrics
        self.closed = False

    def __repr__(self) -> str:
        endpoint = self.endpoint
        if self._client is not None:
            endpoint = getattr(getattr(self._client, "meta", None), "endpoint_url", endpoint)
        return f"{type(self).__name__}({self.name!r}, endpoint={endpoint!r})"

    @property
    def client(self) -> Any:
        """The botocore client, built on first use, once (blocking: call it from a worker thread
        where the event loop must not wait for it, as ``send`` does)."""
        client = self._client
        if client is None:
            with self._connect_lock:
                client = self._client
                if client is None:
                    assert self._connect is not None
                    client = self._client = self._connect()
        return client

    async def connected(self) -> SinkError | None:
        """Build the client if it is not built yet, in a worker thread; the error if it cannot be.

        Nothing in agent.json can be at fault (it was checked when it loaded) but the client's
        surroundings can: a region from AWS_REGION or a profile that is no region, a profile
        file that does not parse. Waiting does not fix those: a FatalSinkError, which the sender
        retries at its longest delay and shows (the flow ``failing``, its error logged).
        """
        if self._client is not None:
            return None
        try:
            await asyncio.to_thread(lambda: self.client)
        except Exception as exc:
            return FatalSinkError(
                f"{self.what}: cannot build the AWS client: {type(exc).__name__}: {exc}"
            )
        return None

    @property
    def what(self) -> str:
        return f"{self.api} to {self.name!r}"

    async def route(self, records: Sequence[Record]) -> list[Sequence[Record]]:
        """The batch as lanes that share no shard, each in its original order (default: one)."""
        return [records]

    def entries(self, records: Sequence[Record], lane: int = 0) -> list[Aggregate]:
        raise NotImplementedError

    def call(self, entries: Sequence[Aggregate]) -> list[str | None]:
        """One API call (runs in a worker thread); each entry's error code, None when accepted."""
        raise NotImplementedError

    def calls(self, entries: list[Aggregate]) -> list[list[Aggregate]]:
        """Split entries, in order, into calls within the entry-count and byte limits."""
        out: list[list[Aggregate]] = []
        current: list[Aggregate] = []
        size = 0
        for entry in entries:
            n = entry.size
            if current and (
                len(current) >= self.max_call_entries or size + n > self.max_call_bytes
            ):
                out.append(current)
                current, size = [], 0
            current.append(entry)
            size += n
        if current:
            out.append(current)
        return out

    async def send(
        self, records: Sequence[Record], checkpoints: Sequence[Checkpoint]
    ) -> SendResult:
        result = SendResult()
        if not records:
            return result
        error = await self.connected()
        if error is not None:
            return SendResult(retry=list(records), error=error)
        fatal_codes: set[str] = set()
        lanes = await self.route(records)
        if len(lanes) == 1:
            await self._send_lane(lanes[0], 0, result, fatal_codes)
        else:
            parts = [SendResult() for _ in lanes]
            async with asyncio.TaskGroup() as tg:
                for i, (lane, part) in enumerate(zip(lanes, parts, strict=True)):
                    if lane:
                        tg.create_task(self._send_lane(lane, i, part, fatal_codes))
            for part in parts:
                result.delivered.extend(part.delivered)
                result.retry.extend(part.retry)
                if result.error is None:
                    result.error = part.error
        if fatal_codes and result.error is None:
            result.error = FatalSinkError(
                f"{self.what}: entries refused with {', '.join(sorted(fatal_codes))}"
            )
        return result

    async def _send_lane(
        self, records: Sequence[Record], lane: int, result: SendResult, fatal_codes: set[str]
    ) -> None:
        """One lane's calls in order, until one does not deliver everything (see the class)."""
        m = self.metrics
        calls = self.calls(self.entries(records, lane))
        for i, chunk in enumerate(calls):
            attempted = sum(len(e.records) for e in chunk)
            try:
                codes = await asyncio.to_thread(self.call, chunk)
                if len(codes) != len(chunk):
                    raise RetryableSinkError(
                        f"{self.what}: answer has {len(codes)} entries for {len(chunk)} sent"
                    )
            except Exception as exc:
                result.error = (
                    exc if isinstance(exc, SinkError) else translate_error(exc, self.what)
                )
                if m is not None:  # the AWS agent's per-call metrics: the whole call failed
                    m.send_call(
                        attempted=attempted,
                        sent=0,
                        sent_bytes=0,
                        failed=attempted,
                        service_error=True,
                    )
                for rest in calls[i:]:
                    for entry in rest:
                        result.retry.extend(entry.records)
                return
            sent = failed = sent_bytes = 0
            for entry, code in zip(chunk, codes, strict=True):
                if code is None:
                    result.delivered.extend(entry.records)
                    sent += len(entry.records)
                    sent_bytes += entry.user_bytes
                else:
                    result.retry.extend(entry.records)
                    failed += len(entry.records)
                    if code in FATAL_CODES:
                        fatal_codes.add(code)
            if m is not None:
                m.send_call(
                    attempted=attempted,
                    sent=sent,
                    sent_bytes=sent_bytes,
                    failed=failed,
                    service_error=False,
                )
            if failed:
                # the rest of this lane waits behind the failed entries (per-shard order)
                for rest in calls[i + 1 :]:
                    for entry in rest:
                        result.retry.extend(entry.records)
                return

    def load_checkpoints(self, flow_id: str) -> list[Checkpoint]:
        return []  # not transactional: checkpoints live in the checkpoint database

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        close = getattr(self._client, "close", None)  # never built: nothing to close
        if close is not None:
            await asyncio.to_thread(close)
