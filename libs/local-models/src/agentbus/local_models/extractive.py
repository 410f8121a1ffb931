"""`local/extractive`: the offline chat model. No key, no network, no generative weights.

It speaks the OpenAI chat contract (through the LiteLLM custom provider in `provider`):
it either calls tools or answers, and its answers are sentences copied from the context with
citations. Everything is deterministic and uses one model, all-MiniLM-L6-v2 (the same embedder as
ingest): every "similarity" below is the cosine of two L2-normalised MiniLM vectors.

The question is the text of the last user message. It is also split into clauses at `?`, `!`,
`;`, sentence ends, and at "and"/"then"/"also" followed by a question word ("who knows Rust and
how do we roll back?" -> "who knows Rust" + "how do we roll back").

1. Tool choice, when the request has `tools` and the last message is the user's (no tool result
   after it) and `tool_choice` is not "none".

   - A tool is described by its name, description and parameter descriptions. Its *facets* are
     the description's sentences and colon-separated parts, and each comma/"or"-separated item of
     those ("who knows Rust, who can help with Python" gives both examples on their own). Facet
     and description vectors are cached by text.
   - A clause is scored against a tool as the mean of (a) its similarity to the whole tool text
     and (b) its best similarity to any facet. The clause is scored both as written and with its
     names and identifiers replaced by "something" ("who owns payments-api" -> "who owns
     something"), taking the better: unknown names should not drag a question off its intent.
   - Per clause, the best tool is called if its score is >= `TOOL_THRESHOLD` (0.30); other tools
     within `TOOL_MARGIN` (0.05) of the best (and above the threshold) are called as well. When
     no tool clears the threshold, a clause that has content words goes to the request's general
     search tool, the tool with a required free-text parameter (`query`, `question`, `text`, `q`,
     ...): any factual question may be answered by the documents. With no such tool, or a clause
     that is only pleasantries ("hello", "thanks"), the model answers directly (step 2).
   - Calls from all clauses are merged (same tool and arguments only once), at most
     `MAX_TOOL_CALLS`; `parallel_tool_calls=False` keeps the first.
   - `tool_choice="none"` disables tools; `"required"` calls the best tool when none clears the
     threshold; `{"type": "function", "function": {"name": X}}` calls exactly X.
   - Arguments follow the tool's JSON schema, from the clause that chose the tool:
     * a string parameter named like a free-text query (`query`, `question`, `text`, `q`, ...)
       gets the clause;
     * an enum parameter gets the value named in the clause, else the value (with its gloss
       from the parameter description: `dora (deployment frequency, ...)`) most similar to the
       clause; an optional enum keeps its default unless the best value scores >= 0.30;
     * another string parameter that is required, or whose name appears in the clause or in a
       chosen enum value (`people_by_skill` -> `skill`), gets a name from the clause: the
       candidate right next to the parameter's name ("the repository payments-api"), else the
       candidate most similar to "<name>: <description>". Candidates are quoted text, code
       identifiers (`payments-api`, `snake_case`, `camelCase`, `C++`) and capitalised words or
       phrases that do not start the clause ("who knows Rust?" -> {"skill": "Rust"}). With no
       candidate, runs of consecutive content words, broken by role nouns (people, team,
       experts), words naming the parameter (repo) and the tool's own lower-case words, its
       intent ("who owns the billing service" -> "billing"; "who knows rust" -> "rust");
     * other parameters keep their defaults; a required number takes the first number in the
       clause (else its minimum, else 1), a required boolean false.

2. Answer, otherwise. The context is every tool result after the last user message, and any
   system message named "context" or with a line starting "Context:" (the text after it).
   - A JSON result `{"hits": [...]}` gives each hit's text as a passage; its source is the
     hit's document page (title, page, document id; two chunks of one page are one source).
     `{"rows": [...]}` (with `columns` when rows are lists) gives one line per row, "Alice
     Smith — skill Rust, events 2, weight 1.9"; `{"error": "..."}` is remembered; other JSON
     is rendered like a row; plain text is a passage cited as the tool.
   - A passage is cut into whole sentences (`passage_sentences`): lines of a paragraph are
     joined, headings, code, tables, titles and fragments (a chunk that starts or ends
     mid-sentence) are left out, list items become sentences.
   - Each sentence scores 0.7 x its best similarity to the question or one of its clauses plus
     `PASSAGE_WEIGHT` (0.3) x that of the whole passage it came from (a sentence of a passage
     on the question outranks a lone look-alike; bench/answer_quality.py). If the best is
     >= `ANSWER_THRESHOLD` (0.35), the answer is the top `ANSWER_SENTENCES` (3) sentences
     scoring >= max(0.35, best - `ANSWER_MARGIN` (0.25)), most relevant first, each followed
     by its citation marker. Rows are the result of a query the model chose for this
     question, so they are kept (at most `MAX_ROWS` per result), as "- " lines with no marker.
   - Markers: a hit with an integer `ref` (the caller numbered the passages it offered, as the
     orchestrator does) is cited as [ref], and the caller lists its sources. Other sources are
     numbered after the highest ref, in order of first citation, and listed after the answer:
     "Sources:", "[1] Title, page 3 — document doc-1, chunk 4" or "[2] notes (tool result)".
     Only cited sources are listed, each once.
   - The answer is the sentences as one paragraph and the rows (in the order their context
     came), then any tool errors ("Note: The query_metrics tool reported an error: ..."), then
     the Sources list, if any.
   - Nothing relevant (no context, best sentence below the threshold, only errors or empty
     results) gives "I found nothing about <topic>.", then "The passages I found do not answer
     it." when passages came back, and the tool errors, if any.

3. Usage. Prompt tokens are MiniLM tokenizer tokens of every message's content and tool calls plus
   the offered tools' names and descriptions; completion tokens those of the answer (or of the
   tool calls' names and arguments). Streaming yields the same answer word by word (each chunk
   is a word with the whitespace before it, so the chunks concatenate to the whole answer).
   Sampling options (temperature, max_tokens, stop, ...) are accepted and ignored.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .messages import LocalChatError, _Conversation, _get, _parse
from .text import (
    _BOOKKEEPING,
    _fmt,
    _words,
    candidates,
    clauses,
    content_words,
    keyword_runs,
    mask_names,
    passage_sentences,
    render_row,
    split_sentences,
    topic,
)
from .tools import (
    QUERY_PARAMS,
    ToolCall,
    _dot,
    _enum_glosses,
    _required_fallback,
    _Tool,
    _tools,
    _types,
)

MODEL_NAME = "extractive"

TOOL_THRESHOLD = 0.30

TOOL_MARGIN = 0.05

MAX_TOOL_CALLS = 4

ENUM_THRESHOLD = 0.30

ANSWER_THRESHOLD = 0.35

ANSWER_MARGIN = 0.25

ANSWER_SENTENCES = 3

PASSAGE_WEIGHT = 0.3

MAX_ROWS = 5


class Embedder(Protocol):
    def encode(self, texts: list[str]) -> list[list[float]]: ...

    def count_tokens(self, texts: list[str]) -> int: ...


@dataclass
class Reply:
    content: str | None
    tool_calls: list[ToolCall]
    prompt_tokens: int
    completion_tokens: int

    @property
    def finish_reason(self) -> Literal["stop", "tool_calls"]:
        return "tool_calls" if self.tool_calls else "stop"


def stream_pieces(content: str) -> list[str]:
    """Word-level chunks (each word with the whitespace before it); they join to `content`."""
    return re.findall(r"\s*\S+|\s+$", content)


class ExtractiveChat:
    """The algorithm; `reply` is CPU-bound (MiniLM), call it from a thread in async code."""

    def __init__(self, embedder_factory: Callable[[], Embedder]) -> None:
        self._embedder_factory = embedder_factory
        self._cache: dict[str, list[float]] = {}
        self._cache_lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        return self._embedder_factory()

    def _encode(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.encode(texts) if texts else []

    def _cached(self, texts: Iterable[str]) -> dict[str, list[float]]:
        """Vectors of tool texts (descriptions, facets, enum values), computed once per text."""
        wanted = list(dict.fromkeys(texts))
        with self._cache_lock:
            missing = [t for t in wanted if t not in self._cache]
        if missing:
            vectors = self._encode(missing)
            with self._cache_lock:
                if len(self._cache) + len(missing) > 8192:
                    self._cache.clear()
                self._cache.update(zip(missing, vectors, strict=True))
        with self._cache_lock:
            return {t: self._cache[t] for t in wanted}

    def _count(self, texts: list[str]) -> int:
        """MiniLM tokenizer tokens, with [CLS] and [SEP] once per text.

        Long texts are counted in pieces of whole words (the tokenizer splits at whitespace
        first, so the count is the same) to stay under the model's 256-token window.
        """
        pieces: list[str] = []
        extra = 0
        for text in texts:
            words = text.split()
            chunks = [" ".join(words[i : i + 64]) for i in range(0, len(words), 64)]
            pieces += chunks
            extra += 2 * max(0, len(chunks) - 1)
        return self.embedder.count_tokens(pieces) - extra if pieces else 0

    # -- entry point ---------------------------------------------------------------------------

    def reply(
        self,
        messages: Sequence[Any],
        tools: Any = None,
        tool_choice: Any = None,
        parallel_tool_calls: bool | None = None,
    ) -> Reply:
        convo = _parse(messages)
        offered = _tools(tools)
        prompt_texts = [*convo.all_texts, *(f"{t.name} {t.description}" for t in offered)]
        prompt_tokens = self._count(prompt_texts) or 1
        calls = self._tool_calls(convo, offered, tool_choice)
        if calls:
            if parallel_tool_calls is False:
                calls = calls[:1]
            spoken = [f"{c.name} {json.dumps(c.arguments)}" for c in calls]
            return Reply(None, calls, prompt_tokens, self._count(spoken))
        content = self._answer(convo)
        return Reply(content, [], prompt_tokens, self._count([content]))

    # -- 1. tool choice ------------------------------------------------------------------------

    def _tool_calls(
        self, convo: _Conversation, offered: list[_Tool], choice: Any
    ) -> list[ToolCall]:
        if not offered:
            return []
        mode = choice if isinstance(choice, str) else "auto"
        forced = _get(_get(choice, "function"), "name") if isinstance(choice, dict) else None
        if mode == "none" and forced is None:
            return []
        question = convo.question
        if forced is not None:
            tool = next((t for t in offered if t.name == forced), None)
            if tool is None:
                raise LocalChatError(400, f"tool_choice names {forced!r}, which is not in tools")
            return [ToolCall(tool.name, self._arguments(tool, question))]
        if not convo.wants_tools and mode != "required":
            return []
        parts = clauses(question)
        scores = self._tool_scores(parts, offered)
        chosen: list[tuple[_Tool, str]] = []
        for part, row in zip(parts, scores, strict=True):
            best = max(row)
            if best >= TOOL_THRESHOLD:
                floor = max(TOOL_THRESHOLD, best - TOOL_MARGIN)
                ranked = sorted(range(len(offered)), key=lambda i: -row[i])
                chosen += [(offered[i], part) for i in ranked if row[i] >= floor]
                continue
            search = [i for i, t in enumerate(offered) if t.is_search]
            if search and content_words(part):
                chosen.append((offered[max(search, key=lambda i: row[i])], part))
        if not chosen and mode == "required":
            whole = self._tool_scores([question], offered)[0]
            chosen = [(offered[max(range(len(offered)), key=lambda i: whole[i])], question)]
        calls: list[ToolCall] = []
        seen: set[str] = set()
        for tool, part in chosen:
            args = self._arguments(tool, part)
            key = tool.name + json.dumps(args, sort_keys=True)
            if key not in seen:
                seen.add(key)
                calls.append(ToolCall(tool.name, args))
        return calls[:MAX_TOOL_CALLS]

    def _tool_scores(self, parts: list[str], offered: list[_Tool]) -> list[list[float]]:
        vectors = self._cached([t.text for t in offered] + [f for t in offered for f in t.facets])
        variants = [[p, mask_names(p)] for p in parts]
        flat = [v for pair in variants for v in dict.fromkeys(pair)]
        encoded = dict(zip(flat, self._encode(flat), strict=True))
        out = []
        for pair in variants:
            qs = [encoded[v] for v in dict.fromkeys(pair)]
            row = []
            for t in offered:
                whole = max(_dot(q, vectors[t.text]) for q in qs)
                facet = max(_dot(q, vectors[f]) for q in qs for f in t.facets)
                row.append((whole + facet) / 2)
            out.append(row)
        return out

    def _arguments(self, tool: _Tool, clause: str) -> dict[str, Any]:
        args: dict[str, Any] = {}
        props = tool.properties
        required = set(tool.required)
        clause_vec: list[float] | None = None

        def clause_vector() -> list[float]:
            nonlocal clause_vec
            if clause_vec is None:
                clause_vec = self._encode([clause])[0]
            return clause_vec

        # Enums first: a chosen value may name the parameter it needs (people_by_skill -> skill).
        for name, schema in props.items():
            values = schema.get("enum")
            if not isinstance(values, list) or not values:
                continue
            value = self._enum_value(name, schema, values, clause, clause_vector, name in required)
            if value is not None:
                args[name] = value
        lowered = " ".join(_words(clause))
        chosen_enums = " ".join(str(v).lower() for v in args.values())
        entity_params = []
        for name, schema in props.items():
            if name in args:
                continue
            types = _types(schema)
            if "string" in types and name.lower() in QUERY_PARAMS:
                args[name] = clause
                continue
            if "string" in types:
                words = name.lower().replace("_", " ")
                mentioned = re.search(rf"\b{re.escape(words)}s?\b", lowered) is not None
                if name in required or mentioned or name.lower() in chosen_enums:
                    entity_params.append(name)
                    continue
            if "default" in schema:
                args[name] = schema["default"]
            elif name in required:
                args[name] = _required_fallback(types, schema, clause)
        entity_params.sort(key=lambda n: n not in required)
        used: set[str] = set()
        for name in entity_params:
            value = self._entity(tool, name, props[name], clause, used)
            if value is None:
                if "default" in props[name]:
                    args[name] = props[name]["default"]
                elif name in required:
                    args[name] = clause
                continue
            used.add(value)
            args[name] = value
        return {n: args[n] for n in props if n in args}

    def _enum_value(
        self,
        name: str,
        schema: dict[str, Any],
        values: list[Any],
        clause: str,
        clause_vector: Callable[[], list[float]],
        required: bool,
    ) -> Any:
        lowered = " ".join(_words(clause))
        named = [
            v
            for v in values
            if re.search(rf"\b{re.escape(' '.join(_words(str(v))))}\b", lowered) and _words(str(v))
        ]
        if len(named) == 1:
            return named[0]
        pool = named or values
        glosses = _enum_glosses(values, str(schema.get("description", "")))
        texts = [f"{str(v).replace('_', ' ')} {glosses.get(str(v), '')}".strip() for v in pool]
        vectors = self._cached(texts)
        q = clause_vector()
        sims = [_dot(q, vectors[t]) for t in texts]
        best = max(range(len(pool)), key=lambda i: sims[i])
        if named or required or sims[best] >= ENUM_THRESHOLD:
            return pool[best]
        return schema.get("default")

    def _entity(
        self, tool: _Tool, name: str, schema: dict[str, Any], clause: str, used: set[str]
    ) -> str | None:
        found = candidates(clause)
        words = name.lower().replace("_", " ")
        if found:
            # Right next to the parameter's name: "the repository payments-api", "Rust skills".
            pattern = rf"(?i:\b{re.escape(words)}s?\b)"
            for c in found:
                esc = re.escape(c)
                glue = r"\s+(?:(?i:the|a|an|called|named)\s+)?:?\s*"
                if re.search(rf"{pattern}{glue}[`\"']?{esc}|{esc}[`\"']?\s+{pattern}", clause):
                    return c
        else:
            found = keyword_runs(clause, tool.text, name)
        if not found:
            return None
        fresh = [c for c in found if c not in used] or found
        if len(fresh) == 1:
            return fresh[0]
        target = f"{name}: {schema.get('description', '')}".strip(": ")
        vectors = self._cached([target])
        cand = self._encode(fresh)
        return max(zip(fresh, cand, strict=True), key=lambda cv: _dot(cv[1], vectors[target]))[0]

    # -- 2. answer -----------------------------------------------------------------------------

    def _answer(self, convo: _Conversation) -> str:
        question = convo.question
        sources: list[_Source] = []
        source_keys: dict[Any, int] = {}
        pieces: list[_Piece] = []  # in context order; prose is scored, rows are kept
        errors: list[str] = []

        def source(key: Any, label: str, ref: int | None = None) -> int:
            if key not in source_keys:
                source_keys[key] = len(sources)
                sources.append(_Source(label, ref))
            return source_keys[key]

        def prose(text: str, src: int, chunk: Any = None) -> None:
            found = passage_sentences(text) or split_sentences(text)
            pieces.extend(_Piece("prose", s, src, chunk, text) for s in found)

        items = [(name, text) for name, text in convo.tool_results]
        items += [("context", text) for text in convo.context]
        for tool, text in items:
            data: Any = None
            stripped = text.strip()
            if stripped[:1] in "{[":
                try:
                    data = json.loads(stripped)
                except ValueError:
                    data = None
            if data is None:
                prose(text, source(("tool", tool), f"{tool} (tool result)"))
                continue
            if isinstance(data, list):
                data = {"rows": data}
            # Rows are cited by the query that produced them: the tool's own `source` line
            # (e.g. "knowledge graph: people by skill") or its name.
            described = data.get("source") if isinstance(data, dict) else None
            named = data.get("name") if isinstance(data, dict) and "rows" in data else None
            label = str(described or (f"{tool}: {named}" if named else f"{tool} (tool result)"))
            row_source = source(("rows", tool, label), label)
            if not isinstance(data, dict):
                pieces.append(_Piece("row", _fmt("", data), row_source))
                continue
            error = data.get("error")
            if isinstance(error, str) and error.strip():
                errors.append(f"The {tool} tool reported an error: {error.strip().rstrip('.')}.")
            hits = data.get("hits")
            rows = data.get("rows")
            if isinstance(hits, list):
                for hit in hits:
                    if isinstance(hit, dict):
                        key, label, ref = _hit_source(hit, tool)
                        prose(
                            str(hit.get("text") or ""),
                            source(key, label, ref),
                            hit.get("chunk_index"),
                        )
            if isinstance(rows, list):
                columns = data.get("columns")
                for raw_row in rows[:MAX_ROWS]:
                    row = raw_row
                    if isinstance(row, list) and isinstance(columns, list):
                        row = dict(zip((str(c) for c in columns), row, strict=False))
                    line = render_row(row) if isinstance(row, dict) else _fmt("", row)
                    if line:
                        pieces.append(_Piece("row", line, row_source))
            if not isinstance(hits, list) and not isinstance(rows, list):
                rest = {k: v for k, v in data.items() if k not in _BOOKKEEPING}
                if rest:
                    pieces.append(_Piece("row", render_row(rest), row_source))

        chosen = self._select(question, pieces)
        if not chosen:
            # Passages came back, but none of their sentences answers: say so.
            unrelated = ["The passages I found do not answer it."] if pieces else []
            return " ".join([f"I found nothing about {topic(question)}.", *unrelated, *errors])
        # Markers: a passage the caller numbered (`ref`) keeps its number; any other source is
        # numbered after the highest such number, in order of first citation.
        refs = [s.ref for s in sources if s.ref is not None]
        markers: dict[int, int] = {}
        cited_chunks: dict[int, list[Any]] = {}
        following = max(refs, default=0)
        for i in chosen:
            src = pieces[i].source
            if src is None:
                continue
            if src not in markers:
                ref = sources[src].ref
                if ref is None:
                    following += 1
                markers[src] = ref if ref is not None else following
            chunk = pieces[i].chunk
            if chunk is not None and chunk not in cited_chunks.setdefault(src, []):
                cited_chunks[src].append(chunk)
        prose_lines = [
            f"{p.text} [{markers[p.source]}]"
            for p in (pieces[i] for i in chosen)
            if p.kind == "prose" and p.source is not None
        ]
        row_lines = [
            f"- {p.text}" + (f" [{markers[p.source]}]" if p.source is not None else "")
            for p in (pieces[i] for i in chosen)
            if p.kind == "row"
        ]
        first_is_row = pieces[min(chosen)].kind == "row"
        body = [" ".join(prose_lines), "\n".join(row_lines)]
        blocks = [b for b in (body[::-1] if first_is_row else body) if b]
        if errors:
            blocks.append("Note: " + " ".join(errors))
        # The caller lists the passages it numbered itself; the rest are listed here.
        own = sorted(
            ((n, src) for src, n in markers.items() if sources[src].ref is None),
            key=lambda pair: pair[0],
        )
        if own:
            lines = [
                f"[{n}] {sources[src].label}{_chunks(cited_chunks.get(src, []))}" for n, src in own
            ]
            blocks.append("Sources:\n" + "\n".join(lines))
        return "\n\n".join(blocks).strip()

    def _select(self, question: str, pieces: list[_Piece]) -> list[int]:
        """Indexes of the pieces that answer: the relevant prose sentences, most relevant
        first, then every row (in context order)."""
        prose_at: dict[str, int] = {}
        for i, piece in enumerate(pieces):
            if piece.kind == "prose" and piece.text not in prose_at:
                prose_at[piece.text] = i
        keep: list[int] = []
        if prose_at:
            queries = list(dict.fromkeys([question, *clauses(question)]))
            texts = list(prose_at)
            passages = list(dict.fromkeys(pieces[i].passage for i in prose_at.values()))
            vectors = self._encode(queries + texts + (passages if PASSAGE_WEIGHT else []))
            qv = vectors[: len(queries)]
            sv = vectors[len(queries) : len(queries) + len(texts)]
            pv = dict(zip(passages, vectors[len(queries) + len(texts) :], strict=False))
            scores = []
            for text, s in zip(texts, sv, strict=True):
                score = max(_dot(q, s) for q in qv)
                around = pv.get(pieces[prose_at[text]].passage)
                if around is not None:  # a sentence of a passage on the question ranks higher
                    whole = max(_dot(q, around) for q in qv)
                    score = (1 - PASSAGE_WEIGHT) * score + PASSAGE_WEIGHT * whole
                scores.append(score)
            best = max(scores)
            if best >= ANSWER_THRESHOLD:
                floor = max(ANSWER_THRESHOLD, best - ANSWER_MARGIN)
                ranked = sorted(range(len(texts)), key=lambda j: -scores[j])
                keep += [prose_at[texts[j]] for j in ranked if scores[j] >= floor][
                    :ANSWER_SENTENCES
                ]
        keep += [i for i, p in enumerate(pieces) if p.kind == "row"]
        return keep


@dataclass
class _Source:
    label: str
    ref: int | None  # the number the caller gave this passage (a search hit's `ref`)


@dataclass
class _Piece:
    kind: Literal["prose", "row"]
    text: str
    source: int | None = None  # a passage's document, or the query that returned a row
    chunk: Any = None
    passage: str = ""  # the whole text the sentence came from


def _chunks(indexes: list[Any]) -> str:
    if not indexes:
        return ""
    word = "chunk" if len(indexes) == 1 else "chunks"
    return f", {word} {', '.join(str(i) for i in indexes)}"


def _hit_source(hit: dict[str, Any], tool: str) -> tuple[Any, str, int | None]:
    """A hit's source: one per document page (two chunks of a page are one source)."""
    doc = hit.get("document_id")
    title = hit.get("title") or hit.get("source") or doc or tool
    label = str(title)
    if hit.get("page") is not None:
        label += f", page {hit['page']}"
    if doc:
        label += f" — document {doc}"
    ref = hit.get("ref")
    ref = ref if isinstance(ref, int) and not isinstance(ref, bool) and ref > 0 else None
    key = ("hit", doc, hit.get("page")) if doc else ("hit", title, hit.get("chunk_index"))
    return key, label, ref
