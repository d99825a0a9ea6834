"""Config fuzzing: valid configs load; invalid ones fail naming their JSON path; hostile files never crash.

The structural part writes real files (a BOM, comments, keys given twice, 5,000 levels of nesting,
5,000-digit numbers, wrong types anywhere) and asserts that load_config returns a configuration
or raises one ConfigError of one printable line, never anything else: the CLI maps that to exit 78
and a SIGHUP reload to "keep the running configuration".
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import FLOW_KEYS, GLOBAL_KEYS, AgentConfig, Key, load_config, parse_config
from agent.errors import ConfigError
from tests.support.agent import run_agent

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
    if key.name == "metrics.prometheusListen":
        return st.sampled_from(["9100", ":9100", "127.0.0.1:0", "[::1]:9100"])
    if key.name == "localStore.listen":
        return st.sampled_from(["4567", ":4567", "127.0.0.1:0", "[::1]:4567", "localhost:"])
    if key.name == "kinesis.region":  # a host label (agent/config/endpoints.py)
        return st.sampled_from(["eu-west-1", "us-gov-west-1", "local", "x1"])
    if key.name in ("kinesis.endpoint", "firehose.endpoint"):  # a URL; the scheme may be left out
        return st.sampled_from(
            ["https://kinesis.eu-west-1.amazonaws.com", "localhost:4567", "http://[::1]:4567"]
        )
    return st.text(  # no NUL: no path may hold one
        st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
        min_size=1,
        max_size=20,
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
    proc = run_agent("run", "-c", str(config))
    assert proc.returncode == 78
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "flows[0].maxBufferAgeMillis" in lines[0] and "1000 to 900000" in lines[0]


# --- structure: whatever the file holds, a configuration or one ConfigError ---------------------
#
# Documents are built as Python values in which ``Raw`` is JSON text written as is (what json.dumps
# cannot write: 5,000-digit integers, 1e999, NaN, 5,000 levels of nesting, lone surrogates) and
# ``Pairs`` is an object that may give a key twice.


@dataclass(frozen=True)
class Raw:
    text: str

    def __repr__(self) -> str:
        return f"Raw({short(self.text)})"


class BigKey(str):
    def __repr__(self) -> str:
        return f"BigKey({short(self)})"


def short(text: str) -> str:
    return repr(text) if len(text) <= 60 else f"<{len(text)} characters: {text[:30]!r}…>"


@dataclass(frozen=True)
class Pairs:
    """An object as a list of (key, value): a key may appear twice."""

    items: list[tuple[str, Any]]


@dataclass(frozen=True)
class Twice:
    """A value of an object whose key is written twice: ``first``, then ``last``."""

    first: Any
    last: Any


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        value = Pairs(list(value.items()))
    if isinstance(value, Pairs):
        members = []
        for k, v in value.items:
            pending = [v]
            while pending:
                one = pending.pop(0)
                if isinstance(one, Twice):
                    pending[:0] = [one.first, one.last]
                else:
                    members.append(f"{json.dumps(k)}:{dump(one)}")
        return "{" + ",".join(members) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


def nested(depth: int, bracket: str) -> Raw:
    if bracket == "[":
        return Raw("[" * depth + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


# The big ones by name, so that a failing example stays readable.
BIG_TEXT = {
    "5000 digits": "9" * 5000,
    "400 digits": "-" + "1" * 400,
    "200k-character string": '"' + "k" * 200_000 + '"',
    "3000 nested regex groups": '"' + "(" * 3000 + ")" * 3000 + '"',
}
HOSTILE_TEXT = [
    "1" + "0" * 40,
    "1e999",
    "-1e999",
    "1e-999",
    "1e308",
    "123456789.5e300",
    "NaN",
    "Infinity",
    "-Infinity",
    '"\\ud800"',
    '"\\udfff tail"',
    '"\\u0000"',
    '"line\\nbreak\\u2028"',
    '"\\u001b[2J\\u001b]0;title\\u0007"',
    '"(((((((((("',
    '"a{99999999999}"',
    '"\\\\u00e9"',
    '"[["',
    '""',
    '"  "',
    "[]",
    "{}",
    "null",
    "true",
    "0",
    "-1",
    "0.5",
]

hostile_leaf = st.one_of(
    st.sampled_from(HOSTILE_TEXT).map(Raw),
    st.sampled_from(sorted(BIG_TEXT)).map(lambda name: Raw(BIG_TEXT[name])),
    st.builds(nested, st.sampled_from([2, 63, 64, 65, 200, 5000]), st.sampled_from("[{")),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
)
KEY_NAMES = [k.name for k in (*GLOBAL_KEYS, *FLOW_KEYS)] + [
    "optionName",
    "logFormat",
    "matchPattern",
    "customFieldNames",
    "metadata",
    "delimiter",
    "parseOptions",
    "jsonFormat",
    "a\nb",
    "\x1b[31mred",
    "\ud800",
    "",
]
hostile_key = st.one_of(
    st.sampled_from(KEY_NAMES), st.text(max_size=8), st.builds(BigKey, st.just("k" * 100_000))
)
hostile = st.recursive(
    hostile_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(hostile_key, inner), max_size=4).map(Pairs),
    ),
    max_leaves=8,
)

plain_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)

VALID_OPTIONS: list[dict[str, Any]] = [
    {"optionName": "SINGLELINE"},
    {"optionName": "SINGLELINE", "parseOptions": ["NO_TRIM"]},
    {"optionName": "ADDBRACKETS"},
    {"optionName": "CSVTOJSON", "customFieldNames": ["a", "b"], "delimiter": "\\t"},
    {"optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG", "jsonFormat": "PRETTYPRINT"},
    {
        "optionName": "LOGTOJSON",
        "logFormat": "SYSLOG",
        "matchPattern": "^(\\w+) (\\d+)",
        "customFieldNames": ["word", "number"],
    },
    {"optionName": "ADDMETADATA", "metadata": {"env": "prod", "n": [1, 2]}, "timestamp": "true"},
    {"optionName": "ADDEC2METADATA", "metadataTTL": 60, "describeTags": False},
]


@st.composite
def valid_document(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(valid_config())
    for flow in doc["flows"]:
        if draw(st.booleans()):
            chosen = draw(st.lists(st.sampled_from(VALID_OPTIONS), max_size=3))
            flow["dataProcessingOptions"] = json.loads(json.dumps(chosen))
    return doc


def slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) of a document: each place a value can be replaced."""
    found: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in list(items):
            found.append((node, key))
            if type(child) in (dict, list):  # not into Raw, Pairs or Twice: those are written as is
                stack.append(child)
    return found


