"""Text helpers of the offline models, in one place: the clauses of a question, its content words
and names, the whole sentences of a passage, and a result row as a sentence.

The local chat model (`extractive`) and the evaluation heuristics (`agentbus.analytics.evals`)
share these, so the stop words and the sentence splitter are one list and one rule for both.
Ingest's entity extraction keeps rules of its own (`agentbus.ingest.extraction`): it splits
Markdown blocks, keeps code in backticks and stops on verbs, days and months, which would change
what a question's clauses and an answer's sentences are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

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


PLACEHOLDER = "something"
