"""Submit documents as the gateway does: bytes into the `documents` Object Store under
`<tenant>/`, then `IngestRequested` on `agentbus.v1.ingest.submit.<tenant>`; follow progress on
the INGEST_EVENTS stream. (Outside systems' NATS users may not write the object store: they
upload through the gateway.)"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from nats.aio.client import Client as NatsClient
from nats.js import api as js_api
from pydantic import TypeAdapter

from agentbus.contracts import (
    ChunkingOverrides,
    DocumentIndexed,
    IngestFailed,
    IngestProgress,
    IngestRequested,
)
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import DOCUMENTS, INGEST_EVENTS

from ..traces import nats_span

IngestEvent = IngestProgress | DocumentIndexed | IngestFailed
_EVENT = TypeAdapter(IngestEvent)

CONTENT_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".txt": "text/plain"}


def derive_document_id(tenant_id: str, source: str) -> str:
    """A stable id per tenant and source: re-submitting a file replaces its earlier version."""
    return hashlib.sha256(f"{tenant_id}\x00{source}".encode()).hexdigest()[:24]


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower()) or (
        mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )


@dataclass(frozen=True)
class Submission:
    document_id: str
    sha256: str
    duplicate: bool  # the same bytes were already queued within the dedupe window


# Read size when hashing a file-like upload: memory stays at one piece, whatever the file size.
_PIECE = 256 * 1024


def _measure(data: BinaryIO) -> tuple[str, int]:
    """sha256 and size of a seekable file from its start; leaves it at the start again."""
    data.seek(0)
    digest, size = hashlib.sha256(), 0
    while piece := data.read(_PIECE):
        digest.update(piece)
        size += len(piece)
    data.seek(0)
    return digest.hexdigest(), size


async def submit(
    nc: NatsClient,
    tenant_id: str,
    data: bytes | BinaryIO,
    *,
    filename: str,
    source: str | None = None,
    title: str | None = None,
    tags: list[str] | None = None,
    chunking: ChunkingOverrides | None = None,
    content_type_: str | None = None,
    document_id: str | None = None,
    dedupe_suffix: str = "",
) -> Submission:
    """`document_id` defaults to one derived from the tenant and source (the gateway passes
    a keyed one: see its upload route). `dedupe_suffix` lets a caller re-submit the same bytes
    within the duplicate window on purpose (`agentbus demo` after `--remove`).

    `data` may be a seekable binary file (the gateway's spooled upload): it is hashed, then
    streamed into the object store piece by piece, never held whole in memory."""
    js = nc.jetstream()
    if isinstance(data, bytes):
        sha, size = hashlib.sha256(data).hexdigest(), len(data)
    else:
        sha, size = await asyncio.to_thread(_measure, data)
    src = source or filename
    doc = document_id or derive_document_id(tenant_id, src)
    name = f"{tenant_id}/{doc}/{sha}"
    store = await js.object_store(DOCUMENTS.name)
    await store.put(name, data)  # type: ignore[arg-type]  # a binary file is a reader too
    job = IngestRequested(
        tenant_id=tenant_id,
        document_id=doc,
        object_name=name,
        filename=filename,
        content_type=content_type_ or content_type(Path(filename)),
        size=size,
        sha256=sha,
        title=title,
        source=src,
        tags=tags or [],
        chunking=chunking or ChunkingOverrides(),
    )
    # The job carries the caller's trace context: ingest's spans join the upload's trace.
    subject = s.ingest_submit(tenant_id)
    with nats_span(
        subject, headers={"Nats-Msg-Id": f"{tenant_id}:{doc}:{sha}{dedupe_suffix}"}
    ) as headers:
        ack = await js.publish(subject, job.model_dump_json().encode(), headers=headers)
    return Submission(document_id=doc, sha256=sha, duplicate=bool(ack.duplicate))


async def submit_file(
    nc: NatsClient, tenant_id: str, path: Path, *, tags: list[str] | None = None
) -> Submission:
    """Submit a file; its absolute path is the source, so re-submitting it replaces it."""
    data, source = await asyncio.to_thread(lambda: (path.read_bytes(), str(path.resolve())))
    return await submit(nc, tenant_id, data, filename=path.name, source=source, tags=tags)


async def follow(
    nc: NatsClient,
    document_id: str,
    *,
    sha256: str | None = None,
    timeout: float = 300.0,
    since: datetime | None = None,
) -> AsyncIterator[IngestEvent]:
    """Progress events of a document from the start of the stream (or from `since`), until its
    outcome.

    With `sha256`, events of other versions are skipped (a document id is reused when a file is
    re-submitted). `since` skips the outcomes of earlier submissions of the same bytes.
    """
    js = nc.jetstream()
    start: dict[str, object] = {"deliver_policy": js_api.DeliverPolicy.ALL}
    if since is not None:
        start = {
            "deliver_policy": js_api.DeliverPolicy.BY_START_TIME,
            "config": js_api.ConsumerConfig(opt_start_time=since),
        }
    sub = await js.subscribe(
        s.ingest_progress(document_id),
        stream=INGEST_EVENTS.name,
        ordered_consumer=True,
        **start,  # type: ignore[arg-type]
    )
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"no outcome for document {document_id} within {timeout:g}s")
            try:
                msg = await sub.next_msg(timeout=min(left, 5.0))
            except TimeoutError:
                continue
            event = _EVENT.validate_json(msg.data)
            if sha256 is not None and event.sha256 not in (None, sha256):
                continue  # an earlier version of the same document
            yield event
            if isinstance(event, DocumentIndexed | IngestFailed):
                return
    finally:
        await sub.unsubscribe()
