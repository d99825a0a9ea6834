"""Shared fixtures: the real test peers (kinesalite, moto_server) on 127.0.0.1, once per session.

A peer that cannot start fails every test that asks for it; nothing is skipped silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.peers.helpers import new_stream
from tests.peers.servers import TEST_ENV, Peer, PeerError, start_kinesalite, start_moto

# The suite runs on a 2-core machine next to the agent processes and peers it starts: example
# generation and single examples are slow there now and then, which says nothing about the code.
settings.register_profile(
    "suite", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile("suite")


@pytest.fixture(scope="session", autouse=True)
def _no_real_aws() -> Iterator[None]:
    """Dummy credentials, no instance metadata, loopback never proxied: nothing reaches AWS."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in TEST_ENV.items():
            mp.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
            mp.delenv(key, raising=False)
        yield


def _start(factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    try:
        peer = factory(tmp_path_factory.mktemp("peer"))
    except PeerError as exc:
        pytest.fail(f"test peer unavailable: {exc}", pytrace=False)
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="session")
def kinesalite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    yield from _start(start_kinesalite, tmp_path_factory)


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    yield from _start(start_moto, tmp_path_factory)


@pytest.fixture
def stream(kinesalite: Peer) -> str:
    return new_stream(kinesalite.endpoint)
