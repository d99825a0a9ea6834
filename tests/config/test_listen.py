"""Listen addresses: one parser for localStore.listen, serve --listen and metrics.prometheusListen.

A port is plain decimal digits. The Prometheus parser used ``int()``, which also takes ``+9100``,
``9_100``, surrounding blanks and non-ASCII digits: ``check`` passed addresses no other tool reads.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent.config import parse_config
from agent.config.listen import parse_endpoint_listen, parse_prometheus_listen
from agent.errors import ConfigError

NOT_PLAIN_DIGITS = [
    "+9100",
    "9_100",
    "host:+9100",
    "host:9_100",
    "host: 9100",
    "\u0669\u0661",
    "0x10",
]
FLOW = {"filePattern": "/l/*.log", "localStream": "a"}
Parse = Callable[[str], tuple[str, int]]


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (parse_prometheus_listen, "9100", ("127.0.0.1", 9100)),
        (parse_prometheus_listen, ":9100", ("127.0.0.1", 9100)),
        (parse_prometheus_listen, "0.0.0.0:9100", ("0.0.0.0", 9100)),
        (parse_prometheus_listen, "[::1]:9100", ("::1", 9100)),
        (parse_prometheus_listen, "localhost:0", ("localhost", 0)),
        (parse_endpoint_listen, "4568", ("127.0.0.1", 4568)),
        (parse_endpoint_listen, ":4568", ("127.0.0.1", 4568)),
        (parse_endpoint_listen, "[::1]:4568", ("::1", 4568)),
        (parse_endpoint_listen, "localhost:", ("localhost", 4567)),
        (parse_endpoint_listen, " 127.0.0.1:0 ", ("127.0.0.1", 0)),
    ],
)
def test_forms(parse: Parse, text: str, expected: tuple[str, int]) -> None:
    """A bare port means loopback; a host opens it further on purpose; the endpoint alone has a
    default port (4567, kinesalite's) for an empty one."""
    assert parse(text) == expected


class TestPrometheusListen:
    @pytest.mark.parametrize("text", ["", "host:", "99999", "[::1]9100", "x:y"])
    def test_errors_name_the_key(self, text: str) -> None:
        """A bad value is a config error at metrics.prometheusListen."""
        with pytest.raises(ConfigError, match=r"metrics\.prometheusListen"):
            parse_prometheus_listen(text)

    @pytest.mark.parametrize("text", NOT_PLAIN_DIGITS)
    def test_a_port_is_plain_decimal_digits(self, text: str) -> None:
        """``+9100`` and ``9_100`` are refused at metrics.prometheusListen, as ``99999`` is."""
        with pytest.raises(ConfigError, match=r"metrics\.prometheusListen") as info:
            parse_prometheus_listen(text)
        assert info.value.message == f"expected a port 0-65535 in {text!r}"

    def test_check_refuses_it_too(self) -> None:
        """The configuration is refused, not only the listener when it starts."""
        with pytest.raises(ConfigError, match=r"metrics\.prometheusListen"):
            parse_config({"metrics.prometheusListen": "+9100", "flows": [FLOW]})


class TestEndpointListen:
    @pytest.mark.parametrize("text", NOT_PLAIN_DIGITS)
    def test_a_port_is_plain_decimal_digits(self, text: str) -> None:
        """The same addresses are refused for the Kinesis endpoint, with the same words."""
        with pytest.raises(ValueError, match="expected a port 0-65535 in"):
            parse_endpoint_listen(text)

    def test_check_refuses_it_too(self) -> None:
        with pytest.raises(ConfigError, match=r"localStore\.listen"):
            parse_config({"localStore.listen": "9_100", "flows": [FLOW]})
