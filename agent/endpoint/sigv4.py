"""AWS Signature Version 4 checks, for an endpoint given a key pair (otherwise any signature passes).

The request's canonical form is rebuilt from what arrived (method, path, query, the signed
headers, the body's SHA-256), signed with the secret the same way a client derives its key
(date → region → service → ``aws4_request``), and compared in constant time. The time stamp must
be within 15 minutes of ours, as AWS requires.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from agent.endpoint.errors import ApiError

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = 15 * 60
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<sig>[0-9a-f]{64})\s*$"
)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class KeyPair:
    access_key_id: str
    secret_access_key: str = field(repr=False)


def region_of(authorization: str | None) -> str | None:
    """The region of the credential scope of an Authorization header (ARNs name it)."""
    if not authorization:
        return None
    match = _AUTH.match(authorization)
    if match is None:
        return None
    parts = match["cred"].split("/")
    return parts[2] if len(parts) == 5 else None


def _canonical_query(query: str) -> str:
    pairs = []
    for item in query.split("&") if query else ():
        key, _eq, value = item.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def verify(
    keys: KeyPair,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    clock: Callable[[], float] = time.time,
) -> None:
    """Nothing when the request is signed with ``keys``; the AWS error a client would get if not."""
    authorization = headers.get("authorization")
    if not authorization:
        raise ApiError("MissingAuthenticationTokenException", "Missing Authentication Token", 400)
    match = _AUTH.match(authorization)
    if match is None:
        raise ApiError(
            "IncompleteSignatureException",
            "Authorization header requires Credential, SignedHeaders and Signature.",
        )
    scope_parts = match["cred"].split("/")
    if len(scope_parts) != 5 or scope_parts[4] != "aws4_request":
        raise ApiError("IncompleteSignatureException", "Malformed credential scope.")
    access_key, day, region, service, _terminator = scope_parts
    if not hmac.compare_digest(access_key, keys.access_key_id):
        raise ApiError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    stamp = headers.get("x-amz-date", "")
    try:
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise ApiError(
            "IncompleteSignatureException", "X-Amz-Date is missing or malformed."
        ) from None
    if abs(clock() - when) > MAX_SKEW or not stamp.startswith(day):
        raise ApiError(
            "InvalidSignatureException",
            f"Signature expired: {stamp} is more than 15 minutes away from the server's time.",
        )
    # (host is not required among them: the JavaScript SDK leaves it out over HTTP/2)
    signed = match["signed"].split(";")
    canonical_headers = "".join(
        f"{name}:{_SPACES.sub(' ', headers.get(name, '').strip())}\n" for name in signed
    )
    path, _q, query = target.partition("?")
    payload_hash = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    if payload_hash != "UNSIGNED-PAYLOAD" and payload_hash != hashlib.sha256(body).hexdigest():
        raise ApiError("InvalidSignatureException", "The body does not match its signed hash.")
    canonical = "\n".join(
        [
            method,
            quote(path or "/", safe="/-_.~"),
            _canonical_query(query),
            canonical_headers,
            match["signed"],
            payload_hash,
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{keys.secret_access_key}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["sig"]):
        raise ApiError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )
