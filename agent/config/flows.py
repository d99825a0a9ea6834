"""One entry of ``flows`` validated into a FlowConfig: its keys, its one destination, and the rules
that tie keys together (limits per destination, FIELD needs a field, backoff order, processors).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from agent.config.model import MIB, FlowConfig
from agent.config.schema import FLOW_BY_NAME, GLOBAL_BY_NAME
from agent.config.values import camel, read_keys, typename
from agent.errors import ConfigError

log = logging.getLogger("agent.config")  # the package's one logger, named as before the split


def parse_flow(raw: Any, path: str, source: str | None) -> FlowConfig:
    """The flow at JSON path ``path`` (``flows[0]``) of ``source``; ConfigError naming the key."""
    if not isinstance(raw, dict):
        raise ConfigError(path, f"must be a flow object, not {typename(raw)}", source=source)
    values = read_keys(
        raw,
        FLOW_BY_NAME,
        GLOBAL_BY_NAME,
        "is a global key; move it to the top level of the configuration",
        prefix=f"{path}.",
        source=source,
    )
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
        names = ", ".join(camel(d) for d in destinations)
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
        key = FLOW_BY_NAME[name]
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
    values["data_processing_options"] = check_processing(
        options, f"{path}.dataProcessingOptions", source
    )
    return FlowConfig(**values)


def check_processing(options: Any, path: str, source: str | None) -> tuple[Mapping[str, Any], ...]:
    from agent.processors import build_chain

    for i, option in enumerate(options):
        if not isinstance(option, dict):
            raise ConfigError(
                f"{path}[{i}]",
                f"must be an object with 'optionName', not {typename(option)}",
                source=source,
            )
    frozen = tuple(dict(o) for o in options)
    try:
        build_chain(frozen, path=path)
    except ConfigError as exc:
        raise ConfigError(exc.path, exc.message, source=source) from None
    return frozen
