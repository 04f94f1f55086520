"""CURVE key pairs for a client, and the layout of a keys folder made by `boxdream keys`.

Layout of a keys folder:
    server.key          server public key: copy to every client
    server.key_secret   server key pair: stays on the server
    NAME.key_secret     a client's key pair: give it, with server.key, to that client
    clients/NAME.key    public keys of the clients the server admits (delete one to revoke)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

SERVER_PUBLIC = "server.key"
SERVER_SECRET = "server.key_secret"
CLIENTS_DIR = "clients"
DEFAULT_CLIENT = "client"


@dataclass(frozen=True)
class CurveKeys:
    """A client's CURVE key pair and the server's public key (Z85 bytes)."""

    public: bytes
    """The client's public key."""
    secret: bytes
    """The client's secret key."""
    server_public: bytes
    """The public key of the server to trust."""

    @classmethod
    def load(cls, secret_file: Path, server_public_file: Path) -> CurveKeys:
        """Read a client key-pair file and a server public-key file."""
        public, secret = zmq.auth.load_certificate(secret_file)
        server_public, _ = zmq.auth.load_certificate(server_public_file)
        if secret is None:
            raise ValueError(f"{secret_file}: has no secret key")
        return cls(public=public, secret=secret, server_public=server_public)

    @classmethod
    def from_dir(cls, directory: Path, name: str = DEFAULT_CLIENT) -> CurveKeys:
        """Read `NAME.key_secret` and `server.key` from a keys folder."""
        directory = Path(directory)
        return cls.load(directory / f"{name}.key_secret", directory / SERVER_PUBLIC)

    def apply(self, socket: zmq.Socket) -> None:
        """Make `socket` a CURVE client of the server (call before connect)."""
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret
        socket.curve_serverkey = self.server_public
