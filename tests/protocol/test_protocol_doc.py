"""PROTOCOL.md documents every message type, error code and limit."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

import protocol
from protocol.errors import ErrorCode
from protocol.limits import Limits
from protocol.messages import MESSAGE_TYPES

DOC = (Path(protocol.__file__).parent / "PROTOCOL.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(MESSAGE_TYPES))
def test_every_message_type_has_a_section(name: str) -> None:
    assert f"### `{name}`" in DOC


@pytest.mark.parametrize("code", [code.value for code in ErrorCode])
def test_every_error_code_is_explained(code: str) -> None:
    assert f"| `{code}` |" in DOC


@pytest.mark.parametrize("name", [field.name for field in fields(Limits)])
def test_every_limit_is_listed(name: str) -> None:
    assert f"| `{name}` |" in DOC
