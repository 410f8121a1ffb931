"""A graph server that stops answering does not hold ingest forever: a statement gives up after
its bound with a timeout (the job or event is NAKed and retried), and the next statement starts
on a new driver, not on the stalled connection. The silent server is a real TCP listener that
accepts and never replies, as a stalled Bolt listener does."""

from __future__ import annotations

import asyncio
import time

import pytest

from agentbus.ingest.knowledge_graph import GraphWriter


async def test_a_silent_server_times_out_and_the_driver_is_replaced() -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept, read nothing back, never answer

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    graph = GraphWriter(f"bolt://127.0.0.1:{port}", falkordb=True, timeout_s=0.5)
    first = graph.driver
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await graph.run("RETURN 1 AS ok")
        assert time.monotonic() - started < 5
        assert graph.driver is not first  # the next statement starts on a fresh connection
        with pytest.raises(TimeoutError):
            await graph.run("RETURN 1 AS ok")
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
        await asyncio.wait_for(graph.close(), 10)
