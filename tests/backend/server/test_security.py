"""CURVE: listed clients are served, unlisted ones are not; the exposure warning."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from backend.server.security import ServerCurve, exposure_warning, make_keys
from protocol.client import Client
from protocol.curve import CurveKeys
from protocol.errors import ServerUnreachable
from protocol.messages import GenerateRequest
from tests.backend.server.doubles import make_server, running_server


def test_make_keys_layout(tmp_path: Path) -> None:
    files = make_keys(tmp_path / "keys")
    assert files.server_public.is_file() and files.server_secret.is_file()
    assert files.client_secret.name == "client.key_secret"
    assert files.client_public == tmp_path / "keys" / "clients" / "client.key"
    server_public = files.server_public.read_bytes()
    make_keys(tmp_path / "keys", client="studio-7")
    assert files.server_public.read_bytes() == server_public, "the server keeps its key"
    with pytest.raises(FileExistsError, match="already has keys"):
        make_keys(tmp_path / "keys", client="studio-7")


def test_keys_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        make_keys(tmp_path / "keys")
        make_keys(tmp_path / "keys", client="studio-7")
    finally:
        os.umask(old_umask)
    modes = {
        path.relative_to(tmp_path).as_posix(): stat.S_IMODE(path.stat().st_mode)
        for path in [tmp_path / "keys", *(tmp_path / "keys").rglob("*")]
    }
    assert modes == {
        "keys": 0o700,
        "keys/clients": 0o700,
        "keys/clients/client.key": 0o600,
        "keys/clients/studio-7.key": 0o600,
        "keys/client.key_secret": 0o600,
        "keys/studio-7.key_secret": 0o600,
        "keys/server.key": 0o600,
        "keys/server.key_secret": 0o600,
    }


def test_a_server_secret_others_can_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = make_keys(tmp_path / "keys")
    ServerCurve.from_dir(tmp_path / "keys")
    assert "readable by other users" not in caplog.text
    files.server_secret.chmod(0o644)
    ServerCurve.from_dir(tmp_path / "keys")
    assert f"{files.server_secret} is readable by other users (mode 0644)" in caplog.text


def test_listed_client_is_served_unlisted_is_not(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    make_keys(keys)
    stranger_dir = tmp_path / "stranger"
    make_keys(stranger_dir)
    listed = CurveKeys.from_dir(keys)
    stranger = CurveKeys(
        public=CurveKeys.from_dir(stranger_dir).public,
        secret=CurveKeys.from_dir(stranger_dir).secret,
        server_public=listed.server_public,
    )
    with running_server(tmp_path / "jobs", curve_dir=keys) as server:
        with Client(server.address, curve=listed) as client:
            assert client.hello().protocol_version == 1
            client.wait(client.submit(GenerateRequest(prompt="secret steps=1")), timeout_s=20)
        for curve in (stranger, None):
            with (
                Client(server.address, curve=curve, timeout_s=0.5, retries=1) as intruder,
                pytest.raises(ServerUnreachable, match=server.address),
            ):
                intruder.hello()


def test_server_refuses_to_start_without_admitted_clients(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    make_keys(keys)
    (keys / "clients" / "client.key").unlink()
    with pytest.raises(FileNotFoundError, match="no client public keys"):
        make_server(tmp_path / "jobs", curve_dir=keys).start()


def test_loud_warning_for_exposed_address_without_curve(caplog: pytest.LogCaptureFixture) -> None:
    warning = exposure_warning("tcp://0.0.0.0:5555", curve=False)
    assert warning is not None and "WITHOUT CURVE" in warning and "--curve DIR" in warning
    assert exposure_warning("tcp://0.0.0.0:5555", curve=True) is None
    assert exposure_warning("tcp://127.0.0.1:5555", curve=False) is None


def test_server_logs_no_warning_on_loopback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), running_server(tmp_path / "jobs"):
        pass
    assert "WITHOUT CURVE" not in caplog.text
