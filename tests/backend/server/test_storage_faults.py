"""A jobs folder that fills up or turns read-only mid-job: the job fails with the cause, no
partial file stays, and the server goes on."""

from __future__ import annotations

import pytest

from protocol.client import Client
from protocol.errors import ProtocolError
from protocol.messages import GenerateRequest
from tests.backend.server.doubles import running_server
from tests.backend.server.faults import Disk
from tests.backend.server.test_restart import wait_for_step


def _fails_with(client: Client, job: str, cause: str, disk: Disk) -> None:
    """`job` ends failed with an error naming the jobs folder and `cause`, leaving no
    partial result; its state stays failed."""
    with pytest.raises(ProtocolError) as caught:
        client.wait(job, timeout_s=10)
    assert caught.value.code == "internal"
    assert caught.value.message.startswith(f"jobs folder {disk.jobs_dir}: {cause} (")
    assert client.status(job).state == "failed"
    folder = disk.jobs_dir / job
    assert not [path.name for path in folder.iterdir() if path.name.startswith(("result", "."))]


@pytest.mark.parametrize(
    ("fault", "repair", "cause"),
    [("fill", "free", "disk full"), ("read_only", "writable", "read-only")],
)
def test_a_disk_fault_mid_job_fails_it_refuses_submits_and_the_server_goes_on(
    disk: Disk, fault: str, repair: str, cause: str
) -> None:
    with (
        running_server(disk.jobs_dir, devices=("cpu",)) as server,
        Client(server.address) as client,
    ):
        job = client.submit(GenerateRequest(prompt=f"{fault} steps=10 step_ms=20"))
        wait_for_step(client, job, 1)
        getattr(disk, fault)()
        _fails_with(client, job, cause, disk)
        with pytest.raises(ProtocolError, match=f"^jobs folder {disk.jobs_dir}: {cause} .*job"):
            client.submit(GenerateRequest(prompt="refused"))
        getattr(disk, repair)()
        after = client.submit(GenerateRequest(prompt="after steps=1"))
        assert client.wait(after, timeout_s=10).meshes
