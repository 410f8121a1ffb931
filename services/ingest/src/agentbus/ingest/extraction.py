"""Entities and relations for the knowledge graph, from a chunk of text.

The offline default, `extract()`, is deterministic (same text, same result) and needs no model.

**Sentences.** Paragraphs are split at blank lines. Headings, list items, table rows and lines of
fenced code stand alone; other wrapped lines are joined. A sentence then ends at `.`, `!` or `?`
followed by space and a capital, digit, quote or backtick — except after common abbreviations
(e.g., i.e., Dr., Inc., ...) and single-letter initials.

**Code identifiers** (kind `code`), found first so that they are never read as names:
- backticked spans (`` `make run` ``, 2-80 characters including a letter);
- calls `name()` and `pkg.name()` (reported without the parentheses);
- dotted names `agentbus.ingest.parsing`, `Node.js` (every part at least 2 characters, so "e.g"
  does not count);
- `snake_case` / `UPPER_SNAKE`, `camelCase`, and mixed-case words such as `PaymentGateway`,
  `FastAPI`, `HTTPServer` (a lower-case letter followed by a capital, or capitals then lower-case);
- `kebab-case` names, but only when they look technical — they contain a digit (`gpt-4`), or a
  part is a software word (`payments-api`, `auth-service`, `web-ui`), or the same name appears in
  backticks elsewhere in the text — because most hyphenated English words (`long-running`,
  `end-to-end`) are not entities. Suffixes such as `-side`, `-based` and `-level` never count.

**Proper-noun phrases** (kind `name`): runs of capitalised words separated only by spaces
("Alice Smith", "Bank of America"); short lower-case connectors (of, de, van, von, la, the, ...)
may join two capitalised words, at most two in a row. Punctuation, code identifiers and
possessives ("Alice's") end a run. Stop-words (The, This, We, It, When, Install, Monday, ...)
are never part of a name and split runs; single letters and generic acronyms (API, URL, JSON,
...) are ignored. At the start of a sentence capitals prove nothing, so:
- a one-word run there counts only if the same word is capitalised mid-sentence somewhere else
  in the text;
- the first word of a longer run there is dropped when it occurs in lower case elsewhere in the
  text, or ends in -ing/-ed/-ly, unless it is confirmed mid-sentence ("Deploying Rust" -> Rust;
  "Alice Smith maintains" -> Alice Smith);
- in a Markdown heading, where Title Case is the norm, a run is trimmed at both ends until its
  end words are ones the prose capitalises mid-sentence ("## Payments Runbook" -> Payments
  when the text says "the Payments team", nothing otherwise).

**Entities.** Mentions are grouped by key: the surface form in lower case with single spaces.
`count` is the number of mentions, `name` the most frequent surface form (first seen wins a tie),
`kind` the more frequent kind (`code` wins a tie). The top `max_entities` by count are kept, ties
broken by key.

**Relations.** Two kept entities mentioned in the same sentence are related; `weight` is the
number of sentences they share, not normalised, so that the graph can add up the weights of a
document's chunks. Each pair appears once with `source < target`. Relations are ordered by
weight (descending), then source and target.

`extract_with_llm()` asks a model for the same shape of answer and falls back to `extract()` when
the reply cannot be used.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["Entity", "Relation", "build_prompt", "extract", "extract_with_llm"]

log = logging.getLogger(__name__)

EntityKind = Literal["name", "code"]


@dataclass(frozen=True)
class Entity:
    key: str  # graph identity: lower case, single spaces
    name: str  # the most common surface form
    kind: EntityKind
    count: int


@dataclass(frozen=True)
class Relation:
    source: str  # entity keys, source < target
    target: str
    weight: float


def normalise_key(surface: str) -> str:
    return " ".join(surface.split()).lower()


# --- vocabularies -----------------------------------------------------------------------------


def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


_STOP_WORDS = _vocabulary(
    """
    a an the this that these those there here it its it's i we you he she they me us him her them
    my our your his their who what which whom whose when where why how while if then than so but
    and or nor not no yes also however therefore thus hence meanwhile moreover furthermore
    although though because since until unless after before during about above below between
    into onto upon within without through across along among around against toward towards
    in on at by for from of to with as is are was were be been being am do does did done have
    has had can could will would shall should may might must each every all some any many most
    more much few several both either neither other another such same own only just even still
    again once always never often sometimes usually now today tomorrow yesterday please thanks
    thank hello hi dear note notes see use using used example examples step steps first second
    third next last finally one two three four five six seven eight nine ten
    install run add create make set check update remove delete open close start stop get put
    click select choose enter read write send call configure enable disable deploy build test
    let ensure follow copy paste restart upload download keep try avoid consider ask tell
    contact email ping visit talk reach
    monday tuesday wednesday thursday friday saturday sunday january february march april may
    june july august september october november december
    mr mrs ms dr prof sir madam
    """
)
_GENERIC_ACRONYMS = _vocabulary(
    "ok id ids todo faq fyi tbd eta api apis url urls uri http https json yaml xml csv pdf utc am"
    " pm eof n/a"
)
_CONNECTORS = _vocabulary("of de da di du des del della der den van von la le y the")
_ABBREVIATIONS = _vocabulary(
    "e.g i.e etc vs cf al approx dept est fig no nos mr mrs ms dr prof inc ltd co corp jr sr st"
)
_TECH_PARTS = _vocabulary(
    """
    api apis svc service services server srv worker workers db sql ui cli sdk app apps web www
    gateway bot core lib libs js ts go rs py rb k8s prod staging stage dev infra ops proxy queue
    cache store engine agent agents client runner controller operator plugin backend frontend
    mobile ios android etl ml bus auth pipeline repo cron daemon job jobs lambda function
    """
)
_ADJECTIVE_SUFFIXES = _vocabulary(
    "side sided based like wide level time friendly ready only first free aware facing driven"
    " heavy safe style term scale grade class end"
)

# --- patterns ---------------------------------------------------------------------------------

_BACKTICK = re.compile(r"`([^`\n]{1,80})`")
_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\(\)")
_DOTTED = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?![\w(])")
_SNAKE = re.compile(r"(?<![\w.])_*[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+(?!\w)")
_KEBAB = re.compile(r"(?<![\w.-])[a-z][a-z0-9]*(?:-[a-z0-9]+)+(?![\w-])")
_MIXED_CASE = re.compile(r"[a-z][A-Z]|[A-Z]{2,}[a-z]{2,}")
# A whole word that contains a mixed-case transition (checked by the lookahead, in the regex
# engine rather than per word in Python).
_MIXED = re.compile(
    r"(?<![\w.])(?=[A-Za-z0-9]*(?:[a-z][A-Z]|[A-Z]{2,}[a-z]{2}))[A-Za-z][A-Za-z0-9]*(?!\w)"
)
_WORD = re.compile(r"[^\W\d_](?:\w|['\u2019-](?=\w))*")
_CALL_SUFFIX = re.compile(r"\s*\([^()]*\)$")

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[`]*[A-Z0-9`])")
_STANDALONE_LINE = re.compile(r"^\s*(?:#{1,6}\s|[-*+•]\s|\d{1,3}[.)]\s|\|)")
_FENCE = re.compile(r"^\s*(```|~~~)")


# --- sentences --------------------------------------------------------------------------------


def _split_sentences(text: str) -> list[str]:
    sentences: list[str] = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        segments: list[str] = []
        in_fence = False
        joinable = False  # may the next line continue the current segment?
        for line in block.split("\n"):
            if _FENCE.match(line):
                in_fence = not in_fence
                joinable = False
                continue
            if not line.strip():
                continue
            if in_fence or _STANDALONE_LINE.match(line) or not joinable:
                segments.append(line.strip())
            else:
                segments[-1] += " " + line.strip()
            # Lines of code stand alone; a heading or table row ends at its line break.
            joinable = not in_fence and not re.match(r"^\s*(#{1,6}\s|\|)", line)
        for segment in segments:
            sentences.extend(_split_segment(segment))
    return [s for s in sentences if s.strip()]


def _split_segment(segment: str) -> list[str]:
    parts: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(segment):
        # Only the tail matters, and a bounded one keeps this linear on hostile input.
        before = segment[max(start, match.start() - 24) : match.start()].rstrip("\"')]")
        last_word = re.search(r"(?<![\w.])([\w.]+)\.$", before)
        if last_word:
            word = last_word.group(1).lower()
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue  # "e.g. Rust", "J. Smith": not a sentence end
        parts.append(segment[start : match.start()].strip())
        start = match.end()
    parts.append(segment[start:].strip())
    return [p for p in parts if p]


# --- mentions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mention:
    key: str
    surface: str
    kind: EntityKind


def _clean_code(surface: str) -> str | None:
    text = _CALL_SUFFIX.sub("", surface.strip())
    if not any(ch.isalpha() for ch in text) or len(text) < 2:
        return None
    return " ".join(text.split())


def _is_technical_kebab(word: str, backticked: set[str]) -> bool:
    parts = word.split("-")
    if parts[-1] in _ADJECTIVE_SUFFIXES:
        return False
    if any(ch.isdigit() for ch in word) or word in backticked:
        return True
    return any(part in _TECH_PARTS for part in parts)


def _code_mentions(
    sentence: str, backticked: set[str]
) -> tuple[list[_Mention], list[tuple[int, int]], bytearray]:
    """Code identifiers in a sentence, the spans they occupy, and a mask of those characters."""
    taken: list[tuple[int, int]] = []
    # One byte per character, 1 where code was found: overlap checks stay linear in the span
    # length, however many identifiers a (hostile) sentence holds.
    mask = bytearray(len(sentence))
    mentions: list[tuple[int, _Mention]] = []

    def free(start: int, end: int) -> bool:
        return not any(mask[start:end])

    def add(start: int, end: int, surface: str) -> None:
        cleaned = _clean_code(surface)
        taken.append((start, end))  # even a rejected span is not prose
        mask[start:end] = b"\x01" * (end - start)
        if cleaned is not None:
            mentions.append((start, _Mention(normalise_key(cleaned), cleaned, "code")))

    for match in _BACKTICK.finditer(sentence):
        add(match.start(), match.end(), match.group(1))
    for match in _CALL.finditer(sentence):
        if free(match.start(), match.end()):
            add(match.start(), match.end(), match.group(1))
    for match in _DOTTED.finditer(sentence):
        word = match.group(0)
        if free(match.start(), match.end()) and all(len(p) >= 2 for p in word.split(".")):
            add(match.start(), match.end(), word)
    for match in _SNAKE.finditer(sentence):
        if free(match.start(), match.end()):
            add(match.start(), match.end(), match.group(0))
    for match in _KEBAB.finditer(sentence):
        word = match.group(0)
        if free(match.start(), match.end()) and _is_technical_kebab(word, backticked):
            add(match.start(), match.end(), word)
    for match in _MIXED.finditer(sentence):
        if free(match.start(), match.end()):
            add(match.start(), match.end(), match.group(0))
    mentions.sort(key=lambda item: item[0])
    return [mention for _, mention in mentions], taken, mask


@dataclass(frozen=True)
class _Word:
    text: str  # without a possessive 's
    start: int
    end: int
    possessive: bool


def _words(sentence: str, taken: list[tuple[int, int]], mask: bytearray) -> list[_Word | None]:
    """Word tokens in order; None stands for a code span (it breaks name runs)."""
    words: list[tuple[int, _Word | None]] = [(start, None) for start, _ in taken]
    for match in _WORD.finditer(sentence):
        if any(mask[match.start() : match.end()]):
            continue
        text = match.group(0)
        possessive = text.endswith(("'s", "\u2019s"))
        if possessive:
            text = text[:-2]
        words.append((match.start(), _Word(text, match.start(), match.end(), possessive)))
    words.sort(key=lambda item: item[0])
    return [word for _, word in words]


def _is_cap(word: _Word | None) -> bool:
    return (
        word is not None
        and word.text[:1].isupper()
        and word.text.lower() not in _STOP_WORDS
        and len(word.text) > 1
    )


def _adjacent(sentence: str, left: _Word | None, right: _Word | None) -> bool:
    if left is None or right is None or left.possessive:
        return False
    return sentence[left.end : right.start] in (" ", "  ")


def _runs(sentence: str, words: list[_Word | None]) -> list[list[int]]:
    """Index runs of capitalised words, with connectors inside ("Bank of the West")."""
    runs: list[list[int]] = []
    i = 0
    while i < len(words):
        if not _is_cap(words[i]):
            i += 1
            continue
        run = [i]
        j = i + 1
        while j < len(words) and _adjacent(sentence, words[j - 1], words[j]):
            if _is_cap(words[j]):
                run.append(j)
                j += 1
                continue
            k = j
            while (
                k < len(words)
                and k - j < 2
                and (word := words[k]) is not None
                and word.text in _CONNECTORS
                and _adjacent(sentence, words[k - 1], word)
            ):
                k += 1
            if (
                j < k < len(words)
                and _is_cap(words[k])
                and _adjacent(sentence, words[k - 1], words[k])
            ):
                run.extend(range(j, k + 1))
                j = k + 1
                continue
            break
        runs.append(run)
        i = j
    return runs


def _is_heading(sentence: str) -> bool:
    return sentence.startswith("#")


def _looks_verbal(word: str) -> bool:
    return word.lower().endswith(("ing", "ed", "ly")) and len(word) > 4


class _Text:
    """Per-text facts the sentence-start rules need."""

    def __init__(self, sentences: list[str]) -> None:
        self.mid_caps: set[str] = set()
        self.lower_words: set[str] = set()
        self.backticked: set[str] = set()
        for sentence in sentences:
            for match in _BACKTICK.finditer(sentence):
                self.backticked.add(match.group(1).strip().lower())
            heading = _is_heading(sentence)
            for index, match in enumerate(_WORD.finditer(sentence)):
                text = match.group(0)
                if text[:1].isupper():
                    if index > 0 and not heading:  # Title Case headings prove nothing
                        self.mid_caps.add(text.removesuffix("'s").removesuffix("\u2019s").lower())
                else:
                    self.lower_words.add(text)


def _name_mentions(sentence: str, words: list[_Word | None], facts: _Text) -> list[_Mention]:
    first_word = next((i for i, w in enumerate(words) if w is not None), None)
    mentions: list[_Mention] = []
    for run in _runs(sentence, words):
        members = [w for w in (words[i] for i in run) if w is not None]
        if _is_heading(sentence):
            # Headings are often Title Case: keep only words that are capitalised in prose too.
            while members and members[0].text.lower() not in facts.mid_caps:
                members = members[1:]
            while members and members[-1].text.lower() not in facts.mid_caps:
                members = members[:-1]
        elif run[0] == first_word:
            head = members[0].text
            lowered = head.lower()
            confirmed = lowered in facts.mid_caps
            if len(members) == 1:
                if not confirmed:
                    continue
            elif not confirmed and (lowered in facts.lower_words or _looks_verbal(head)):
                members = members[1:]
                while members and members[0].text in _CONNECTORS:
                    members = members[1:]
        if not members:
            continue
        surface = " ".join(sentence[members[0].start : members[-1].end].split())
        surface = surface.removesuffix("'s").removesuffix("\u2019s")
        key = normalise_key(surface)
        if len(key) < 2 or key in _GENERIC_ACRONYMS or key in _STOP_WORDS:
            continue
        mentions.append(_Mention(key, surface, "name"))
    return mentions


def _mentions_by_sentence(text: str) -> list[list[_Mention]]:
    sentences = _split_sentences(text)
    facts = _Text(sentences)
    result: list[list[_Mention]] = []
    for sentence in sentences:
        code, taken, mask = _code_mentions(sentence, facts.backticked)
        names = _name_mentions(sentence, _words(sentence, taken, mask), facts)
        result.append(code + names)
    return result


# --- aggregation ------------------------------------------------------------------------------


def _entities(mentions: Iterable[_Mention]) -> dict[str, Entity]:
    surfaces: dict[str, Counter[str]] = {}
    kinds: dict[str, Counter[str]] = {}
    for mention in mentions:
        # Counter keeps insertion order, so most_common() breaks ties by first appearance.
        surfaces.setdefault(mention.key, Counter())[mention.surface] += 1
        kinds.setdefault(mention.key, Counter())[mention.kind] += 1
    entities: dict[str, Entity] = {}
    for key, forms in surfaces.items():
        kind_counts = kinds[key]
        kind: EntityKind = "code" if kind_counts["code"] >= kind_counts["name"] else "name"
        name = forms.most_common(1)[0][0]
        entities[key] = Entity(key=key, name=name, kind=kind, count=sum(forms.values()))
    return entities


def _top(entities: Iterable[Entity], limit: int) -> list[Entity]:
    return sorted(entities, key=lambda e: (-e.count, e.key))[: max(limit, 0)]


def _sorted_relations(weights: dict[tuple[str, str], float]) -> list[Relation]:
    return [
        Relation(source=s, target=t, weight=w)
        for (s, t), w in sorted(weights.items(), key=lambda item: (-item[1], item[0]))
    ]


def extract(text: str, max_entities: int = 20) -> tuple[list[Entity], list[Relation]]:
    """Deterministic entities and same-sentence co-occurrence relations (see module docstring)."""
    per_sentence = _mentions_by_sentence(text)
    entities = _top(_entities(m for ms in per_sentence for m in ms).values(), max_entities)
    kept = {entity.key for entity in entities}
    weights: dict[tuple[str, str], float] = {}
    for mentions in per_sentence:
        keys = sorted({m.key for m in mentions if m.key in kept})
        for pair in combinations(keys, 2):
            weights[pair] = weights.get(pair, 0.0) + 1.0
    return entities, _sorted_relations(weights)


# --- LLM extraction ---------------------------------------------------------------------------

# Enough context for a chunk or a short document; longer text is cut to bound prompt cost.
MAX_PROMPT_TEXT = 12_000

_CODE_TYPES = (
    "code", "function", "method", "class", "module", "package", "library", "identifier",
    "variable", "api", "endpoint", "file", "repository", "repo", "service", "command",
)  # fmt: skip


def build_prompt(text: str, max_entities: int = 20) -> str:
    """The instruction sent to the model (public so the worker can log or count it)."""
    return (
        "Extract a knowledge graph from the text below.\n"
        f"List at most {max_entities} entities that the text names: people, teams, organisations,"
        " products, technologies, programming languages, services, repositories and code"
        " identifiers (functions, classes, modules). Use each entity's name exactly as written in"
        " the text. Give each a type: one of person, team, organization, product, technology,"
        " language, service, repository, code, place, other.\n"
        "List relations between those entities that the text states or clearly implies, with a"
        " weight from 0 to 1 for how strongly they are connected.\n"
        "Answer with one JSON object and nothing else, in this form:\n"
        '{"entities": [{"name": "...", "type": "..."}], '
        '"relations": [{"source": "<entity name>", "target": "<entity name>", "weight": 0.8}]}\n'
        "\nText:\n"
        '"""\n'
        f"{text[:MAX_PROMPT_TEXT]}\n"
        '"""\n'
    )