@st.composite
def hostile_document(draw: st.DrawFn) -> Any:
    """A valid configuration broken at a few places in its structure, or something else entirely."""
    if draw(st.integers(0, 9)) == 0:
        return draw(hostile)  # a list, a number, a string... at the top
    doc = draw(valid_document())
    for _ in range(draw(st.integers(1, 3))):
        container, key = draw(st.sampled_from(slots(doc)))
        how = draw(st.sampled_from(["replace", "twice", "drop"]))
        if how == "replace":
            container[key] = draw(hostile)
        elif how == "drop":
            del container[key]
        elif isinstance(container, dict):  # the key again, with a hostile value first or last
            other = draw(hostile)
            pair = (other, container[key]) if draw(st.booleans()) else (container[key], other)
            container[key] = Twice(*pair)
        if not slots(doc):
            break
    return doc


def framed(text: str, bom: bool, comments: bool) -> bytes:
    if comments:
        text = f"// written by hand\n/* a {{ block [ comment */ {text} // the end"
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass")


def load_bytes(directory: Path, data: bytes, extras: tuple[bytes, ...] = ()) -> AgentConfig:
    path = directory / "agent.json"
    path.write_bytes(data)
    extra_dir = directory / "agent.d"
    shutil.rmtree(extra_dir, ignore_errors=True)
    if extras:
        extra_dir.mkdir()
        for i, extra in enumerate(extras):
            (extra_dir / f"{i:02d}.json").write_bytes(extra)
    return load_config(path)


def assert_one_config_error(exc: ConfigError) -> None:
    text = str(exc)
    assert len(text.splitlines()) == 1, text[:2000]
    assert text.isprintable(), text[:2000]
    assert len(text) < 2000, text[:2000]
    # load_config turns an unforeseen exception into a ConfigError too: that is a bug all the same
    assert "internal error" not in text, text


class TestStructureFuzz:
    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(hostile_document(), st.booleans(), st.booleans(), st.booleans())
    def test_hostile_documents_load_or_raise_one_config_error(
        self, doc: Any, bom: bool, comments: bool, in_agent_d: bool
    ) -> None:
        """Whatever the structure, load_config returns a configuration or raises one ConfigError."""
        data = framed(dump(doc), bom, comments)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                if in_agent_d:  # the same document as an agent.d file beside a valid agent.json
                    valid = {"flows": [{"filePattern": "/v/*.log", "localStream": "v"}]}
                    cfg = load_bytes(Path(tmp), json.dumps(valid).encode(), (data,))
                else:
                    cfg = load_bytes(Path(tmp), data)
            except ConfigError as exc:
                assert_one_config_error(exc)
            else:
                assert isinstance(cfg, AgentConfig) and cfg.flows

    @settings(max_examples=150, deadline=None)
    @given(valid_document(), st.booleans(), st.booleans(), st.data())
    def test_bom_comments_and_repeated_keys_change_nothing(
        self, doc: dict[str, Any], bom: bool, comments: bool, data: st.DataObject
    ) -> None:
        """A BOM, comments, or a key given twice (the last one is the original) load as the plain document."""
        expected = parse_config(json.loads(json.dumps(doc)))
        container, key = data.draw(st.sampled_from(slots(doc)))
        if isinstance(container, dict):  # whatever came first, the last value wins
            container[key] = Twice(data.draw(plain_json), container[key])
        with tempfile.TemporaryDirectory() as tmp:
            got = load_bytes(Path(tmp), framed(dump(doc), bom, comments))
        assert replace(got, sources=()) == replace(expected, sources=())
