"""`local/extractive`: the offline chat model. No key, no network, no generative weights.

It speaks the OpenAI chat contract (through the LiteLLM custom provider in `local_provider`):
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
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

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
PLACEHOLDER = "something"

QUERY_PARAMS = frozenset(
    {"query", "question", "text", "q", "prompt", "input", "search", "search_query", "keywords"}
)

STOP_WORDS = frozenset(
    """a about above after again against all also am an and any anyone anything are as at be
    because been before being below between both but by can could did do does doing done down
    during each either else ever every few for from further get gets got had has have having he
    her here hers him his how however i if in into is it its itself just let lets me might more
    most much must my myself no nor not now of off on once only or other our ours ourselves out
    over own please same shall she should so some someone something such tell than that the their
    theirs them then there these they this those through to too under until up upon us very
    was we were what whats when where whether which while who whom whose why will with would
    you your yours find show list give need want know knows hello hi hey thanks thank thx ok
    okay bye goodbye cheers yes yeah good morning afternoon evening great cool nice s t""".split()  # noqa: SIM905
)

# Who-words that are never a name: "which engineers know Rust", "who are the experts".
GENERIC_NOUNS = frozenset(
    """people person persons someone anyone everyone team teams engineer engineers developer
    developers expert experts owner owners maintainer maintainers contributor contributors
    member members staff colleague colleagues folks""".split()  # noqa: SIM905
)

_WH = (
    r"(?:who|whom|whose|what|which|where|when|why|how|is|are|was|were|do|does|did|can|could|"
    r"should|will|would|has|have)"
)
_CLAUSE_BREAK = re.compile(
    rf"(?<=[?!;])\s+|(?<=\.)\s+(?=[A-Z])|(?i:,?\s+(?:and\s+then|and|then|also|plus)\s+(?={_WH}\b))"
)
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(?:\s|$)")
_SETEXT = re.compile(r"^\s{0,3}(?:=+|-{2,})\s*$")
_FENCE = re.compile(r"^\s{0,3}(?:```|~~~)")
_TABLE_ROW = re.compile(r"^\s*\|")
_FULL_STOP = re.compile(r"[.!?][\"')\]]*$")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1")
_CONNECTIVE = re.compile(
    r"^(?:however|also|in addition|additionally|moreover|furthermore|then|so|and|but|finally|"
    r"otherwise|instead|therefore)\s*,?\s+",
    re.IGNORECASE,
)
_TOKEN = re.compile(
    r"`(?P<bt>[^`]+)`|\"(?P<dq>[^\"]+)\"|(?<!\w)'(?P<sq>[^']+)'(?!\w)|(?P<w>[A-Za-z0-9][\w\-./+#]*)"
)
_CONTEXT_MARK = re.compile(r"^\s*context\s*:\s*", re.IGNORECASE | re.MULTILINE)
_LEAD = re.compile(
    r"^(?:please\s+)?(?:(?:can|could|would)\s+you\s+)?(?:tell\s+me\s+(?:about\s+)?|explain\s+|"
    r"describe\s+|what\s+(?:is|are|was|were)\s+|who\s+(?:is|are|was|were)\s+|what's\s+|who's\s+)",
    re.IGNORECASE,
)
_QUESTION_START = re.compile(rf"^{_WH}\b", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_SUBJECT_KEYS = (
    "person", "name", "title", "entity", "repository", "skill", "document_id", "metric", "id",
)  # fmt: skip
_BOOKKEEPING = frozenset(
    {"tenant_id", "took_ms", "query", "mode", "error", "columns", "schema", "source"}
)


class LocalChatError(ValueError):
    """A request the model cannot serve; `status_code` is the HTTP status to report."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class Embedder(Protocol):
    def encode(self, texts: list[str]) -> list[list[float]]: ...

    def count_tokens(self, texts: list[str]) -> int: ...


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    def openai(self, index: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }
        if index is not None:
            out["index"] = index
        return out


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


# ---------------------------------------------------------------------------------------------
# Messages


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts (text parts are kept)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            else:
                text = _get(part, "text")
                if isinstance(text, str):
                    parts.append(text)
        return "\n".join(parts)
    text = _get(content, "text")
    return text if isinstance(text, str) else str(content)


@dataclass
class _Conversation:
    question: str
    wants_tools: bool  # the last message is the user's
    tool_results: list[tuple[str, str]]  # (tool name, content) after the last user message
    context: list[str]
    all_texts: list[str]


def _parse(messages: Sequence[Any]) -> _Conversation:
    if not messages:
        raise LocalChatError(400, "local/extractive needs at least one message")
    call_names: dict[str, str] = {}
    last_user = -1
    texts: list[str] = []
    context: list[str] = []
    for i, m in enumerate(messages):
        role = _get(m, "role")
        text = message_text(_get(m, "content"))
        if text:
            texts.append(text)
        for tc in _get(m, "tool_calls") or []:
            fn = _get(tc, "function") or {}
            name = str(_get(fn, "name") or "")
            call_names[str(_get(tc, "id") or "")] = name
            texts.append(f"{name} {_get(fn, 'arguments') or ''}")
        if role == "user":
            last_user = i
        elif role in ("system", "developer") and text:
            if _get(m, "name") == "context":
                context.append(text)
            else:
                mark = _CONTEXT_MARK.search(text)
                if mark:
                    context.append(text[mark.end() :])
    if last_user < 0:
        raise LocalChatError(400, "local/extractive needs a user message to answer")
    results = []
    for m in messages[last_user + 1 :]:
        if _get(m, "role") in ("tool", "function"):
            name = _get(m, "name") or call_names.get(str(_get(m, "tool_call_id") or ""), "")
            results.append((str(name or "tool"), message_text(_get(m, "content"))))
    question = " ".join(message_text(_get(messages[last_user], "content")).split())
    return _Conversation(
        question=question,
        wants_tools=last_user == len(messages) - 1,
        tool_results=results,
        context=context,
        all_texts=texts,
    )


# ---------------------------------------------------------------------------------------------
# Text helpers


