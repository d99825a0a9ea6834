"""``kinesis-agent serve`` and ``localStore.listen``: the store's Kinesis endpoint from config or flags.

The standalone server runs beside an agent on the same store: it takes no lock (the agent's
``agent.lock`` says one *shipper* per store, not one reader), opens its own connection, and its
writes serialise with the agent's on SQLite's write lock, each in its own transaction, so the
agent's records-plus-checkpoint commits stay whole and exactly-once holds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from agent.config import DEFAULT_CONFIG, AgentConfig, load_config
from agent.config.listen import parse_endpoint_listen
from agent.endpoint.limits import ShardLimits
from agent.endpoint.server import KinesisEndpoint, serve_forever
from agent.endpoint.sigv4 import KeyPair
from agent.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:4567"
# Inside the agent every connection is a descriptor the flows' files and commits also need
# (agent/observability/listeners.py); the standalone server has the process to itself.
AGENT_MAX_CONNECTIONS = 64
SERVE_MAX_CONNECTIONS = 256


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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve the embedded store as a Kinesis Data Streams endpoint (loopback by default)",
        description="Serve the stream store as Kinesis: boto3, the AWS CLI and the SDKs read and "
        "write it with --endpoint-url. Runs beside an agent on the same store.",
    )
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--store", help="the store directory (default: from the config)")
    where.add_argument(
        "-c",
        "--config",
        default=None,
        help=f"take the store, listen address and key pair from "
        f"this agent.json (default {DEFAULT_CONFIG})",
    )
    serve.add_argument(
        "--listen",
        default=None,
        help=f"[HOST:]PORT to listen on (default localStore.listen, else {DEFAULT_LISTEN}; "
        "loopback unless a host is given)",
    )
    serve.add_argument(
        "--shard-limits",
        action="store_true",
        help="enforce Kinesis's per-shard limits (ProvisionedThroughputExceededException)",
    )
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    if args.store is not None:
        listen = args.listen or DEFAULT_LISTEN
        try:
            parse_endpoint_listen(listen)
        except ValueError as exc:
            raise ConfigError("--listen", str(exc)) from None
        endpoint = KinesisEndpoint(
            args.store, listen, limits=ShardLimits() if args.shard_limits else None
        )
    else:
        config = load_config(args.config or DEFAULT_CONFIG)
        listen = args.listen or config.local_store_listen or DEFAULT_LISTEN
        found = endpoint_from_config(
            config, listen, shard_limits=args.shard_limits, max_connections=SERVE_MAX_CONNECTIONS
        )
        assert found is not None
        endpoint = found
    asyncio.run(_serve(endpoint))
    return 0


async def _serve(endpoint: KinesisEndpoint) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await serve_forever(endpoint, stop)
