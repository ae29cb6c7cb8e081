"""The socket-level endings every protocol of the mock backend shares."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

HOST = "127.0.0.1"
READ_SIZE = 65536


def reset_connection(writer: asyncio.StreamWriter) -> None:
    """Abort the TCP connection with an RST (SO_LINGER 0), not a FIN.

    A bare ``transport.abort()`` just closes the socket, which the peer sees
    as an orderly EOF; linger 0 makes the kernel send a reset instead, so the
    peer gets ECONNRESET like on a real dropped connection.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def wait_eof(reader: asyncio.StreamReader) -> None:
    """Discard input until the peer closes or resets the connection."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(READ_SIZE):
            pass


async def stall() -> None:
    """Go silent until cancelled (by a reset stream or the backend's shutdown)."""
    await asyncio.Event().wait()
