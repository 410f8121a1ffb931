"""The documents table's readers (`stores/documents.py`) over the real PostgreSQL: every read is
one tenant's, and a database where ingest never ran reads as a tenant without documents."""

from __future__ import annotations

import uuid

from agentbus.runtime.stores import documents
from agentbus.runtime.stores.chunks import create_pool
from agentbus.runtime.testing import scratch_database


async def test_reads_are_tenant_scoped_and_survive_a_missing_table(
    service_env: dict[str, str],
) -> None:
    dsn = service_env["AGENTBUS_POSTGRES_DSN"]
    async with scratch_database(dsn, "docs") as empty:
        # No `documents` table at all: ingest has not started on this database.
        assert await documents.page(empty, "t1", 10, 0) == []
        assert await documents.page(empty, "t1", 10, 0, indexed_only=True) == []
        assert await documents.one(empty, "t1", "d1") is None
        assert not await documents.exists(empty, "t1", "d1")
        assert await documents.stored_file(empty, "t1", "d1") is None
        assert await documents.latest_titled(empty, "t1", "Guide") is None
        assert await documents.with_bytes(empty, "t1") == []

    pool = await create_pool(dsn, 384)
    a, b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    try:
        for tenant, doc, status, sha in (
            (a, "d1", "indexed", "s1"),
            (a, "d2", "queued", ""),
            (b, "d3", "indexed", "s3"),
        ):
            await pool.execute(
                "INSERT INTO documents (tenant_id, document_id, sha256, fingerprint, status,"
                " filename, content_type, title) VALUES ($1, $2, $3, 'f', $4, 'g.md',"
                " 'text/markdown', 'Guide')",
                tenant,
                doc,
                sha,
                status,
            )
        assert {d["document_id"] for d in await documents.page(pool, a, 10, 0)} == {"d1", "d2"}
        assert [
            d["document_id"] for d in await documents.page(pool, a, 10, 0, indexed_only=True)
        ] == ["d1"]
        assert await documents.exists(pool, a, "d1") and not await documents.exists(pool, a, "d3")
        assert await documents.one(pool, a, "d3") is None
        assert (await documents.one(pool, b, "d3") or {}).get("status") == "indexed"
        assert await documents.stored_file(pool, a, "d1") == ("s1", "g.md", "text/markdown")
        assert await documents.stored_file(pool, a, "d2") is None  # no bytes stored yet
        assert [d["document_id"] for d in await documents.with_bytes(pool, a)] == ["d1"]
        titled = await documents.latest_titled(pool, b, "Guide")
        assert titled is not None and titled[0] == "d3"
    finally:
        await pool.execute("DELETE FROM documents WHERE tenant_id = ANY($1::text[])", [a, b])
        await pool.close()
