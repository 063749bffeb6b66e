"""The MHE parties' transport: OpenFHE's serialized bytes in length-prefixed frames over TCP.

A frame is a 1-byte tag (what the payload is, `TAGS`), an 8-byte big-endian payload
length, then the payload: an object serialized by OpenFHE (`Serialize(obj, BINARY)`)
or, for the revealed answer, UTF-8 JSON.  The protocol fixes how many frames of which
tag each step sends, so a frame carries no more than that; a tag that is not the one
expected is an error, never skipped.  The topology is a star: party 0 (the aggregator,
itself a site) dials every other party once, in that direction only (the harness's
relay routes i -> j for i < j), and every message of the run travels on those links.
Each `Peer` counts the bytes its party sent on it, headers included.

Plain blocking sockets: each step is a send to every peer followed by a receive from
every peer, and a peer reads everything sent to it before it answers, so no step
can deadlock on full buffers.  It assumes loopback (or the relay) and semi-honest
peers: nothing is authenticated.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

_HEADER = struct.Struct(">cQ")
TAGS = {
    b"P": "public key share",
    b"E": "relinearisation key share (round 1)",
    b"M": "relinearisation key share (round 2)",
    b"T": "a truth table's ciphertext (private criteria)",
    b"C": "ciphertext",
    b"D": "partial decryption",
    b"A": "the revealed answer (JSON)",
}
CONNECT_TIMEOUT_S = 60.0
_RETRY_S = 0.02


class FrameError(RuntimeError):
    """A peer sent something other than the frame the protocol expects, or went away."""


@dataclass
class Peer:
    """One link of the star: the socket to the other party and the bytes sent on it."""

    party: int
    sock: socket.socket
    sent: int = 0

    def send(self, tag: bytes, payload: bytes) -> None:
        if tag not in TAGS:
            raise ValueError(f"unknown frame tag {tag!r}")
        self.sock.sendall(_HEADER.pack(tag, len(payload)) + payload)
        self.sent += _HEADER.size + len(payload)

    def receive(self, tag: bytes) -> bytes:
        """The next frame's payload, which must be a `tag` frame."""
        got, size = _HEADER.unpack(self._exactly(_HEADER.size))
        if got != tag:
            raise FrameError(f"party {self.party} sent a {got!r} frame, expected {tag!r} ({TAGS[tag]})")
        return self._exactly(size)

    def _exactly(self, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            chunk = self.sock.recv(min(size - len(out), 1 << 20))
            if not chunk:
                raise FrameError(f"party {self.party} closed the link mid-frame")
            out += chunk
        return bytes(out)

    def close(self) -> None:
        self.sock.close()


def dial(party: int, host: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> Peer:
    """Connect to `party` at `port`, retrying while it is not listening yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            sock = socket.create_connection((host, port))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(_RETRY_S)
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Peer(party, sock)


def accept(party: int, host: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> Peer:
    """Listen on `port` and take one connection: from `party`, the aggregator."""
    with socket.create_server((host, port)) as server:
        server.settimeout(timeout_s)
        sock, _ = server.accept()
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Peer(party, sock)
