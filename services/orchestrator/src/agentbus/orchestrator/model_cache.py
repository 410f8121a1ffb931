"""A response cache for model calls, per tenant: exact (NATS KV) and semantic (in-process).

Configured in models.yaml as LiteLLM's proxy config does (`litellm_settings.cache` and
`cache_params`: `mode`, `ttl`, `similarity_threshold`). We do not use LiteLLM's own cache:
its backends are Redis, Qdrant, S3 or process memory, and its key knows nothing of tenants.

- Exact: the key is a hash of tenant, model group, messages, tools and tool choice, in the KV
  bucket `llm_cache` (JetStream, which we already run): shared by every orchestrator replica,
  expired by the bucket's TTL.
- Semantic: the prompt's embedding (the `embed` group) compared by cosine similarity with the
  tenant's earlier prompts of the same group and tools, in this process. Vectors per replica
  cost a miss on another replica (one model call), not a wrong answer; pgvector would give a
  shared index at the price of a PostgreSQL round trip and a table for every lookup.

The tenant is part of every key and every semantic partition: a hit never crosses tenants. A
call without a tenant (no run scope) is never cached. Cache failures are misses, never errors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

from nats.js.errors import KeyNotFoundError

from agentbus.contracts.streams import LLM_CACHE

log = logging.getLogger("agentbus.orchestrator.cache")

Mode = Literal["exact", "semantic", "both"]


class CacheConfigError(ValueError):
    pass


@dataclass(frozen=True)
class CacheConfig:
    mode: Mode = "exact"
    ttl_s: float = 600.0
    similarity_threshold: float = 0.95
    embedding_group: str = "embed"
    # Semantic entries kept per tenant in this process (oldest dropped first).
    max_entries_per_tenant: int = 256

    @classmethod
    def parse(cls, settings: dict[str, Any]) -> CacheConfig | None:
        """From models.yaml's `litellm_settings`; None when the cache is off."""
        if not settings.get("cache"):
            return None
        params = dict(settings.get("cache_params") or {})
        known = {"mode", "ttl", "similarity_threshold", "embedding_model", "max_entries"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise CacheConfigError(f"cache_params: unknown {', '.join(unknown)}")
        mode = params.get("mode", "exact")
        if mode not in ("exact", "semantic", "both"):
            raise CacheConfigError(f"cache_params.mode {mode!r}: exact, semantic or both")
        ttl = float(params.get("ttl", 600))
        threshold = float(params.get("similarity_threshold", 0.95))
        if ttl <= 0:
            raise CacheConfigError("cache_params.ttl must be > 0 seconds")
        if not 0 < threshold <= 1:
            raise CacheConfigError("cache_params.similarity_threshold must be in (0, 1]")
        return cls(
            mode=mode,
            ttl_s=ttl,
            similarity_threshold=threshold,
            embedding_group=str(params.get("embedding_model", "embed")),
            max_entries_per_tenant=int(params.get("max_entries", 256)),
        )


@dataclass
class CachedAnswer:
    kind: Literal["exact", "semantic"]
    content: str
    tool_calls: list[dict[str, Any]]
    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    similarity: float = 1.0


# A semantic entry: when stored, the prompt's vector, the answer.
_Entry = tuple[float, list[float], CachedAnswer]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """What the semantic cache embeds: every message's role and text, in order."""
    parts = []
    for m in messages:
        content = m.get("content")
        if not isinstance(content, str):
            content = json.dumps(content, default=str)
        parts.append(f"{m.get('role', '')}: {content}")
    return "\n".join(parts)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


class ResponseCache:
    def __init__(self, config: CacheConfig, kv: Any | None, router: Any) -> None:
        self.config = config
        self.kv = kv
        self.router = router
        # (tenant, group, tools digest) -> entries (created, vector, answer), oldest first.
        self._semantic: dict[tuple[str, str, str], OrderedDict[str, _Entry]] = {}

    @property
    def exact(self) -> bool:
        return self.config.mode in ("exact", "both") and self.kv is not None

    @property
    def semantic(self) -> bool:
        return self.config.mode in ("semantic", "both")

    def _exact_key(self, tenant: str, group: str, request: dict[str, Any]) -> str:
        # KV keys allow [-/_=.a-zA-Z0-9]: the tenant as a hash prefix (purge per tenant), then
        # the request's hash, which includes the tenant again.
        return f"{_digest(tenant)[:16]}.{_digest({'tenant': tenant, 'group': group, **request})}"

    async def lookup(
        self, tenant: str, group: str, messages: list[dict[str, Any]], tools: Any, choice: Any
    ) -> tuple[CachedAnswer | None, list[float] | None]:
        """A cached answer for this tenant's request, and the prompt's vector (for `store`)."""
        request = {"messages": messages, "tools": tools, "tool_choice": choice}
        if self.exact and self.kv is not None:
            try:
                entry = await self.kv.get(self._exact_key(tenant, group, request))
                data = json.loads(entry.value or b"{}")
                if time.time() - float(data.pop("at", 0)) <= self.config.ttl_s:
                    return CachedAnswer(kind="exact", **data), None
            except KeyNotFoundError:
                pass
            except Exception as exc:
                log.warning("exact cache lookup failed", extra={"err": str(exc)})
        if not self.semantic:
            return None, None
        vector = await self._embed(messages)
        if vector is None:
            return None, None
        entries = self._semantic.get((tenant, group, _digest([tools, choice])))
        best: tuple[float, CachedAnswer] | None = None
        now = time.time()
        for created, other, answer in list((entries or {}).values()):
            if now - created > self.config.ttl_s:
                continue
            score = _cosine(vector, other)
            if score >= self.config.similarity_threshold and (best is None or score > best[0]):
                best = (score, answer)
        if best is None:
            return None, vector
        score, answer = best
        hit = CachedAnswer(**{**answer.__dict__, "kind": "semantic", "similarity": score})
        return hit, vector

    async def store(
        self,
        tenant: str,
        group: str,
        messages: list[dict[str, Any]],
        tools: Any,
        choice: Any,
        answer: CachedAnswer,
        vector: list[float] | None,
    ) -> None:
        request = {"messages": messages, "tools": tools, "tool_choice": choice}
        if self.exact and self.kv is not None:
            data = {k: v for k, v in answer.__dict__.items() if k not in ("kind", "similarity")}
            try:
                await self.kv.put(
                    self._exact_key(tenant, group, request),
                    json.dumps({**data, "at": time.time()}).encode(),
                )
            except Exception as exc:
                log.warning("exact cache store failed", extra={"err": str(exc)})
        if self.semantic:
            vector = vector or await self._embed(messages)
            if vector is None:
                return
            part = self._semantic.setdefault(
                (tenant, group, _digest([tools, choice])), OrderedDict()
            )
            part[_digest(request)] = (time.time(), vector, answer)
            part.move_to_end(_digest(request))
            while len(part) > self.config.max_entries_per_tenant:
                part.popitem(last=False)

    async def _embed(self, messages: list[dict[str, Any]]) -> list[float] | None:
        try:
            response = await self.router.aembedding(
                model=self.config.embedding_group, input=[prompt_text(messages)]
            )
            return [float(x) for x in response.data[0]["embedding"]]
        except Exception as exc:
            log.warning("semantic cache embedding failed", extra={"err": str(exc)})
            return None


async def open_cache(js: Any, config: CacheConfig, router: Any) -> ResponseCache:
    """The cache over the provisioned `llm_cache` bucket (exact) and this process (semantic)."""
    kv = await js.key_value(LLM_CACHE.name) if config.mode in ("exact", "both") else None
    return ResponseCache(config, kv, router)
