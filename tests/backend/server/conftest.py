"""Fixtures: a live server with the scripted pipeline on loopback, and clients for it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.server.service import Server
from protocol.client import Client
from tests.backend.server.doubles import running_server
from tests.backend.server.faults import Disk

pytestmark = pytest.mark.timeout(60)

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
"""Ray reads this when first imported (test_ray_pool.py imports it after this file): a local
cluster then puts its nodes on 127.0.0.1, not on the machine's network address."""


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


@pytest.fixture
def server(jobs_dir: Path) -> Iterator[Server]:
    """A server with two local CPU workers."""
    with running_server(jobs_dir, devices=("cpu", "cpu")) as running:
        yield running


@pytest.fixture
def connect(server: Server) -> Iterator[Callable[..., Client]]:
    """Make clients of `server`; all are closed after the test."""
    clients: list[Client] = []

    def make(**options: object) -> Client:
        client = Client(server.address, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(params=["injected", "tmpfs"])
def disk(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Disk]:
    """A jobs folder on a disk that can fill up and turn read-only, of each kind (`Disk`)."""
    faulty = Disk(request.param, tmp_path, monkeypatch)
    yield faulty
    faulty.close()
