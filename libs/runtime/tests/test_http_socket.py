"""The services' HTTP port: every accepted connection has TCP_NODELAY.

asyncio sets TCP_NODELAY only on sockets whose `proto` is IPPROTO_TCP; a listening socket made
with the default proto 0 hands out connections without it, and Nagle then held each response's
body until the client's delayed ACK of the headers (+40 ms per keep-alive request).
"""

from __future__ import annotations

import asyncio
import socket

from agentbus.runtime.chassis import _bind


async def test_accepted_connections_have_tcp_nodelay() -> None:
    sock = _bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_connect(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = writer.get_extra_info("socket")
        seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connect, sock=sock)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(seen, 5) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
