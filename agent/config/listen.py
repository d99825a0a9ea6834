"""Listen addresses: ``localStore.listen``, ``serve --listen`` and ``metrics.prometheusListen``.

One parser, so that ``check``, a reload, the Kinesis endpoint and the Prometheus listener agree on
what is valid. A port is plain decimal digits: ``int()`` alone would also take ``+9100``, ``9_100``
and non-ASCII digits, which no other tool reads as a port.
"""

from __future__ import annotations

from agent.errors import ConfigError

ENDPOINT_DEFAULT_PORT = 4567  # kinesalite's, so tools written for it find us too
LOOPBACK = "127.0.0.1"


def split_listen(value: str, default_port: int | None = None) -> tuple[str, int]:
    """``4567`` / ``:4567`` → loopback; ``host:port``; ``[v6]:port``; ValueError otherwise.

    An empty port is ``default_port``, or an error where there is none.
    """
    text = value.strip()
    host = LOOPBACK
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise ValueError(f"expected [host]:port, not {value!r}")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        given, port_text = text.rsplit(":", 1)
        host = given or host
    else:
        port_text = text
    if not port_text and default_port is not None:
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected a port 0-65535 in {value!r}")  # (isdigit() alone passes '²')
    return host, int(port_text)


def parse_endpoint_listen(value: str, default_port: int = ENDPOINT_DEFAULT_PORT) -> tuple[str, int]:
    """The Kinesis endpoint's address (``host:`` means its default port); ValueError if malformed."""
    return split_listen(value, default_port)


def parse_prometheus_listen(value: str) -> tuple[str, int]:
    """The Prometheus listener's address (the port is required); ConfigError if malformed."""
    try:
        return split_listen(value)
    except ValueError as exc:
        raise ConfigError("metrics.prometheusListen", str(exc)) from None
