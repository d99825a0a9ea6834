"""The one error tree of the agent; third-party errors are translated into it at the boundary.

AgentError                      base; ``retryable`` says whether waiting and trying again can help
├── ConfigError                 bad agent.json (exit code 78); ``path`` is the JSON path
├── StoreError                  the embedded stream store or the checkpoint database failed
│   └── StreamNotFound          a stream name that does not exist (not retryable)
├── MetricsNotSent              PutMetricData certainly stored nothing (safe to send again)
└── SinkError                   a destination refused or failed a request
    ├── RetryableSinkError      throttling, 5xx, timeouts, network
    └── FatalSinkError          access denied, stream not found: retried at the cap, loudly
"""

from __future__ import annotations

EX_CONFIG = 78


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one printable line of about ``limit`` characters at most (head … tail).

    Every character Python would not print (line breaks of any kind, terminal escapes, bidi
    overrides, lone surrogates) is written as its escape, the way ``repr`` does: a key of
    agent.json must not break a log line in two nor reach the operator's terminal as a control.
    """
    if len(text) > limit:
        keep = limit // 2
        text = f"{text[:keep]}…({len(text) - 2 * keep:,} characters)…{text[-keep:]}"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""

    retryable: bool = False


class ConfigError(AgentError):
    """The configuration is invalid; ``path`` names the JSON path (``flows[1].maxBufferAgeMillis``).

    Its text is always one printable line of bounded length: the parts come from the file itself
    (a megabyte key, a newline or an escape sequence in a key) and the CLI prints it as one line.
    """

    def __init__(self, path: str, message: str, *, source: str | None = None) -> None:
        self.path = path
        self.message = message
        self.source = source
        where = f"{one_line(source)}: " if source else ""
        at = f"{one_line(path)}: " if path else ""
        super().__init__(f"{where}{at}{one_line(message, 1000)}")


class StoreError(AgentError):
    """The embedded stream store or checkpoint database failed."""

    retryable = True


class StreamNotFound(StoreError):
    """A stream name that does not exist in the store."""

    retryable = False


class MetricsNotSent(AgentError):
    """PutMetricData stored nothing for sure: no connection was made, or CloudWatch refused it."""

    retryable = True


class SinkError(AgentError):
    """A destination refused or failed a request."""


class RetryableSinkError(SinkError):
    """Throttling, server errors, timeouts and network failures: back off and resend."""

    retryable = True


class FatalSinkError(SinkError):
    """Errors that will not heal by themselves (access denied, stream missing); still retried at the cap."""

    retryable = False
