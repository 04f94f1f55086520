"""Who may read what the server writes: its owner only (the default), or also one group.

Private: folders 0700, files 0600. Shared with a group (`--jobs-group`, for studios that
share results): folders 0750 with the set-group-id bit, so that new files take the group,
and files 0640. Modes are set explicitly, whatever the umask.
"""

from __future__ import annotations

import grp
import os
import stat
from dataclasses import dataclass
from pathlib import Path


def group_id(name: str) -> int:
    """The id of group `name` (a name or a number); `KeyError` names an unknown group."""
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise KeyError(f"no group {name!r} on this machine") from None


@dataclass(frozen=True)
class Access:
    """The modes (and group) of the folders and files the server creates."""

    group: int | None = None
    """Group that may read (not write) them, or None for the owner only."""

    @property
    def folder_mode(self) -> int:
        """Mode of a folder."""
        return 0o700 if self.group is None else 0o2750

    @property
    def file_mode(self) -> int:
        """Mode of a file."""
        return 0o600 if self.group is None else 0o640

    def make_folder(self, path: Path, *, parents: bool = False) -> None:
        """Create `path` (or take it over if it exists) with this access."""
        path.mkdir(mode=self.folder_mode, parents=parents, exist_ok=True)
        if self.group is not None and path.stat().st_gid != self.group:
            os.chown(path, -1, self.group)
        if stat.S_IMODE(path.stat().st_mode) != self.folder_mode:
            os.chmod(path, self.folder_mode)

    def open_file(self, path: Path, flags: int) -> int:
        """`os.open` a file for writing with this access; returns the descriptor."""
        descriptor = os.open(path, flags | os.O_WRONLY | os.O_CREAT, self.file_mode)
        try:
            os.fchmod(descriptor, self.file_mode)
        except OSError:
            os.close(descriptor)
            raise
        return descriptor

    def restrict(self, path: Path) -> None:
        """Give an existing file this access's mode."""
        os.chmod(path, self.file_mode)
