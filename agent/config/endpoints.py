"""AWS endpoints and regions as agent.json gives them, read and checked without botocore.

The AWS clients are built at the first call that needs one (agent/sinks/aws.py), so that a run
that sends nothing never imports botocore. What botocore would refuse when the client is built
(an endpoint that is no URL, a region that is no host label) is checked here instead, when the
configuration is loaded: ``check`` and ``run`` refuse it at start, exit 78, naming the key.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# A DNS label, and what a region must look like: botocore takes a region name only as a host
# label (letters, digits and inner hyphens, at most 63), and not one of digits alone.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
_SCHEMES = ("http", "https")
DEFAULT_REGION = "us-east-1"  # as the AWS agent (SDK default) when no region is given


def normalize_endpoint(endpoint: str | None) -> str | None:
    """The AWS agent (SDK v1) takes endpoints without a scheme and means https; botocore needs one."""
    if not endpoint:
        return None
    return endpoint if "://" in endpoint else f"https://{endpoint}"


def region_from_endpoint(endpoint: str | None) -> str | None:
    """``https://kinesis.eu-west-1.amazonaws.com`` → ``eu-west-1``; None for anything else."""
    if not endpoint:
        return None
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    parts = host.split(".")
    if len(parts) >= 4 and parts[-2] == "amazonaws" and parts[1] != "amazonaws":
        return parts[1]
    return None


def configured_region(service: str, endpoint: str | None, kinesis_region: str | None) -> str | None:
    """The region agent.json gives a service's client (None: the SDK's chain for kinesis,
    us-east-1 for firehose): ``kinesis.region``, else the region of an AWS endpoint's host name.
    There is no firehose.region key (as in the AWS agent)."""
    if service == "kinesis" and kinesis_region:
        return kinesis_region
    return region_from_endpoint(endpoint)


def region_problem(region: str) -> str | None:
    """Why ``region`` cannot name an AWS region (None: it can)."""
    if _LABEL.match(region) and not _DIGITS.match(region):
        return None
    return f"{region!r} is not a region name (letters, digits and hyphens, e.g. eu-west-1)"


def endpoint_problem(endpoint: str) -> str | None:
    """Why ``endpoint`` (as agent.json gives it: the scheme may be left out) is not a usable
    endpoint URL (None: it is)."""
    url = normalize_endpoint(endpoint)
    if url is None:
        return None
    bad = f"{endpoint!r} is not an endpoint URL"
    if any(c in url for c in "\t\r\n"):  # urlsplit would drop them silently
        return f"{bad} (it contains a control character)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number or out of range
    except ValueError as exc:
        return f"{bad} ({exc})"
    if parts.scheme not in _SCHEMES:
        return f"{bad} (the scheme must be http or https, not {parts.scheme!r})"
    host = parts.hostname
    if not host:
        return f"{bad} (no host)"
    if "[" in parts.netloc:
        return None  # a bracketed IPv6 address: urlsplit has checked it
    labels = host.removesuffix(".").split(".")
    if len(host) > 255 or not all(_LABEL.match(label) for label in labels):
        return f"{bad} ({host!r} is not a host name)"
    return None
