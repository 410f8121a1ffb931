"""One document job, stage by stage: fetch, parse, chunk, embed, store, graph.

Every stage is idempotent so a redelivered job resumes instead of redoing paid work:
- same bytes and same pipeline config as the indexed version: reported `unchanged`, nothing written;
- embedded chunks are staged per document version; a resumed job embeds only what is missing;
- the swap to the new chunks is one transaction; the graph write replaces the document's part.
Bad input ends in `IngestFailed` with a reason and an ack (retrying cannot help); transient
failures are nak'ed with a delay, and the last attempt publishes `IngestFailed(retryable=True)`
and terminates the message, whose advisory is the dead-letter record.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from faststream.nats import NatsBroker
from faststream.nats.message import NatsMessage
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore
from prometheus_client import CollectorRegistry

from agentbus.contracts import (
    DocumentIndexed,
    IngestFailed,
    IngestProgress,
    IngestRequested,
    LlmUsage,
)
from agentbus.contracts import subjects as s
from agentbus.contracts.ingest import IngestStage
from agentbus.contracts.streams import DOCUMENTS, INGEST_EVENTS, INGEST_JOBS, TELEMETRY
from agentbus.runtime.consuming import (
    Rejects,
    decode_or_reject,
    heartbeat,
    is_last_delivery,
    nak_delay,
)
from agentbus.runtime.llm.embeddings import embed
from agentbus.runtime.logs import log_context
from agentbus.runtime.metrics import StageMetrics
from agentbus.runtime.outbox import Outbox
from agentbus.runtime.stores import pipeline_settings
from agentbus.runtime.traces import tracer

from .chunking import Chunk, chunk_document
from .config import PipelineConfig, PipelineConfigError, fingerprint, for_tenant, with_overrides
from .extraction import extract
from .knowledge_graph import Cooccurrence, GraphWriter, Mention
from .parsing import ParseError, parse
from .store import ChunkStore, StagedChunk

log = logging.getLogger("agentbus.ingest.worker")

# The Nats-Msg-Id of the job being processed: its progress events' ids derive from it, so a
# redelivery of the same job re-sends the same ids (dropped by JetStream) while a new submission
# of the same bytes (a reload after a delete) is not mistaken for a repeat.
_JOB_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_key", default=None)

FailedStage = IngestStage | Literal["validate"]


class JobFailed(Exception):
    """The job cannot succeed however often it is retried."""

    def __init__(self, stage: FailedStage, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason


@dataclass(frozen=True)
class Outcome:
    indexed: DocumentIndexed


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class IngestWorker:
    def __init__(
        self,
        broker: NatsBroker,
        store: ChunkStore,
        graph: GraphWriter,
        config: PipelineConfig,
        rejects: Rejects,
        stages: StageMetrics | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.broker = broker
        # Progress, outcomes and usage the bus refuses (INGEST_EVENTS or TELEMETRY full, a
        # leader election) are sent later; they never fail a document that was indexed fine.
        self.outbox = Outbox(self._publish_now, registry)
        self.store = store
        self.graph = graph
        self.config = config
        self.rejects = rejects
        self.stages = stages
        self._objects: ObjectStore | None = None

    @contextlib.contextmanager
    def _stage(self, stage: str, job: IngestRequested) -> Iterator[None]:
        """A span and a duration sample for one stage of a document."""
        timed = self.stages.time(stage) if self.stages else contextlib.nullcontext()
        with (
            tracer().start_as_current_span(
                f"ingest {stage}",
                attributes={
                    "agentbus.ingest.stage": stage,
                    "agentbus.document_id": job.document_id,
                },
            ),
            timed,
        ):
            yield

    # -- the message ---------------------------------------------------------------------------

    async def handle(self, msg: NatsMessage) -> None:
        job = await decode_or_reject(msg, IngestRequested, self.rejects)
        if job is None:
            return
        subject = msg.raw_message.subject
        try:
            tenant = s.parse_ingest_submit(subject)
        except s.SubjectError:
            tenant = ""
        if tenant != job.tenant_id:
            # The subject is what NATS permissions bind to a publisher's tenant; a body
            # claiming another tenant is never trusted.
            log.warning(
                "rejected message",
                extra={"subject": subject, "reason": "tenant_mismatch", "tenant_id": tenant},
            )
            self.rejects.count(subject, "tenant_mismatch")
            await msg.reject()
            return
        _JOB_KEY.set((msg.raw_message.headers or {}).get("Nats-Msg-Id"))
        with log_context(tenant_id=job.tenant_id):
            async with heartbeat(msg, INGEST_JOBS):
                try:
                    await self.process(job)
                except JobFailed as exc:
                    await self._failed(job, exc.stage, exc.reason, retryable=False)
                    await msg.ack()
                    return
                except Exception as exc:
                    reason = f"{type(exc).__name__}: {exc}"[:500]
                    if is_last_delivery(msg, INGEST_JOBS):
                        await self._failed(
                            job,
                            "stored",
                            f"gave up after {INGEST_JOBS.max_deliver} attempts: {reason}",
                            retryable=True,
                        )
                        await msg.reject()
                    else:
                        log.warning(
                            "ingest attempt failed; will retry",
                            extra={"document_id": job.document_id, "reason": reason},
                        )
                        await msg.nack(delay=nak_delay(msg, INGEST_JOBS))
                    return
            await msg.ack()

    # -- the stages ----------------------------------------------------------------------------

    async def process(self, job: IngestRequested) -> Outcome:
        started = time.perf_counter()
        t, doc = job.tenant_id, job.document_id
        await self._progress(job, "received")
        # The tenant's saved settings (gateway `PUT /api/v1/settings/pipeline`), read per job so
        # a change applies to the next document on every replica.
        stored = await pipeline_settings.load(self.store.pool, t)
        try:
            cfg = with_overrides(for_tenant(self.config, stored), job.chunking)
        except PipelineConfigError as exc:
            raise JobFailed("validate", str(exc)) from None
        if job.size > cfg.max_file_bytes:
            raise JobFailed(
                "validate", f"file is {job.size} bytes, over the limit of {cfg.max_file_bytes}"
            )
        if not job.object_name.startswith(f"{t}/"):
            # Objects are keyed by tenant; a job may only point at its own tenant's bytes.
            raise JobFailed("validate", f"object_name must lie under {t}/")
        fp = fingerprint(cfg)
        existing = await self.store.document(t, doc)
        same_version = existing is not None and (existing.sha256, existing.fingerprint) == (
            job.sha256,
            fp,
        )
        if same_version and existing is not None and existing.status == "indexed":
            indexed = DocumentIndexed(
                tenant_id=t,
                document_id=doc,
                sha256=job.sha256,
                chunks=existing.chunk_count,
                pages=existing.page_count,
                entities=existing.entity_count,
                unchanged=True,
                duration_ms=(time.perf_counter() - started) * 1e3,
            )
            await self._publish(indexed, job, f"unchanged:{job.id}")
            return Outcome(indexed)

        if same_version and existing is not None and existing.status == "stored":
            # A crash after the swap: only the graph step is left.
            chunks_count, pages, title = existing.chunk_count, existing.page_count, job.title
        else:
            chunks_count, pages, title = await self._index_chunks(job, cfg, fp)

        with self._stage("graph", job):
            entities = await self._graph(job, title, cfg)
        await self.store.mark_indexed(t, doc, entities)
        await self._progress(job, "graphed", entities, entities)
        indexed = DocumentIndexed(
            tenant_id=t,
            document_id=doc,
            sha256=job.sha256,
            chunks=chunks_count,
            pages=pages,
            entities=entities,
            duration_ms=(time.perf_counter() - started) * 1e3,
        )
        await self._publish(indexed, job, "indexed")
        log.info(
            "document indexed",
            extra={"document_id": doc, "chunks": chunks_count, "entities": entities},
        )
        return Outcome(indexed)

    async def _index_chunks(
        self, job: IngestRequested, cfg: PipelineConfig, fp: str
    ) -> tuple[int, int, str | None]:
        with self._stage("fetch", job):
            data = await self._fetch(job)
        # Parsing, chunking and extraction are CPU work: off the event loop, so heartbeats and
        # health replies keep flowing while a large document is processed.
        with self._stage("parse", job):
            try:
                parsed = await asyncio.to_thread(parse, data, job.filename, job.content_type)
            except ParseError as exc:
                raise JobFailed("parsed", exc.reason) from None
        pages = sum(1 for p in parsed.pages if p.number is not None)
        await self._progress(job, "parsed", len(parsed.pages), len(parsed.pages))
        with self._stage("chunk", job):
            chunks = await asyncio.to_thread(chunk_document, parsed, cfg.chunking)
        if not chunks:
            raise JobFailed("chunked", "no text to index")
        await self._progress(job, "chunked", len(chunks), len(chunks))
        title = job.title or parsed.title
        version = f"{job.sha256[:24]}-{fp}"
        with self._stage("embed", job):
            await self.store.begin(job, fp)
            await self._embed(job, cfg, version, chunks)
        with self._stage("store", job):
            await self.store.swap(job, version, title, len(chunks), pages)
        await self._progress(job, "stored", len(chunks), len(chunks))
        return len(chunks), pages, title

    async def _fetch(self, job: IngestRequested) -> bytes:
        if self._objects is None:
            self._objects = await self.broker.config.connection_state.stream.object_store(
                DOCUMENTS.name
            )
        try:
            # The stored size, measured before anything is read into memory: the declared one
            # is only what the publisher says.
            info = await self._objects.get_info(job.object_name)
        except (ObjectNotFoundError, NotFoundError):
            raise JobFailed(
                "validate", f"file bytes not found in object store: {job.object_name}"
            ) from None
        if info.size != job.size:
            raise JobFailed(
                "validate",
                f"the stored object is {info.size} bytes, the job declares {job.size}",
            )
        try:
            result = await self._objects.get(job.object_name)
        except (ObjectNotFoundError, NotFoundError):
            raise JobFailed(
                "validate", f"file bytes not found in object store: {job.object_name}"
            ) from None
        data = result.data or b""
        if hashlib.sha256(data).hexdigest() != job.sha256:
            raise JobFailed("validate", "stored bytes do not match the declared sha256")
        return data

    async def _embed(
        self, job: IngestRequested, cfg: PipelineConfig, version: str, chunks: list[Chunk]
    ) -> None:
        done = await self.store.staged(job.tenant_id, job.document_id, version)
        todo = [c for c in chunks if done.get(c.index) != content_hash(c.text)]
        finished = len(chunks) - len(todo)
        if finished:
            log.info("resuming embedding", extra={"document_id": job.document_id, "done": finished})
        await self._progress(job, "embedded", finished, len(chunks))
        size = cfg.embedding.batch_size
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            result = await embed(
                [c.text for c in batch], cfg.embedding.model, dimensions=cfg.embedding.dimensions
            )
            await self.store.stage(
                job.tenant_id,
                job.document_id,
                version,
                [
                    StagedChunk(c.index, content_hash(c.text), c.page, c.text, v)
                    for c, v in zip(batch, result.vectors, strict=True)
                ],
            )
            finished += len(batch)
            await self._progress(job, "embedded", finished, len(chunks))
            await self._usage(
                job, result.model, result.input_tokens, result.cost_usd, result.latency_ms
            )

    async def _graph(self, job: IngestRequested, title: str | None, cfg: PipelineConfig) -> int:
        rows = await self.store.chunks_for_graph(job.tenant_id, job.document_id)
        mentions: list[Mention] = []
        weights: defaultdict[tuple[str, str], float] = defaultdict(float)
        names: set[str] = set()
        limit = cfg.extraction.max_entities_per_chunk
        extracted = await asyncio.to_thread(lambda: [extract(r["text"], limit) for r in rows])
        for row, (entities, relations) in zip(rows, extracted, strict=True):
            for e in entities:
                mentions.append(Mention(row["chunk_index"], e.key, e.name, e.kind, e.count))
                names.add(e.key)
            for r in relations:
                weights[(r.source, r.target)] += r.weight
        related = [Cooccurrence(a, b, w) for (a, b), w in sorted(weights.items())]
        await self.graph.write_document(
            job.tenant_id, job.document_id, title, rows, mentions, related
        )
        return len(names)

    # -- publishing ----------------------------------------------------------------------------

    async def _progress(
        self, job: IngestRequested, stage: IngestStage, done: int = 0, total: int = 0
    ) -> None:
        event = IngestProgress(
            tenant_id=job.tenant_id,
            document_id=job.document_id,
            sha256=job.sha256,
            stage=stage,
            done=done,
            total=total,
        )
        await self._publish(event, job, f"{stage}:{done}")

    async def _failed(
        self, job: IngestRequested, stage: FailedStage, reason: str, *, retryable: bool
    ) -> None:
        log.warning(
            "ingest failed",
            extra={"document_id": job.document_id, "stage": stage, "reason": reason},
        )
        await self.store.mark_failed(job.tenant_id, job.document_id, reason)
        failed = IngestFailed(
            tenant_id=job.tenant_id,
            document_id=job.document_id,
            sha256=job.sha256,
            stage=stage,
            reason=reason,
            retryable=retryable,
        )
        await self._publish(failed, job, "failed")

    async def _publish(
        self, event: IngestProgress | DocumentIndexed | IngestFailed, job: IngestRequested, tag: str
    ) -> None:
        # The id ties the event to this submission of this version of the document (see
        # _JOB_KEY): a redelivered job re-sends the same ids and JetStream drops the duplicates.
        key = _JOB_KEY.get() or f"{job.tenant_id}:{job.document_id}:{job.sha256[:16]}"
        await self.outbox.send(
            s.ingest_progress(job.document_id),
            event,
            stream=INGEST_EVENTS.name,
            msg_id=f"{key}:{tag}",
        )

    async def _publish_now(
        self, subject: str, event: object, headers: dict[str, str], stream: str
    ) -> None:
        await self.broker.publish(event, subject, headers=headers, stream=stream)

    async def _usage(
        self, job: IngestRequested, model: str, tokens: int, cost: float, latency_ms: float
    ) -> None:
        usage = LlmUsage(
            tenant_id=job.tenant_id,
            operation="embeddings",
            model=model,
            provider=model.split("/", 1)[0] if "/" in model else "openai",
            input_tokens=tokens,
            cost_usd=cost,
            latency_ms=latency_ms,
        )
        await self.outbox.send(s.TELEMETRY_LLM_USAGE, usage, stream=TELEMETRY.name)
