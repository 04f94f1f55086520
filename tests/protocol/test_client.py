"""The client against a live server on loopback: threads, dead servers, timeouts."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import zmq

from protocol.client import Client
from protocol.errors import ProtocolError, ServerUnreachable
from protocol.limits import Limits
from protocol.messages import (
    REQUEST_TYPES,
    Accepted,
    GenerateRequest,
    Hello,
    Result,
    ServerInfo,
    decode_message,
)
from tests.backend.server.doubles import running_server
from tests.protocol.samples import sample_messages

INFO = next(m for m in sample_messages() if isinstance(m, ServerInfo))

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_no_server_is_noticed_within_seconds() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with (
        Client(address, timeout_s=0.5, retries=2) as client,
        pytest.raises(ServerUnreachable) as caught,
    ):
        client.hello()
    assert time.monotonic() - started < 3
    assert address in str(caught.value) and caught.value.address == address


def test_silent_server_is_noticed_during_a_job() -> None:
    """A ROUTER that accepts the job, then never answers again (a hung or dead server)."""
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    address = f"tcp://127.0.0.1:{port}"
    seen: list[str] = []

    def serve() -> None:
        while router.poll(3000):
            identity, *frames = router.recv_multipart()
            message = decode_message(frames, Limits(), REQUEST_TYPES)
            seen.append(message.TYPE)
            if isinstance(message, Hello):
                router.send_multipart([identity, *INFO.to_wire()])
            elif isinstance(message, GenerateRequest):
                assert message.job is not None
                router.send_multipart([identity, *Accepted(message.job, 0).to_wire()])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with Client(address, timeout_s=0.5, heartbeat_s=0.2, retries=2) as client:
        job = client.submit(GenerateRequest(prompt="a red cube"))
        started = time.monotonic()
        with pytest.raises(ServerUnreachable, match=address):
            client.wait(job, timeout_s=20)
        assert time.monotonic() - started < 3
    thread.join(10)
    router.close()
    assert seen[:2] == ["hello", "generate"]
    assert "status" in seen, "heartbeats were sent"
    assert seen.count("fetch_result") == 2, "one re-attach per reconnect"


def test_graceful_stop_interrupts_a_waiting_client(tmp_path: Path) -> None:
    server_context = running_server(tmp_path / "jobs", devices=("cpu",))
    server = server_context.__enter__()
    with Client(server.address) as client:
        job = client.submit(GenerateRequest(prompt="long steps=1000 step_ms=20"))
        server_context.__exit__(None, None, None)
        with pytest.raises(ProtocolError) as caught:
            client.wait(job, timeout_s=10)
        assert caught.value.code == "interrupted"


def test_client_works_from_a_non_main_thread(tmp_path: Path) -> None:
    results: list[Result] = []
    with running_server(tmp_path / "jobs") as server:

        def work() -> None:
            with Client(server.address) as client:
                job = client.submit(GenerateRequest(prompt="from a thread steps=2"))
                results.append(client.wait(job, timeout_s=20))

        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert len(results) == 2


def test_wait_timeout(tmp_path: Path) -> None:
    with running_server(tmp_path / "jobs") as server, Client(server.address) as client:
        job = client.submit(GenerateRequest(prompt="slow steps=100 step_ms=50"))
        with pytest.raises(TimeoutError, match=job):
            client.wait(job, timeout_s=0.3)
        client.cancel(job)
