"""Is a Kafka broker ready? One Metadata request over a plain socket.

A broker's port opens before it has registered with its controller; until
then it lists no brokers and cannot create topics. Metadata v4 (kept by
Kafka 4.x) with an empty topic list answers with the live brokers, so one
that lists any is ready. Written by hand so that a probe made every 250 ms
during start-up logs nothing and needs no event loop.
"""

from __future__ import annotations

import socket
import struct

METADATA, VERSION, CORRELATION = 3, 4, 1
CLIENT_ID = b"kairos-probe"


def metadata_request() -> bytes:
    header = struct.pack(">hhih", METADATA, VERSION, CORRELATION, len(CLIENT_ID)) + CLIENT_ID
    body = struct.pack(">i?", 0, False)  # no topics, no auto-creation
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def live_brokers(response: bytes) -> int:
    """The broker count in a Metadata v4 response (after its size prefix)."""
    correlation, _throttle, brokers = struct.unpack_from(">iii", response)
    if correlation != CORRELATION:
        raise ValueError(f"unexpected correlation id {correlation}")
    return brokers


def broker_ready(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(metadata_request())
            (size,) = struct.unpack(">i", _read(sock, 4))
            return live_brokers(_read(sock, size)) > 0
    except (OSError, ValueError, struct.error):
        return False


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed mid-response")
        data += chunk
    return data