class _LlmEntity(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1, max_length=200)
    type: str = "other"

    @field_validator("type", mode="before")
    @classmethod
    def _any_type(cls, value: Any) -> str:
        return str(value) if value is not None else "other"


class _LlmRelation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    source: str = Field(min_length=1)
    target: str = Field(min_length=1)
    weight: float = 1.0

    @field_validator("weight", mode="before")
    @classmethod
    def _lenient_weight(cls, value: Any) -> float:
        try:
            weight = float(value)
        except (TypeError, ValueError):
            return 1.0
        return weight if math.isfinite(weight) and weight > 0 else 1.0


_FENCED = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def _json_object(reply: str) -> dict[str, Any] | None:
    """The first JSON object in a reply: inside a code fence or not, prose before or after."""
    candidates = [m.group(1) for m in _FENCED.finditer(reply)] + [reply]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        start = candidate.find("{")
        tries = 0
        while start != -1 and tries < 20:
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                start = candidate.find("{", start + 1)
                tries += 1
                continue
            if isinstance(value, dict) and "entities" in value:
                return value
            start = candidate.find("{", start + 1)
            tries += 1
    return None


def _mention_count(name: str, haystack: str) -> int:
    """How often `name` occurs in the text, as a whole word, ignoring case and spacing."""
    words = [re.escape(part) for part in name.split()]
    if not words:
        return 0
    pattern = r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)"
    return len(re.findall(pattern, haystack, flags=re.IGNORECASE))


