"""Removing a document everywhere it lives: chunks, graph, stored bytes."""

from __future__ import annotations

import logging

from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from agentbus.contracts import DeleteDocument, DocumentDeleted

from .knowledge_graph import GraphWriter
from .store import ChunkStore

log = logging.getLogger("agentbus.ingest.deletion")


async def delete_document(
    req: DeleteDocument, store: ChunkStore, graph: GraphWriter, objects: ObjectStore
) -> DocumentDeleted:
    """Chunks and the document row go first, so search stops returning it at once.

    The graph and the stored bytes follow; they are idempotent, so a retried delete finishes what
    an interrupted one left.
    """
    removed = await store.delete(req.tenant_id, req.document_id)
    await graph.delete_document(req.tenant_id, req.document_id)
    # Every version's bytes live under <tenant>/<document>/<sha256>.
    prefix = f"{req.tenant_id}/{req.document_id}/"
    try:
        infos = await objects.list(ignore_deletes=True)
    except NotFoundError:  # an empty bucket lists as "not found"
        infos = []
    for info in infos:
        if info.name and info.name.startswith(prefix):
            await objects.delete(info.name)
    if removed is None:
        return DocumentDeleted(tenant_id=req.tenant_id, document_id=req.document_id, found=False)
    log.info("document deleted", extra={"document_id": req.document_id, "chunks": removed})
    return DocumentDeleted(
        tenant_id=req.tenant_id,
        document_id=req.document_id,
        found=True,
        chunks_removed=removed,
    )
