"""The store's Kinesis endpoint built from the configuration: for ``localStore.listen`` inside the
daemon, and for ``kinesis-agent serve`` (whose options are parsed in agent/cli/serve.py).
"""

from __future__ import annotations

from agent.config import AgentConfig
from agent.config.listen import parse_endpoint_listen
from agent.endpoint.limits import ShardLimits
from agent.endpoint.server import KinesisEndpoint
from agent.endpoint.sigv4 import KeyPair
from agent.errors import ConfigError

# Inside the agent every connection is a descriptor the flows' files and commits also need
# (agent/observability/listeners.py); the standalone server (agent/cli/serve.py) allows more.
AGENT_MAX_CONNECTIONS = 64


def key_pair(config: AgentConfig) -> KeyPair | None:
    key_id, secret = config.local_store_access_key_id, config.local_store_secret_access_key
    if (key_id is None) != (secret is None):
        missing = "localStore.secretAccessKey" if secret is None else "localStore.accessKeyId"
        raise ConfigError(
            missing, "localStore.accessKeyId and localStore.secretAccessKey go together"
        )
    return None if key_id is None or secret is None else KeyPair(key_id, secret)


def endpoint_from_config(
    config: AgentConfig,
    listen: str | None = None,
    *,
    shard_limits: bool = False,
    max_connections: int = AGENT_MAX_CONNECTIONS,
) -> KinesisEndpoint | None:
    """The endpoint ``localStore.listen`` asks for (None when unset); ConfigError when malformed."""
    listen = listen or config.local_store_listen
    if not listen:
        return None
    try:
        parse_endpoint_listen(listen)
    except ValueError as exc:
        raise ConfigError("localStore.listen", str(exc)) from None
    return KinesisEndpoint(
        config.local_store_directory,
        listen,
        keys=key_pair(config),
        limits=ShardLimits() if shard_limits or config.local_store_shard_limits else None,
        retention_hours=max(24, config.local_store_retention_hours),
        max_connections=max_connections,
    )
