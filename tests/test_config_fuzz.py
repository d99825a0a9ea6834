"""Config fuzzing: generated valid configs load; generated invalid ones fail naming their JSON path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import FLOW_KEYS, GLOBAL_KEYS, Key, parse_config
from agent.errors import ConfigError

DESTINATIONS = ("kinesisStream", "deliveryStream", "localStream")
STRUCTURAL = {"flows", "filePattern", *DESTINATIONS, "dataProcessingOptions", "partitionKeyField"}


def valid_value(key: Key) -> st.SearchStrategy[Any]:
    if key.kind == "int":
        lo = key.lo if key.lo is not None else 0
        hi = key.hi if key.hi is not None else lo + 100_000
        ints = st.integers(lo, hi)
        return st.one_of(ints, ints.map(str))
    if key.kind == "bool":
        return st.one_of(st.booleans(), st.sampled_from(["true", "no", "Y", "0"]))
    if key.kind == "enum":
        return st.sampled_from(key.choices)
    if key.kind == "regex":
        return st.sampled_from([r"^\d{4}-", r"\[", "(ERROR|WARN)"])
    return st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20
    )


def options(keys: tuple[Key, ...], skip: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    usable = [k for k in keys if k.name not in skip and k.name not in STRUCTURAL]
    return st.lists(st.sampled_from(usable), unique_by=lambda k: k.name, max_size=8).flatmap(
        lambda chosen: st.fixed_dictionaries({k.name: valid_value(k) for k in chosen})
    )


@st.composite
def valid_flow(draw: st.DrawFn) -> dict[str, Any]:
    dest = draw(st.sampled_from(DESTINATIONS))
    flow: dict[str, Any] = {
        "filePattern": f"/var/log/{draw(st.sampled_from(['a', 'b/*', '**']))}/*.log",
        dest: "s1",
    }
    flow.update(
        draw(
            options(
                FLOW_KEYS,
                {
                    "maxBufferSizeBytes",
                    "partitionKeyOption",
                    "retryMaxBackoffMillis",
                    "retryInitialBackoffMillis",
                },
            )
        )
    )
    return flow


@st.composite
def valid_config(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(options(GLOBAL_KEYS, set()))
    flows = draw(st.lists(valid_flow(), min_size=1, max_size=3))
    for i, flow in enumerate(flows):  # flow ids must be unique
        flow["filePattern"] = f"/var/log/f{i}/*.log"
    doc["flows"] = flows
    return doc


class TestFuzz:
    @settings(max_examples=300)
    @given(valid_config())
    def test_generated_valid_configs_load(self, doc: dict[str, Any]) -> None:
        """Any combination of valid keys and values loads."""
        cfg = parse_config(doc)
        assert len(cfg.flows) == len(doc["flows"])

    @settings(max_examples=300)
    @given(valid_config(), st.data())
    def test_generated_invalid_configs_name_their_path(
        self, doc: dict[str, Any], data: st.DataObject
    ) -> None:
        """One broken key anywhere: a ConfigError whose path names exactly that key."""
        where = data.draw(st.sampled_from(["global", *range(len(doc["flows"]))]))
        target: dict[str, Any] = doc if where == "global" else doc["flows"][where]
        keys = GLOBAL_KEYS if where == "global" else FLOW_KEYS
        prefix = "" if where == "global" else f"flows[{where}]."
        breakable = [k for k in keys if k.kind in {"int", "bool", "enum"} and not k.ignored]
        key = data.draw(st.sampled_from(breakable))
        mistake = data.draw(st.sampled_from(["unknown", "type", "range"]))
        name = key.name
        if mistake == "unknown":
            name = key.name + "x"
            target[name] = 1
        elif mistake == "type" or key.kind != "int" or key.clamp:  # clamped keys take any int
            target[name] = {"not": "a scalar"}
        else:
            target[name] = (key.hi or 10**9) + 1 if key.hi is not None else -(10**12)
            if key.hi is None and key.lo is None:
                target[name] = "NaN"
        try:
            parse_config(doc)
        except ConfigError as exc:
            assert exc.path == prefix + name, (exc.path, prefix + name)
            assert "\n" not in str(exc)
        else:
            raise AssertionError(f"{prefix}{name}={target[name]!r} was accepted")


def test_cli_exits_78_with_one_line(tmp_path: Path) -> None:
    """The real command exits 78 with exactly one line naming the path."""
    config = tmp_path / "agent.json"
    config.write_text(
        json.dumps(
            {"flows": [{"filePattern": "/x/*.log", "localStream": "s", "maxBufferAgeMillis": 5}]}
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 78
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "flows[0].maxBufferAgeMillis" in lines[0] and "1000 to 900000" in lines[0]
