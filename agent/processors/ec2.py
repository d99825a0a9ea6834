"""ADDEC2METADATA: merge the instance's identity (and tags) into each JSON record.

The metadata comes from the instance metadata service with the IMDSv2 token protocol (PUT a token,
then GET with it; IMDSv1 only when the service has no token endpoint). It is fetched lazily on a
background thread with short timeouts and cached for ``metadataTTL`` seconds; the first record waits
at most ``FIRST_WAIT_SECONDS`` for it, later refreshes never delay a record (the old values are
used meanwhile). Off EC2 the records pass unchanged and one warning says why.

Tags come from IMDS (``/latest/meta-data/tags/instance``, when instance tags in metadata are on),
else from EC2 DescribeTags when ``describeTags`` is true and the default AWS credential chain has
``ec2:DescribeTags``; without either, records carry no ``tags``. Tag keys are lower-cased, as AWS.

Options: ``metadataTTL`` (3600 s), ``jsonFormat``, ``logFormat`` (accepted and ignored: AWS
requires it), and ours: ``endpoint`` (else ``$KINESIS_AGENT_IMDS_ENDPOINT``, else
http://169.254.169.254), ``timeoutMillis`` per request (1000), ``describeTags`` (true).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from agent.errors import ConfigError
from agent.processors._base import (
    PassRaw,
    Processor,
    check_keys,
    get_bool,
    get_number,
    get_str,
    json_options,
)

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://169.254.169.254"
ENDPOINT_ENV = "KINESIS_AGENT_IMDS_ENDPOINT"
FIRST_WAIT_SECONDS = 2.0
RETRY_AFTER_SECONDS = 300.0
TOKEN_TTL_SECONDS = 21600
_MAX_BODY = 1 << 20

# instance-identity document key → our field name (the AWS agent's names)
_IDENTITY_FIELDS = (
    ("privateIp", "privateIp"),
    ("availabilityZone", "availabilityZone"),
    ("instanceId", "instanceId"),
    ("instanceType", "instanceType"),
    ("accountId", "accountId"),
    ("imageId", "amiId"),
    ("region", "region"),
)

Ec2ClientFactory = Callable[[str], Any]


class ImdsUnavailable(Exception):
    """The metadata service did not answer usefully (not on EC2, disabled, or too slow)."""


class ImdsClient:
    """A minimal IMDSv2 client over http.client: one short-lived connection per request."""

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"IMDS endpoint must be http://host[:port], not {endpoint!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._timeout = timeout
        self._clock = clock
        self._token: str | None = None
        self._token_expires = float("-inf")

    def _request(self, method: str, path: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        # http.client (and the email package under it, ~7 ms) loads with the first request: every
        # flow imports this module, few use ADDEC2METADATA
        import http.client

        conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            conn.request(method, path, headers=dict(headers))
            response = conn.getresponse()
            return response.status, response.read(_MAX_BODY)
        except (OSError, http.client.HTTPException) as exc:
            raise ImdsUnavailable(f"{method} {path}: {exc or type(exc).__name__}") from exc
        finally:
            conn.close()

    def _session_token(self) -> str | None:
        if self._token is not None and self._clock() < self._token_expires:
            return self._token
        status, body = self._request(
            "PUT",
            "/latest/api/token",
            {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)},
        )
        if status == 200 and body:
            self._token = body.decode("ascii", "replace").strip()
            self._token_expires = self._clock() + TOKEN_TTL_SECONDS - 60
            return self._token
        if status in (404, 405):
            return None  # an IMDS without tokens (IMDSv1 only)
        raise ImdsUnavailable(f"token request answered HTTP {status}")

    def get(self, path: str) -> tuple[int, bytes]:
        """GET a metadata path with the session token; a rejected token is renewed once."""
        token = self._session_token()
        headers = {"X-aws-ec2-metadata-token": token} if token else {}
        status, body = self._request("GET", path, headers)
        if status == 401 and token:
            self._token = None
            return self.get(path)
        return status, body

    def identity(self) -> dict[str, Any]:
        status, body = self.get("/latest/dynamic/instance-identity/document")
        if status != 200:
            raise ImdsUnavailable(f"identity document answered HTTP {status}")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ImdsUnavailable(f"identity document is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise ImdsUnavailable("identity document is not a JSON object")
        return document

    def tags(self) -> dict[str, str] | None:
        """Instance tags exposed in metadata, or None when that option is off on the instance."""
        status, body = self.get("/latest/meta-data/tags/instance")
        if status != 200:
            return None
        tags: dict[str, str] = {}
        for key in body.decode("utf-8", "replace").splitlines():
            if not key:
                continue
            status, value = self.get(f"/latest/meta-data/tags/instance/{quote(key, safe='')}")
            if status == 200:
                tags[key.lower()] = value.decode("utf-8", "replace")
        return tags


def _default_ec2_client(endpoint: str) -> Ec2ClientFactory:
    def make(region: str) -> Any:
        import boto3
        import botocore.config
        import botocore.session

        session = botocore.session.get_session()
        # The credential chain asks IMDS too: send it to the same (configurable) endpoint.
        session.set_config_variable("ec2_metadata_service_endpoint", endpoint)
        config = botocore.config.Config(
            connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}
        )
        return boto3.Session(botocore_session=session).client(
            "ec2", region_name=region, config=config
        )

    return make


def describe_tags(client: Any, instance_id: str) -> dict[str, str]:
    """All tags of the instance through EC2 DescribeTags (keys lower-cased)."""
    tags: dict[str, str] = {}
    kwargs: dict[str, Any] = {"Filters": [{"Name": "resource-id", "Values": [instance_id]}]}
    while True:
        page = client.describe_tags(**kwargs)
        for tag in page.get("Tags", ()):
            tags[str(tag["Key"]).lower()] = str(tag.get("Value", ""))
        token = page.get("NextToken")
        if not token:
            return tags
        kwargs["NextToken"] = token


class Ec2MetadataFetcher:
    """One complete fetch: identity fields, the fetch time and, when available, the tags."""

    def __init__(
        self, imds: ImdsClient, ec2_client: Ec2ClientFactory | None, now: Callable[[], float]
    ) -> None:
        self._imds = imds
        self._ec2_client = ec2_client
        self._now = now
        self._tags_warned = False

    def __call__(self) -> dict[str, Any]:
        document = self._imds.identity()
        fields: dict[str, Any] = {ours: document.get(theirs) for theirs, ours in _IDENTITY_FIELDS}
        fields["metadataTimestamp"] = time.strftime(
            "%Y-%m-%dT%H:%M:%S+0000", time.gmtime(self._now())
        )
        tags = self._imds.tags()
        if tags is None and self._ec2_client is not None and fields["instanceId"]:
            try:
                client = self._ec2_client(str(fields["region"] or ""))
                tags = describe_tags(client, str(fields["instanceId"]))
            except Exception as exc:  # any botocore/credential failure: go on without tags
                if not self._tags_warned:
                    self._tags_warned = True
                    log.warning(
                        "EC2 tags unavailable (enable instance tags in metadata, or allow "
                        "ec2:DescribeTags): %s",
                        exc,
                    )
        if tags is not None:
            fields["tags"] = tags
        return fields


def _daemon_thread(target: Callable[[], None]) -> None:
    # A daemon: a fetch bounded by short timeouts must never hold up the agent's exit.
    threading.Thread(target=target, name="imds-refresh", daemon=True).start()


class MetadataCache:
    """Serves the last fetched metadata; refreshes it on a background thread when it expires.

    Only the very first call waits (at most ``first_wait``) so the first records are enriched
    like the rest; after that no call ever blocks on the network.
    """

    def __init__(
        self,
        fetch: Callable[[], dict[str, Any]],
        *,
        ttl: float,
        retry_after: float = RETRY_AFTER_SECONDS,
        first_wait: float = FIRST_WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[[Callable[[], None]], None] | None = None,
        describe: str = "EC2 metadata",
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._retry_after = retry_after
        self._first_wait = first_wait
        self._clock = clock
        self._describe = describe
        self._spawn = spawn or _daemon_thread
        self._lock = threading.Lock()
        self._first_done = threading.Event()
        self._waited = False
        self._refreshing = False
        self._value: dict[str, Any] | None = None
        self._due = float("-inf")
        self._warned = False

    def get(self) -> dict[str, Any] | None:
        if self._clock() >= self._due:
            self._maybe_refresh()
        if not self._waited:
            self._first_done.wait(self._first_wait)
            self._waited = True
        return self._value

    def _maybe_refresh(self) -> None:
        with self._lock:
            if self._refreshing or self._clock() < self._due:
                return
            self._refreshing = True
        self._spawn(self._refresh)

    def _refresh(self) -> None:
        try:
            value: dict[str, Any] | None = self._fetch()
            error: Exception | None = None
        except Exception as exc:  # the thread must not die with the cache stuck "refreshing"
            value, error = None, exc
        with self._lock:
            if value is not None:
                self._value = value
                self._due = self._clock() + self._ttl
            else:
                self._due = self._clock() + min(self._retry_after, self._ttl)
            self._refreshing = False
        if error is not None and not self._warned:
            self._warned = True
            if self._value is None:
                log.warning(
                    "%s: no instance metadata (%s); records pass unchanged. Not on EC2, or IMDS "
                    "is disabled or unreachable.",
                    self._describe,
                    error,
                )
            else:
                log.warning(
                    "%s: refresh failed (%s); keeping the old values", self._describe, error
                )
        self._first_done.set()


class AddEc2Metadata:
    """Merges the cached metadata into each record, which must be a JSON object."""

    __slots__ = ("_cache", "_opts")

    def __init__(self, cache: MetadataCache, opts: int) -> None:
        self._cache = cache
        self._opts = opts

    def __call__(self, data: bytes) -> bytes:
        metadata = self._cache.get()
        if metadata is None:
            return data if data.endswith(b"\n") else data + b"\n"
        try:
            record = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise PassRaw("ADDEC2METADATA needs a JSON object record") from None
        if not isinstance(record, dict):
            raise PassRaw("ADDEC2METADATA needs a JSON object record")
        record.update(metadata)
        return orjson.dumps(record, option=self._opts) + b"\n"


def add_ec2_metadata(
    options: Mapping[str, Any],
    path: str,
    *,
    ec2_client: Ec2ClientFactory | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Processor:
    """ADDEC2METADATA factory. No network I/O happens here (config checks build chains too)."""
    check_keys(
        options,
        ("logFormat", "metadataTTL", "jsonFormat", "endpoint", "timeoutMillis", "describeTags"),
        path,
    )
    ttl = get_number(options, "metadataTTL", 3600, path, minimum=1)
    timeout = get_number(options, "timeoutMillis", 1000, path, minimum=1) / 1000
    endpoint = get_str(
        options, "endpoint", path, default=os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
    )
    try:
        imds = ImdsClient(endpoint, timeout=timeout)
    except ValueError as exc:
        raise ConfigError(f"{path}.endpoint", str(exc)) from None
    if not get_bool(options, "describeTags", True, path):
        ec2_client = None
    elif ec2_client is None:
        ec2_client = _default_ec2_client(endpoint)
    fetch = Ec2MetadataFetcher(imds, ec2_client, time.time)
    cache = MetadataCache(fetch, ttl=ttl, clock=clock, describe=path)
    return AddEc2Metadata(cache, json_options(options, path))
