"""Agent configurations for tests: one writer, the flow every test starts from, the usual layouts.

Every layout writes ``tmp/agent.json``; the keys a test cares about are its arguments, so what the
test sets stays visible at the call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Local flows never report to CloudWatch; AWS flows would, to the real AWS, unless told not to.
NO_CLOUDWATCH: dict[str, Any] = {"cloudwatch.emitMetrics": False}


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    """``doc`` as JSON at ``path`` (the agent's config file); returns ``path``."""
    path.write_text(json.dumps(doc, indent=2))
    return path


def from_start(pattern: Path | str, **keys: Any) -> dict[str, Any]:
    """A flow over ``pattern`` that reads every file from its start; ``keys`` are its other keys
    (the destination among them)."""
    return {"filePattern": str(pattern), "initialPosition": "START_OF_FILE", **keys}


def local_config(
    tmp: Path,
    *flows: dict[str, Any],
    store: Path | None = None,
    checkpoints: Path | None = None,
    shards: int | None = 1,
    **settings: Any,
) -> Path:
    """``flows`` into the embedded store in ``tmp/streams`` (or ``store``) with ``shards`` shards
    (None: the default), checkpoints in ``tmp/cp.db`` (or ``checkpoints``); ``settings`` are more
    top-level keys."""
    doc: dict[str, Any] = {
        "checkpointFile": str(checkpoints or tmp / "cp.db"),
        "localStore.directory": str(store or tmp / "streams"),
    }
    if shards is not None:
        doc["localStore.shardCount"] = shards
    return write_config(tmp / "agent.json", {**doc, **settings, "flows": list(flows)})


def local_flow_config(
    tmp: Path, pattern: Path, stream: str, settings: dict[str, Any] | None = None, **flow: Any
) -> Path:
    """:func:`local_config` with one flow over ``pattern`` into the local stream ``stream``;
    ``flow`` are more keys of the flow."""
    return local_config(tmp, from_start(pattern, localStream=stream, **flow), **(settings or {}))


def state_config(tmp: Path, *flows: dict[str, Any], **settings: Any) -> Path:
    """``flows`` with the agent's state under ``tmp/state``, as an installed agent keeps it in one
    directory: ``checkpoints.db``, the embedded store ``streams/`` (default shards) and the status
    socket's default place beside them; ``settings`` are more top-level keys (``flows`` too)."""
    return write_config(
        tmp / "agent.json",
        {
            "checkpointFile": str(tmp / "state" / "checkpoints.db"),
            "localStore.directory": str(tmp / "state" / "streams"),
            "flows": list(flows),
            **settings,
        },
    )


def state_socket(tmp: Path) -> str:
    """Where an agent configured by :func:`state_config` serves its status (the default place)."""
    return str(tmp / "state" / "status.sock")


def logs_flow(tmp: Path, stream: str, **keys: Any) -> dict[str, Any]:
    """A flow over ``tmp/logs/*.log`` from the start into the local stream ``stream``."""
    return from_start(tmp / "logs" / "*.log", localStream=stream, **keys)


def obs_config(tmp: Path, **settings: Any) -> Path:
    """:func:`state_config` with one flow over ``tmp/logs/*.log`` into the local stream ``obs``
    (1 s buffer age): the agent the observability tests watch."""
    return state_config(tmp, logs_flow(tmp, "obs", maxBufferAgeMillis=1000), **settings)


def aws_config(
    tmp: Path, *flows: dict[str, Any], checkpoints: Path | None = None, **settings: Any
) -> Path:
    """``flows`` to AWS destinations (endpoints in ``settings``), checkpoints in
    ``tmp/checkpoints.db`` (or ``checkpoints``), no CloudWatch metrics unless ``settings`` ask."""
    return write_config(
        tmp / "agent.json",
        {
            "checkpointFile": str(checkpoints or tmp / "checkpoints.db"),
            **NO_CLOUDWATCH,
            **settings,
            "flows": list(flows),
        },
    )


def logs_config(
    tmp: Path, flow: dict[str, Any], *, checkpoints: Path | None = None, **settings: Any
) -> Path:
    """:func:`aws_config` with one flow over ``tmp/logs/*.log`` (1 s buffer age); ``flow`` holds
    its destination and more keys."""
    return aws_config(
        tmp,
        from_start(tmp / "logs" / "*.log", maxBufferAgeMillis=1000, **flow),
        checkpoints=checkpoints,
        **settings,
    )


def kinesis_config(
    tmp: Path,
    endpoint: str,
    stream: str,
    flow: dict[str, Any] | None = None,
    *,
    checkpoints: Path | None = None,
    **settings: Any,
) -> Path:
    """:func:`logs_config` into the Kinesis stream ``stream`` at ``endpoint``; ``flow`` are more
    keys of the flow."""
    return logs_config(
        tmp,
        {"kinesisStream": stream, **(flow or {})},
        checkpoints=checkpoints,
        **{"kinesis.endpoint": endpoint, **settings},
    )
