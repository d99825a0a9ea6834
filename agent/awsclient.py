"""botocore sessions and clients for whatever talks to AWS: the sinks and CloudWatch alike.

Built from the typed config: credentials (the default chain, or an assumed role that renews
itself), region and endpoint, timeouts, and the user agent. botocore's own retries are switched
off (one attempt per call): the sender's retry loop (agent/pipeline/sender.py) is the only layer
that retries, so the two never multiply. Proxies come from the standard environment variables
(HTTPS_PROXY, HTTP_PROXY, NO_PROXY), which botocore reads whenever no proxy is configured
explicitly. A module of its own so that CloudWatch (observability) need not import the sinks.
It imports botocore, so nothing imports it before a client is wanted: the sinks build theirs at
their first send (agent/sinks/aws.py); what agent.json says about endpoints and regions is
checked without botocore when it loads (agent/config/endpoints.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import botocore.config
import botocore.credentials
import botocore.session

from agent.config import AgentConfig
from agent.config.endpoints import DEFAULT_REGION, configured_region, normalize_endpoint

log = logging.getLogger(__name__)

ASSUME_ROLE_SESSION_NAME = "AWSKinesisAgent"
ASSUME_ROLE_SECONDS = 3600


def agent_version() -> str:
    # importlib.metadata (~60 ms with its imports) loads here, for the User-Agent, not at start-up
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kinesis-agent")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
        return "0"


def client_config(agent: AgentConfig, region: str) -> botocore.config.Config:
    """Timeouts, pool size, keep-alive and exactly one attempt per call."""
    return botocore.config.Config(
        region_name=region,
        connect_timeout=agent.connection_timeout_millis / 1000,
        read_timeout=agent.socket_timeout_millis / 1000,
        max_pool_connections=agent.max_connections or 10,
        tcp_keepalive=agent.use_tcp_keep_alive,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )


def user_agent_for(agent: AgentConfig, sdk_user_agent: str) -> str:
    """``userAgentOverride`` replaces everything; ``userAgent`` is a prefix, as the AWS agent does."""
    if agent.user_agent_override:
        return agent.user_agent_override
    ours = f"kinesis-agent/{agent_version()} {sdk_user_agent}"
    return f"{agent.user_agent} {ours}" if agent.user_agent else ours


def make_client(agent: AgentConfig, service: str) -> Any:
    """A boto3 client for ``kinesis`` or ``firehose`` with the agent's endpoint, region and credentials."""
    # One botocore session for the region's look-up and the client: each session registers some
    # 240 handlers, ~10 ms of the start-up of a Kinesis flow
    core = botocore.session.Session()
    if service == "kinesis":
        endpoint = agent.kinesis_endpoint
    elif service == "firehose":
        endpoint = agent.firehose_endpoint
    else:
        raise ValueError(f"unknown service {service!r}")
    region = configured_region(service, endpoint, agent.kinesis_region) or (
        _chain_region(core) if service == "kinesis" else DEFAULT_REGION
    )
    session = make_session(agent, region, core)
    client = session.create_client(
        service,
        region_name=region,
        endpoint_url=normalize_endpoint(endpoint),
        config=client_config(agent, region),
    )
    install_user_agent(client, agent)
    return client


def _chain_region(core: botocore.session.Session) -> str:
    # The SDK's chain (AWS_REGION, AWS_DEFAULT_REGION, the profile), then us-east-1; ``core`` is
    # a new session (one whose region is not set yet).
    return core.get_config_variable("region") or DEFAULT_REGION


def make_session(
    agent: AgentConfig, region: str, core: botocore.session.Session | None = None
) -> botocore.session.Session:
    """Static keys when configured, else the standard chain; then an assumed role on top if asked.
    ``core``: a new session to use (else one is made).

    A botocore session, not boto3's: boto3 adds nothing the agent's clients use and its import
    (s3transfer and all) was a tenth of the agent's start-up.
    """
    core = core or botocore.session.Session()
    core.set_config_variable("region", region)
    if agent.aws_access_key_id and agent.aws_secret_access_key:
        core.set_credentials(agent.aws_access_key_id, agent.aws_secret_access_key)
    if agent.assume_role_arn:
        refresh = _assume_role_refresher(agent, core, region)
        creds = botocore.credentials.DeferredRefreshableCredentials(
            refresh_using=refresh, method="assume-role"
        )
        core = botocore.session.Session()
        core.set_config_variable("region", region)
        core._credentials = creds  # the documented-by-usage way to hand a session refreshable creds
    return core


def _assume_role_refresher(
    agent: AgentConfig, base: botocore.session.Session, region: str
) -> Callable[[], dict[str, str]]:
    assert agent.assume_role_arn is not None
    role_arn = agent.assume_role_arn
    external_id = agent.assume_role_external_id

    def refresh() -> dict[str, str]:
        sts = base.create_client(
            "sts",
            region_name=region,
            endpoint_url=normalize_endpoint(agent.sts_endpoint),
            config=client_config(agent, region),
        )
        kwargs: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": ASSUME_ROLE_SESSION_NAME,
            "DurationSeconds": ASSUME_ROLE_SECONDS,
        }
        if external_id:
            kwargs["ExternalId"] = external_id
        creds = sts.assume_role(**kwargs)["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    return refresh


def install_user_agent(client: Any, agent: AgentConfig) -> None:
    """Send ``[userAgent ]kinesis-agent/<version> <botocore's>``, or ``userAgentOverride``."""
    # User-Agent is not part of the SigV4 signature, so it can be set just before sending.
    # botocore's own string does not change between calls: build ours once.
    cache: dict[str, str] = {}

    def set_user_agent(request: Any, **_: Any) -> None:
        # botocore keeps header values as bytes: str() of them put b'…' on the wire.
        raw = request.headers.get("User-Agent", b"")
        sdk = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
        ua = cache.get(sdk)
        if ua is None:
            ua = cache[sdk] = user_agent_for(agent, sdk)
        request.headers["User-Agent"] = ua

    client.meta.events.register_first("before-send.*.*", set_user_agent)