def clauses(question: str) -> list[str]:
    parts = [p.strip(" ,.;") for p in _CLAUSE_BREAK.split(question) if p and p.strip(" ,.;")]
    return parts or [question]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9][a-z0-9+#]*", text.lower())


def content_words(text: str) -> list[str]:
    return [w for w in _words(text) if w not in STOP_WORDS and not w.isdigit()]


def keyword_runs(clause: str, tool_text: str, param: str) -> list[str]:
    """Names for a parameter when the clause has none: runs of consecutive content words.

    Words the tool's own text uses in lower case are its intent ("owns", "service"; not its
    examples: "Rust"), and words naming the parameter ("repository", "repo") are not values;
    both break runs, unless nothing else is left.
    """
    own = set(re.findall(r"\b[a-z][a-z0-9+#]*\b", tool_text))
    naming = {w for w in param.lower().split("_") if w}
    original = {w.lower(): w for w in re.findall(r"[A-Za-z0-9][\w+#]*", clause)}

    def runs(skip: Callable[[str], bool]) -> list[str]:
        out: list[list[str]] = [[]]
        for w in _words(clause):
            if w in STOP_WORDS or w in GENERIC_NOUNS or w.isdigit() or skip(w):
                if out[-1]:
                    out.append([])
                continue
            out[-1].append(original.get(w, w))
        return [" ".join(r) for r in out if r]

    def names_param(w: str) -> bool:
        return any(n.startswith(w) or w.startswith(n) for n in naming if len(w) >= 3)

    return runs(lambda w: w in own or names_param(w)) or runs(names_param)


def _is_code(token: str) -> bool:
    return bool(
        re.search(r"\w[-_./]\w", token)
        or re.search(r"[a-z][A-Z]", token)
        or (re.search(r"\d", token) and re.search(r"[A-Za-z]", token))
        or re.search(r"[+#]$", token)
    )


def candidates(text: str) -> list[str]:
    """Names in `text`: quoted text, code identifiers, capitalised words and phrases.

    A lone capitalised word that starts the text ("Rust experts?") counts only when there is no
    other name: it is more often just the first word of a sentence.
    """
    found: list[str] = []
    opening: list[str] = []
    phrase: list[str] = []
    start = 0

    def close() -> None:
        if phrase:
            alone = start == 0 and len(phrase) == 1
            (opening if alone else found).append(" ".join(phrase))
            phrase.clear()

    for i, m in enumerate(_TOKEN.finditer(text)):
        quoted = m.group("bt") or m.group("dq") or m.group("sq")
        token = quoted or (m.group("w") or "").rstrip(".-/")
        capital = not quoted and token[:1].isupper() and token.lower() not in STOP_WORDS
        if capital and not _is_code(token):
            if not phrase:
                start = i
            phrase.append(token)
            continue
        close()
        if quoted or (_is_code(token) and token.lower() not in STOP_WORDS):
            found.append(token.strip())
    close()
    names = [c for c in dict.fromkeys(found) if c]
    return names or opening


def mask_names(text: str) -> str:
    out = text
    for c in sorted(candidates(text), key=len, reverse=True):
        out = out.replace(c, PLACEHOLDER)
    return out


def topic(question: str) -> str:
    text = _LEAD.sub("", question.strip()).strip().rstrip("?.! ")
    if not text:
        return "that"
    return f'"{text}"' if _QUESTION_START.match(text) else text


def _clean_inline(text: str) -> str:
    """Markdown emphasis and links reduced to their words."""
    text = _MD_LINK.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\2", text)
    return " ".join(text.split())


def _condense(sentence: str) -> str:
    """A sentence without the connective that tied it to the one before ("However, ...")."""
    m = _CONNECTIVE.match(sentence)
    if m and len(sentence) - m.end() > 20:
        rest = sentence[m.end() :]
        return rest[:1].upper() + rest[1:]
    return sentence


def _is_title(line: str, following: str) -> bool:
    """A short line without a full stop, first of its block, that the next line does not
    continue (it starts a new sentence): a heading in text that lost its blank lines (PDF)."""
    words = _BULLET.sub("", line).split()
    nxt = following.strip()
    return (
        0 < len(words) <= 8
        and not _FULL_STOP.search(line)
        and not line.endswith((",", ";", ":"))
        and nxt[:1].isupper()
        and not _BULLET.match(following)
    )


def passage_blocks(text: str) -> list[tuple[str, str]]:
    """A passage's paragraphs and list items as ("para" | "item", text), lines joined.

    Headings (`#`, setext underlines, a short unpunctuated first line followed by a new
    sentence), code blocks and table rows are left out: they are not sentences. A line break
    inside a paragraph is a space (documents are often hard-wrapped).
    """
    blocks: list[tuple[str, str]] = []
    current: list[str] = []
    kind = "para"
    fenced = False

    def flush() -> None:
        if current:
            blocks.append((kind, _clean_inline(" ".join(current))))
            current.clear()

    lines = text.splitlines()
    for n, raw in enumerate(lines):
        if _FENCE.match(raw):
            flush()
            fenced = not fenced
            continue
        line = raw.strip()
        if fenced:
            continue
        if not current and _is_title(line, lines[n + 1] if n + 1 < len(lines) else ""):
            kind = "para"
            continue
        if not line or _HEADING.match(raw) or _TABLE_ROW.match(raw):
            flush()
            kind = "para"
            continue
        if _SETEXT.match(raw):
            current.clear()  # the line above was a heading
            kind = "para"
            continue
        bullet = _BULLET.match(raw)
        if bullet:
            flush()
            kind = "item"
            current.append(raw[bullet.end() :].strip())
            continue
        current.append(line)
    flush()
    return blocks


def passage_sentences(text: str) -> list[str]:
    """The whole sentences of a retrieved passage, in order; never headings or fragments.

    - A paragraph of one short line without a full stop is a title ("Rolling back a release").
    - A paragraph's first sentence of at most four words, followed by more, is a run-in heading
      ("Database backups. Every production database is ...").
    - A sentence without a closing `.`, `!` or `?` was cut off (a chunk ends mid-sentence) or
      introduces something else ("Do the following:"), and a passage that starts in lower case
      starts mid-sentence (the overlap with the chunk before): both are fragments, left out.
    - A list item of three words or more is an instruction: kept, with a full stop if it had
      none.
    - A leading connective ("However,", "Also,") is dropped, since the sentence now stands alone.
    """
    out: list[str] = []
    for b, (kind, block) in enumerate(passage_blocks(text)):
        sentences = [s for s in (" ".join(r.split()) for r in _SENTENCE_BREAK.split(block)) if s]
        for i, found in enumerate(sentences):
            sentence, words = found, found.split()
            if len(words) < 3 or not re.search(r"[A-Za-z]", sentence):
                continue
            if b == 0 and i == 0 and sentence[:1].islower():
                continue
            if not _FULL_STOP.search(sentence):
                if kind != "item":
                    continue
                sentence += "."
            if kind == "para" and i == 0 and len(sentences) > 1 and len(words) <= 4:
                continue
            out.append(_condense(sentence))
    return list(dict.fromkeys(out))


def split_sentences(text: str) -> list[str]:
    out = []
    for raw_line in text.splitlines():
        line = _BULLET.sub("", raw_line).strip()
        if not line:
            continue
        for raw in _SENTENCE_BREAK.split(line):
            sentence = " ".join(raw.split())
            if len(sentence) >= 3 and re.search(r"[A-Za-z]", sentence):
                out.append(sentence)
    return out


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and key.endswith("_at") and 1e9 <= value < 1e13:
        seconds = value / 1000 if value >= 1e11 else value
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, list):
        shown = ", ".join(_fmt(key, v) for v in value[:5])
        return shown + (f" and {len(value) - 5} more" if len(value) > 5 else "")
    if isinstance(value, dict):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return str(value)


