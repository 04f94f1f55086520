"""CURVE security: key folders, the server side of CURVE, and the exposure warning.

The keys folder layout is described in `protocol.curve`. `--curve DIR` makes the server use
DIR/server.key_secret and admit exactly the clients whose public keys are in DIR/clients/
(read at start: restart the server after adding or removing a key).
"""

from __future__ import annotations

import logging
import shutil
import stat
from dataclasses import astuple, dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from backend.server.access import Access
from protocol.address import is_loopback
from protocol.curve import CLIENTS_DIR, DEFAULT_CLIENT, SERVER_PUBLIC, SERVER_SECRET

log = logging.getLogger("boxdream.server.security")


@dataclass(frozen=True)
class KeyFiles:
    """Paths written by `make_keys`."""

    server_public: Path
    """Public key of the server: copy to every client."""
    server_secret: Path
    """The server's key pair: keep on the server."""
    client_secret: Path
    """The new client's key pair: give to that client with the server public key."""
    client_public: Path
    """The new client's public key, in the admitted clients folder."""


def make_keys(directory: Path, client: str = DEFAULT_CLIENT) -> KeyFiles:
    """Create the server key pair (unless present) and a key pair for client `client`, every
    file private (0600) in private folders (0700), whatever the umask.

    Raises `FileExistsError` if that client already has keys in `directory`.
    """
    directory = Path(directory)
    clients = directory / CLIENTS_DIR
    private = Access()
    private.make_folder(directory, parents=True)
    private.make_folder(clients)
    if not (directory / SERVER_SECRET).exists():
        zmq.auth.create_certificates(directory, "server")
    client_secret = directory / f"{client}.key_secret"
    client_public = clients / f"{client}.key"
    if client_secret.exists() or client_public.exists():
        raise FileExistsError(f"{client_secret}: client {client!r} already has keys")
    public, _ = zmq.auth.create_certificates(directory, client)
    shutil.move(public, client_public)
    files = KeyFiles(
        server_public=directory / SERVER_PUBLIC,
        server_secret=directory / SERVER_SECRET,
        client_secret=client_secret,
        client_public=client_public,
    )
    for path in astuple(files):
        private.restrict(path)
    return files


@dataclass(frozen=True)
class ServerCurve:
    """The server's CURVE key pair and the folder of admitted client public keys."""

    public: bytes
    """Server public key (Z85)."""
    secret: bytes
    """Server secret key (Z85)."""
    clients_dir: Path
    """Folder of admitted client public keys (*.key)."""

    @classmethod
    def from_dir(cls, directory: Path) -> ServerCurve:
        """Read the server key pair from a keys folder made by `make_keys`."""
        directory = Path(directory)
        mode = stat.S_IMODE((directory / SERVER_SECRET).stat().st_mode)
        if mode & 0o077:
            log.warning(
                "%s is readable by other users (mode %04o): chmod 600 it",
                directory / SERVER_SECRET,
                mode,
            )
        public, secret = zmq.auth.load_certificate(directory / SERVER_SECRET)
        if secret is None:
            raise ValueError(f"{directory / SERVER_SECRET}: has no secret key")
        clients = directory / CLIENTS_DIR
        if not clients.is_dir() or not any(clients.glob("*.key")):
            raise FileNotFoundError(f"{clients}: no client public keys to admit")
        return cls(public=public, secret=secret, clients_dir=clients)

    def apply(self, socket: zmq.Socket) -> None:
        """Make `socket` a CURVE server (call before bind)."""
        socket.curve_server = True
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret

    def start_authenticator(self, context: zmq.Context) -> ThreadAuthenticator:
        """Start the ZAP handler that admits only the listed clients; stop it when done."""
        authenticator = ThreadAuthenticator(context)
        authenticator.start()
        authenticator.configure_curve(domain="*", location=str(self.clients_dir))
        return authenticator


def exposure_warning(address: str, curve: bool) -> str | None:
    """The loud warning for binding a network-reachable address without CURVE, else None."""
    if curve or is_loopback(address):
        return None
    return (
        "\n" + "!" * 78 + "\n"
        f"!!! WARNING: serving on {address} WITHOUT CURVE security.\n"
        "!!! Anyone who can reach this address can submit jobs and read every result.\n"
        "!!! Make keys with `boxdream keys DIR` and start the server with `--curve DIR`.\n"
        + "!"
        * 78
    )
