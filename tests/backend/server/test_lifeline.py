"""Endpoint folders left by a crashed server are removed by the next one."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

from backend.server.lifeline import reap_endpoint_folders


def test_only_endpoint_folders_nobody_serves_are_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folders = {name: tmp_path / name for name in ("boxdream-dead", "boxdream-live", "boxdream-new")}
    for folder in folders.values():
        folder.mkdir()
    (tmp_path / "unrelated").mkdir()
    with (
        socket.socket(socket.AF_UNIX) as dead,
        socket.socket(socket.AF_UNIX) as live,
    ):
        dead.bind(str(folders["boxdream-dead"] / "workers"))
        live.bind(str(folders["boxdream-live"] / "workers"))
        live.listen()
        assert reap_endpoint_folders() == [folders["boxdream-dead"]]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "boxdream-live",
        "boxdream-new",
        "unrelated",
    ]
