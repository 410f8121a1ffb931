"""Documents: upload (object store + IngestRequested, as any system would), status, progress."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    HTTPException,
    Query,
    Request,
    UploadFile,
)
from fastapi.responses import Response, StreamingResponse
from nats.js.api import DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from agentbus.contracts import DeleteDocument, DocumentDeleted
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import INGEST_EVENTS
from agentbus.runtime.clients.ingest import submit
from agentbus.runtime.stores import documents

from ..auth.deps import AuthService, CurrentPrincipal
from ..ratelimit import per_tenant
from ..sse import HEARTBEAT, frame, sse_response
from ..upstream import request_reply
from . import versions
from .responses import Document, DocumentPage, UploadAccepted

router = APIRouter(prefix="/api/v1", tags=["documents"])
Auth = CurrentPrincipal

TYPES = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}
ALLOWED = set(TYPES.values())
# What IngestRequested and the documents table take (checked before the bytes are stored).
MAX_FILENAME = 255
MAX_TAGS = 100
MAX_TAG = 100


@dataclass(frozen=True)
class StorageQuota:
    """Per tenant: documents and uploaded bytes (kept on app.state.storage_quota)."""

    documents: int = 10_000
    bytes: int = 10 * 1024**3


def _content_type(upload: UploadFile) -> str:
    declared = (upload.content_type or "").split(";")[0].strip().lower()
    by_name = TYPES.get(PurePath(upload.filename or "").suffix.lower())
    if declared in ALLOWED:
        return declared
    if by_name and declared in ("", "application/octet-stream"):
        return by_name
    raise HTTPException(
        415, f"Unsupported document type {declared or 'unknown'}; send txt, md, html or pdf"
    )


@router.post(
    "/documents",
    status_code=202,
    summary="Upload a document for indexing",
    dependencies=[Depends(per_tenant("upload"))],
    response_model=UploadAccepted,
)
async def upload(
    request: Request,
    principal: Auth,
    file: Annotated[UploadFile, File(description="txt, md, html or pdf")],
    title: Annotated[str | None, Form(max_length=500)] = None,
    tags: Annotated[str | None, Form(description="Comma-separated tags")] = None,
) -> dict[str, Any]:
    ctype = _content_type(file)
    # Every field is checked before a byte is stored: a refusal leaves no orphan object.
    name = PurePath(file.filename or "upload").name
    if len(name) > MAX_FILENAME:
        raise HTTPException(422, f"The file name is over {MAX_FILENAME} characters")
    tag_list = [t.strip() for t in (tags or "").split(",") if t.strip()]
    if len(tag_list) > MAX_TAGS or any(len(t) > MAX_TAG for t in tag_list):
        raise HTTPException(422, f"At most {MAX_TAGS} tags of up to {MAX_TAG} characters each")
    # Starlette spooled the upload to a temporary file (disk past 1 MiB); it is streamed from
    # there into the object store, never read whole into memory.
    spooled = file.file
    spooled.seek(0, 2)
    size = spooled.tell()
    spooled.seek(0)
    if not size:
        raise HTTPException(400, "The file is empty")
    nc = request.app.state.runs.nc
    auth: AuthService = request.app.state.auth
    store = request.app.state.store
    # Keyed: the same name replaces the same document, but nobody can compute another
    # tenant's id from a guessed file name.
    doc = auth.tokens.keyed_id("document", principal.tenant_id, f"upload:{name}")
    # A changed file under an existing document's title (or sent to .../versions) is a new
    # version of that document: same id, history in versions.py.
    doc = await versions.target(request, principal.tenant_id, doc, title)
    docs, used, mine = await store.storage_usage(principal.tenant_id, doc)
    limits: StorageQuota = getattr(request.app.state, "storage_quota", StorageQuota())
    if mine is None and docs >= limits.documents:
        raise HTTPException(413, f"Document quota reached ({limits.documents} documents)")
    if used - (mine or 0) + size > limits.bytes:
        raise HTTPException(413, f"Storage quota reached ({limits.bytes} bytes)")
    try:
        sub = await submit(
            nc,
            principal.tenant_id,
            spooled,
            document_id=doc,
            filename=name,
            source=f"upload:{name}",
            title=title,
            tags=tag_list,
            content_type_=ctype,
        )
    except APIError as exc:
        # The bucket's max_bytes (AGENTBUS_DOCUMENTS_MAX_BYTES): the put removed its chunks.
        if "maximum bytes" not in str(exc.description or "").lower():
            raise
        raise HTTPException(413, "The document store is full; ask an operator") from None
    # Recorded once stored: a refused upload counts nothing against the quota.
    await store.record_upload(principal.tenant_id, doc, size)
    version = await versions.record(request, principal, doc, sub.sha256, name, title, ctype)
    return {
        "document_id": sub.document_id,
        "version": version,
        "sha256": sub.sha256,
        "status": "unchanged" if sub.duplicate else "queued",
        "events": f"/api/v1/documents/{sub.document_id}/events",
    }


def _pool(request: Request) -> Any:
    return request.app.state.store.pool


@router.get("/documents", summary="List documents", response_model=DocumentPage)
async def list_documents(
    request: Request,
    principal: Auth,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    items = await documents.page(_pool(request), principal.tenant_id, limit, offset)
    return {"items": items, "limit": limit, "offset": offset}


@router.get("/documents/{document_id}", summary="A document's status", response_model=Document)
async def get_document(document_id: str, request: Request, principal: Auth) -> dict[str, Any]:
    row = await documents.one(_pool(request), principal.tenant_id, document_id)
    if row is None:
        raise HTTPException(404, "Document not found")
    return row


@router.delete(
    "/documents/{document_id}",
    status_code=204,
    summary="Delete a document: its chunks, graph links and stored bytes",
    responses={404: {"description": "No such document for this tenant"}},
)
async def delete_document(document_id: str, request: Request, principal: Auth) -> Response:
    try:
        req = DeleteDocument(tenant_id=principal.tenant_id, document_id=document_id)
    except ValueError:
        # Not a valid id, so no document of this tenant has it.
        raise HTTPException(404, "Document not found") from None
    nc = request.app.state.runs.nc
    reply = await request_reply(nc, s.INGEST_DELETE, req, DocumentDeleted, "Delete")
    await request.app.state.store.forget_upload(principal.tenant_id, document_id)
    await versions.forget(request, principal.tenant_id, document_id)
    if not reply.found:
        raise HTTPException(404, "Document not found")
    return Response(status_code=204)


async def _progress(
    request: Request, tenant_id: str, document_id: str, after: int
) -> AsyncIterator[bytes]:
    js = request.app.state.runs.nc.jetstream()
    sub = await js.subscribe(
        s.ingest_progress(document_id),
        stream=INGEST_EVENTS.name,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=request.app.state.runs.heartbeat_s)
            except TimeoutError:
                yield HEARTBEAT
                continue
            body = json.loads(msg.data)
            if body.get("tenant_id") != tenant_id:
                return
            seq = msg.metadata.sequence.stream
            if seq <= after:
                continue  # the client saw it before it reconnected
            kind = "indexed" if "chunks" in body else "failed" if "reason" in body else "progress"
            yield frame(kind, body, seq)
            if kind != "progress":
                return
    finally:
        await sub.unsubscribe()


async def _known(request: Request, tenant_id: str, document_id: str) -> bool:
    """Whether `tenant_id` has this document: uploaded here, indexed, or (submitted over the
    bus) in progress. Only the tenant's own records are asked, so "not yours" and "does not
    exist" are the same answer."""
    if await request.app.state.store.uploaded(tenant_id, document_id):
        return True
    if await documents.exists(_pool(request), tenant_id, document_id):
        return True
    try:
        last = await request.app.state.runs.nc.jetstream().get_last_msg(
            INGEST_EVENTS.name, s.ingest_progress(document_id)
        )
    except (NotFoundError, s.SubjectError):
        return False
    return bool(json.loads(last.data or b"{}").get("tenant_id") == tenant_id)


async def _tracked(
    request: Request, tenant_id: str, events: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    try:
        async for chunk in events:
            yield chunk
    finally:
        request.app.state.runs.open_streams.release(tenant_id)


@router.get(
    "/documents/{document_id}/events",
    summary="Indexing progress (SSE, resumable)",
    dependencies=[Depends(per_tenant("stream"))],
    responses={404: {"description": "No such document for this tenant"}},
)
async def document_events(
    document_id: str,
    request: Request,
    principal: Auth,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    tenant = principal.tenant_id
    if not await _known(request, tenant, document_id):
        raise HTTPException(404, "Document not found")
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    request.app.state.runs.open_streams.claim(tenant)  # 429 past the tenant's open streams
    progress = _tracked(request, tenant, _progress(request, tenant, document_id, after))
    return sse_response(request.app.state.runs.streams.track("ingest", progress))
