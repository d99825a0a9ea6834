"""``kinesis-agent serve``: the store's Kinesis endpoint on its own, from a store directory or a config.

Argument parsing only; the endpoint is built by agent/service/serve.py, the same way the daemon
builds it for ``localStore.listen``.

The standalone server runs beside an agent on the same store: it takes no lock (the agent's
``agent.lock`` says one *shipper* per store, not one reader), opens its own connection, and its
writes serialise with the agent's on SQLite's write lock, each in its own transaction, so the
agent's records-plus-checkpoint commits stay whole and exactly-once holds.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
from typing import TYPE_CHECKING

from agent.cli.options import config_or_path
from agent.config import DEFAULT_CONFIG, load_config
from agent.config.listen import ENDPOINT_DEFAULT_PORT, LOOPBACK, parse_endpoint_listen
from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.endpoint.server import KinesisEndpoint

DEFAULT_LISTEN = f"{LOOPBACK}:{ENDPOINT_DEFAULT_PORT}"
# Inside the agent every connection is a descriptor the flows' files and commits also need
# (agent/observability/listeners.py); the standalone server has the process to itself.
SERVE_MAX_CONNECTIONS = 256


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve the embedded store as a Kinesis Data Streams endpoint (loopback by default)",
        description="Serve the stream store as Kinesis: boto3, the AWS CLI and the SDKs read and "
        "write it with --endpoint-url. Runs beside an agent on the same store.",
    )
    config_or_path(
        serve,
        "--store",
        "the store directory (default: from the config)",
        f"take the store, listen address and key pair from this agent.json (default {DEFAULT_CONFIG})",
        config_default=None,
        path_first=True,
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
    # the endpoint (HTTP/2, the store, orjson, asyncio) loads here, not when the CLI registers
    # `serve`
    import asyncio

    from agent.endpoint.limits import ShardLimits
    from agent.endpoint.server import KinesisEndpoint
    from agent.service.serve import endpoint_from_config

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
    import asyncio

    from agent.endpoint.server import serve_forever

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await serve_forever(endpoint, stop)