def render_row(row: dict[str, Any]) -> str:
    """One result row as a short sentence: "Alice Smith — skill Rust, events 2, weight 1.9"."""
    present = {k: v for k, v in row.items() if v not in (None, "", [], {})}
    subject = next((k for k in _SUBJECT_KEYS if k in present), None)
    if subject is None:
        subject = next((k for k, v in present.items() if isinstance(v, str)), None)
    rest = [f"{k.replace('_', ' ')} {_fmt(k, v)}" for k, v in present.items() if k != subject]
    if subject is None:
        return ", ".join(rest)
    head = _fmt(subject, present[subject])
    return f"{head} — {', '.join(rest)}" if rest else head


# ---------------------------------------------------------------------------------------------
# Tools


def _types(schema: dict[str, Any]) -> set[str]:
    t = schema.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {str(x) for x in t}
    found: set[str] = set()
    for alt in schema.get("anyOf") or schema.get("oneOf") or []:
        if isinstance(alt, dict):
            found |= _types(alt)
    return found or {"string"}


@dataclass
class _Tool:
    name: str
    description: str
    properties: dict[str, dict[str, Any]]
    required: list[str]

    @property
    def text(self) -> str:
        params = "; ".join(
            f"{n}: {p.get('description', '')}".strip(": ") for n, p in self.properties.items()
        )
        head = f"{self.name.replace('_', ' ')}: {self.description}".strip(": ")
        return f"{head} {params}".strip()

    @property
    def facets(self) -> list[str]:
        out: list[str] = []
        for raw in re.split(r"(?<=[.:;!?])\s+", self.description):
            part = raw.strip(" .:;")
            if not part:
                continue
            if "," in part or " or " in part:
                out += [x.strip(" .") for x in re.split(r",\s*|\s+or\s+", part) if x.strip(" .")]
            out.append(part)
        return list(dict.fromkeys(out)) or [self.name.replace("_", " ")]

    @property
    def is_search(self) -> bool:
        return any(
            n.lower() in QUERY_PARAMS and "string" in _types(self.properties.get(n, {}))
            for n in self.required
        )


def _tools(raw: Any) -> list[_Tool]:
    out = []
    for item in raw or []:
        fn = _get(item, "function") if _get(item, "type", "function") == "function" else None
        fn = fn if fn is not None else item
        name = _get(fn, "name")
        if not name:
            continue
        params = _get(fn, "parameters") or {}
        props = params.get("properties") or {} if isinstance(params, dict) else {}
        required = params.get("required") or [] if isinstance(params, dict) else []
        out.append(
            _Tool(
                name=str(name),
                description=str(_get(fn, "description") or ""),
                properties={str(k): v for k, v in props.items() if isinstance(v, dict)},
                required=[str(r) for r in required],
            )
        )
    return out


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=False))


def _enum_glosses(values: list[Any], description: str) -> dict[str, str]:
    """`value (gloss)` or `value: gloss` in a parameter description, up to the next value."""
    spans = []
    for v in values:
        m = re.search(rf"(?<!\w){re.escape(str(v))}(?!\w)", description, re.IGNORECASE)
        if m:
            spans.append((m.start(), m.end(), str(v)))
    spans.sort()
    out = {}
    for i, (_, end, v) in enumerate(spans):
        stop = spans[i + 1][0] if i + 1 < len(spans) else len(description)
        out[v] = description[end:stop].strip(" ,;:.()-—")
    return out


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


def _required_fallback(types: set[str], schema: dict[str, Any], clause: str) -> Any:
    if types & {"integer", "number"}:
        numbers = _NUMBER.findall(clause)
        if numbers:
            value = float(numbers[0])
            return int(value) if "integer" in types else value
        minimum = schema.get("minimum")
        return minimum if minimum is not None else 1
    if "boolean" in types:
        return False
    if "array" in types:
        return []
    if "object" in types:
        return {}
    return clause
