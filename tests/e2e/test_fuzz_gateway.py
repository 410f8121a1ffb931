"""The gateway's OpenAPI document fuzzed with schemathesis against the running platform (issue 13,
"Fuzzing, in the suite"): every documented operation, a few generated requests each, as an
authenticated tenant of its own. No answer may be a 5xx, and every 4xx is JSON in one of the
documented error shapes (`{"detail": ...}`, or OpenAI's `{"error": {...}}`).

Left out, each for a reason: responses that stay open until a run ends (SSE streams, waits,
joins, and the non-streaming chat and chat-completion calls that answer with the whole run),
and the anonymous auth routes whose per-address rate limits the rest of the session shares
(register, login, refresh; their bad input is tested in services/gateway/tests/test_auth.py).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from agentbus.runtime.platform import Platform

from .rag_support import new_tenant

# A bounded run: one valid and one invalid request per operation, for at most DEFAULT_BUDGET_S
# (the whole document, ~120 operations, takes ~4 min on a loaded 2-core machine: run it with
# AGENTBUS_FUZZ_BUDGET_S=0; AGENTBUS_FUZZ_SEED repeats a reported order).
EXAMPLES = 1
DEFAULT_BUDGET_S = 25.0
OPEN_ENDED = (
    r"(/stream$|/stream/|/events$|/join$|/wait$|^/api/v1/chat$|^/v1/chat/completions$|^/mcp|^/a2a"
    r"|^/api/v1/auth/(register|login|refresh|token)|^/metrics|^/openapi|^/docs|^/redoc)"
)


@pytest.fixture(scope="module")
def fuzz_key(platform: Platform) -> Iterator[str]:
    """A fresh tenant's admin API key: whatever the fuzzer creates or deletes is its own."""

    async def make() -> str:
        pool = await asyncpg.create_pool(
            platform.engines.urls()["postgres"], min_size=1, max_size=2
        )
        try:
            tenant = await new_tenant(platform, pool)
            _, secret = await tenant.store.create_api_key(tenant.id, "fuzz", ("admin",))
            return secret
        finally:
            await pool.close()

    yield asyncio.run(make())


@pytest.fixture(scope="module")
def gateway_schema(platform: Platform) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{platform.gateway_url}/openapi.json")
    return schema.exclude(path_regex=OPEN_ENDED)


def _error_shaped(body: object) -> bool:
    if not isinstance(body, dict):
        return False
    if "detail" in body:
        return True
    error = body.get("error")
    return isinstance(error, dict) and "message" in error


def _check(case: Any, base_url: str, key: str) -> str | None:
    """What is wrong with the answer to `case`, or None."""
    try:
        response = case.call(base_url=base_url, headers={"x-api-key": key}, timeout=30)
    except requests.exceptions.RequestException as exc:
        return f"{case.method} {case.formatted_path}: no answer ({type(exc).__name__})"
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}"
    if response.status_code >= 500:
        return where
    if 400 <= response.status_code < 500:
        content_type = response.headers.get("content-type") or [""]  # a list per header
        if not content_type[0].startswith("application/json"):
            return f"not JSON: {where}"
        if not _error_shaped(response.json()):
            return f"not an error shape: {where}"
    return None


def test_no_operation_answers_5xx_and_errors_are_json(
    gateway_schema: schemathesis.BaseSchema, platform: Platform, fuzz_key: str
) -> None:
    """Valid and invalid requests (schemathesis' positive and negative modes) for every operation.

    Driven by hand rather than through schemathesis' pytest plugin, which does not run under
    pytest 9; a failing answer is collected, not raised, so Hypothesis does not spend requests
    shrinking it.
    """
    problems: list[str] = []
    listed = list(gateway_schema.get_all_operations())
    assert len(listed) > 50  # the whole document, not a fragment of it
    # Within the budget, operations in an order that differs from run to run (the seed is in
    # the report), so successive runs cover the whole document; budget 0 = all of it.
    seed = int(os.environ.get("AGENTBUS_FUZZ_SEED") or time.time())
    random.Random(seed).shuffle(listed)
    budget = float(os.environ.get("AGENTBUS_FUZZ_BUDGET_S", DEFAULT_BUDGET_S))
    started = time.monotonic()
    operations = 0
    for result in listed:
        if budget and time.monotonic() - started > budget:
            break
        if not isinstance(result, Ok):
            problems.append(f"unreadable operation: {result.err()}")
            continue
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def fuzz(case: Any) -> None:
                problem = _check(case, platform.gateway_url, fuzz_key)
                if problem is not None:
                    problems.append(problem)

            try:
                fuzz()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to get wrong (no parameters)
    print(f"fuzzed {operations} of {len(listed)} operations (AGENTBUS_FUZZ_SEED={seed})")
    assert operations >= min(10, len(listed))
    assert not problems, f"seed {seed}:\n" + "\n".join(sorted(set(problems)))