def _from_llm(
    data: dict[str, Any], text: str, max_entities: int
) -> tuple[list[Entity], list[Relation]] | None:
    raw_entities = data.get("entities")
    raw_relations = data.get("relations", [])
    if not isinstance(raw_entities, list):
        return None
    if not isinstance(raw_relations, list):
        raw_relations = []
    found: dict[str, Entity] = {}
    for item in raw_entities:
        try:
            parsed = _LlmEntity.model_validate(item)
        except ValidationError:
            continue
        name = _clean_code(parsed.name) if "(" in parsed.name else " ".join(parsed.name.split())
        if not name:
            continue
        key = normalise_key(name)
        # Keep only entities grounded in the text: a name the text never mentions is invented.
        count = _mention_count(name, text)
        if count == 0 or key in found:
            continue
        is_code = parsed.type.lower() in _CODE_TYPES or bool(
            _MIXED_CASE.search(name) or re.fullmatch(r"[\w.]*[_.][\w.]*", name)
        )
        found[key] = Entity(key=key, name=name, kind="code" if is_code else "name", count=count)
    if raw_entities and not found:
        return None  # every entity was malformed or invented: the reply is not usable
    entities = _top(found.values(), max_entities)
    kept = {entity.key for entity in entities}
    weights: dict[tuple[str, str], float] = {}
    for item in raw_relations:
        try:
            relation = _LlmRelation.model_validate(item)
        except ValidationError:
            continue
        a = normalise_key(_clean_code(relation.source) or relation.source)
        b = normalise_key(_clean_code(relation.target) or relation.target)
        if a == b or a not in kept or b not in kept:
            continue
        pair = (min(a, b), max(a, b))
        weights[pair] = max(weights.get(pair, 0.0), relation.weight)
    return entities, _sorted_relations(weights)


async def extract_with_llm(
    text: str,
    complete: Callable[[str], Awaitable[str]],
    max_entities: int = 20,
) -> tuple[list[Entity], list[Relation]]:
    """Entities and relations from a model; `extract()` when the reply is unusable.

    `complete` sends a prompt and returns the reply text (the worker passes a LiteLLM call).
    Exceptions from `complete` propagate — a provider error is the worker's to retry — but a
    reply that is not the requested JSON, or names nothing that occurs in the text, falls back
    to the deterministic extractor. Entity counts are the mentions found in the text; relation
    weights are the model's (0-1, default 1), duplicates keeping the highest.
    """
    if not text.strip():
        return [], []
    reply = await complete(build_prompt(text, max_entities))
    data = _json_object(reply) if isinstance(reply, str) else None
    result = _from_llm(data, text, max_entities) if data is not None else None
    if result is None:
        log.warning("LLM entity extraction reply unusable; using the deterministic extractor")
        return extract(text, max_entities)
    return result
