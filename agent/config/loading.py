"""Loading: agent.json plus every ``agent.d/*.json`` beside it, validated into one AgentConfig.

The files are read by jsonfile.py (comments, size and count budgets), each flow by flows.py, each
value by values.py; here the global keys, the agent.d rules and the checks that span keys.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.config.endpoints import configured_region, endpoint_problem, region_problem
from agent.config.flows import parse_flow
from agent.config.jsonfile import ConfigBudget, extra_config_files, read_config_file
from agent.config.listen import parse_endpoint_listen, parse_prometheus_listen
from agent.config.model import DEFAULT_CONFIG, AgentConfig, FlowConfig
from agent.config.schema import FLOW_BY_NAME, GLOBAL_BY_NAME, GLOBAL_KEYS
from agent.config.values import read_keys, typename
from agent.errors import ConfigError

log = logging.getLogger("agent.config")  # the package's one logger, named as before the split

# A flow document: the raw flow, its JSON path (``flows[0]``) and the file it came from.
FlowDoc = tuple[Any, str, str]


def load_config(path: str | os.PathLike[str] | None = None) -> AgentConfig:
    """Read agent.json and every ``agent.d/*.json`` beside it; raise ConfigError on anything wrong.

    Nothing else escapes: ``check`` and ``run`` exit 78 on a ConfigError, and a SIGHUP reload keeps
    the running configuration, so an unforeseen failure while validating is reported as one too.
    """
    main_path = Path(path if path is not None else DEFAULT_CONFIG)
    try:
        return _load(main_path)
    except ConfigError:
        raise
    except Exception as exc:
        log.debug("validating %s failed unexpectedly", main_path, exc_info=True)
        raise ConfigError(
            "",
            f"cannot be validated (internal error {type(exc).__name__}: {exc}); please report it",
            source=str(main_path),
        ) from exc


def _load(main_path: Path) -> AgentConfig:
    budget = ConfigBudget()
    doc = _read_object(main_path, budget, "the configuration must be a JSON object")
    sources = [str(main_path)]
    flow_docs = _flow_docs(doc, str(main_path))
    for extra in extra_config_files(main_path):
        extra_doc = _read_object(extra, budget, "must be a JSON object with a 'flows' list")
        for key in extra_doc:
            if key != "flows":
                raise ConfigError(key, "agent.d files may only contain 'flows'", source=str(extra))
        flow_docs += _flow_docs(extra_doc, str(extra))
        sources.append(str(extra))
    return parse_config(doc, flow_docs, source=str(main_path), sources=tuple(sources))


def _read_object(path: Path, budget: ConfigBudget, expected: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``expected`` says what the file must be when it is not one."""
    doc = read_config_file(path, budget)
    if not isinstance(doc, dict):
        raise ConfigError("", f"{expected}, not {typename(doc)}", source=str(path))
    return doc


def _flow_docs(doc: Mapping[str, Any], source: str | None) -> list[FlowDoc]:
    """The entries of ``doc``'s ``flows`` list, each with its JSON path and file."""
    raw_flows = doc.get("flows", [])
    if not isinstance(raw_flows, list):
        raise ConfigError(
            "flows",
            f"must be a list of flow objects, not {typename(raw_flows)}",
            source=source,
        )
    return [(f, f"flows[{i}]", source or "") for i, f in enumerate(raw_flows)]


def parse_config(
    doc: Mapping[str, Any],
    flow_docs: Sequence[FlowDoc] | None = None,
    *,
    source: str | None = None,
    sources: tuple[str, ...] = (),
) -> AgentConfig:
    """Validate an already-parsed document (``flow_docs`` lets agent.d flows carry their own file)."""
    values = read_keys(
        {name: raw for name, raw in doc.items() if name != "flows"},
        GLOBAL_BY_NAME,
        FLOW_BY_NAME,
        "is a per-flow key; move it inside each entry of 'flows'",
        source=source,
    )
    if flow_docs is None:
        flow_docs = _flow_docs(doc, source)
    if not flow_docs:
        raise ConfigError("flows", "no flows are configured; add at least one flow", source=source)
    flows: list[FlowConfig] = []
    seen: dict[str, str] = {}
    for raw_flow, path, flow_source in flow_docs:
        flow = parse_flow(raw_flow, path, flow_source or None)
        if flow.flow_id in seen:
            raise ConfigError(
                path,
                f"duplicates the flow at {seen[flow.flow_id]} (same destination and filePattern)",
                source=flow_source or None,
            )
        seen[flow.flow_id] = path
        flows.append(flow)
    _check_global_values(values, source)
    _check_aws_values(values, flows, source)
    return AgentConfig(flows=tuple(flows), sources=sources, **values)


# A Unix socket path, NUL included, fits in sockaddr_un.sun_path (108 bytes on Linux).
_MAX_SOCKET_PATH = 107
_PATH_FIELDS = ("checkpoint_file", "local_store_directory", "status_socket")


def _check_global_values(values: Mapping[str, Any], source: str | None) -> None:
    """What only fails once the agent runs, caught here so that ``check`` and exit 78 see it."""
    for name in _PATH_FIELDS:
        if "\x00" in (values.get(name) or ""):
            raise ConfigError(_camel_key(name), "must not contain a NUL character", source=source)
    socket = values.get("status_socket")
    if socket is not None and len(os.fsencode(socket)) > _MAX_SOCKET_PATH:
        raise ConfigError(
            "statusSocket",
            f"is {len(os.fsencode(socket))} bytes long; a Unix socket path may have at most "
            f"{_MAX_SOCKET_PATH}",
            source=source,
        )
    listen = values.get("metrics_prometheus_listen")
    if listen is not None:
        try:
            parse_prometheus_listen(listen)
        except ConfigError as exc:
            raise ConfigError(exc.path, exc.message, source=source) from None
    # here, not when the endpoint starts: check must refuse what run refuses, and a reload with
    # a malformed address must apply nothing rather than everything but the endpoint
    endpoint_listen = values.get("local_store_listen")
    if endpoint_listen:
        try:
            parse_endpoint_listen(endpoint_listen)
        except ValueError as exc:
            raise ConfigError("localStore.listen", str(exc), source=source) from None


def _check_aws_values(
    values: Mapping[str, Any], flows: Sequence[FlowConfig], source: str | None
) -> None:
    """The endpoint and region keys a configured destination uses: its client is only built at
    its first call (agent/sinks/aws.py), so what building it would refuse is refused here."""
    kinds = {flow.destination_kind for flow in flows}
    kinesis_region = values.get("kinesis_region")
    for service in ("kinesis", "firehose"):
        if service not in kinds:
            continue
        endpoint = values.get(f"{service}_endpoint")
        problem = endpoint_problem(endpoint) if endpoint else None
        if problem is not None:
            raise ConfigError(_camel_key(f"{service}_endpoint"), problem, source=source)
        # unset or empty: the default endpoint, the SDK's region chain
        region = configured_region(service, endpoint, kinesis_region)
        problem = region_problem(region) if region else None
        if problem is not None:
            named = service == "kinesis" and kinesis_region
            key = "kinesis_region" if named else f"{service}_endpoint"
            raise ConfigError(_camel_key(key), problem, source=source)


def _camel_key(field_name: str) -> str:
    return next(k.name for k in GLOBAL_KEYS if k.field == field_name)
