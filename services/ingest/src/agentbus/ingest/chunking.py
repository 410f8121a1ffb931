"""Split a parsed document into chunks with LlamaIndex node parsers.

Each page is split on its own, so every chunk carries exactly one page number (the citation a user
sees); chunk indices then run 0..n-1 across the whole document. The output is deterministic: the
same document and config always give the same chunks, which is what lets the worker write chunks
idempotently by (document id, chunk index, content hash).

Strategies (`ChunkingConfig.strategy`):
- `sentence`: `SentenceSplitter` packs whole sentences up to `chunk_size` tokens, with
  `chunk_overlap` tokens repeated between neighbours.
- `token`: `TokenTextSplitter` packs words into windows of `chunk_size` tokens.
- `markdown`: `MarkdownNodeParser` cuts at headings (never inside code fences); a section larger
  than `chunk_size` is then split by the sentence splitter. A heading with no body of its own is
  kept with the section that follows it instead of becoming a chunk by itself.

Tokens are counted with tiktoken's `cl100k_base`, loaded from the copy LlamaIndex ships in
`llama_index/core/_static/tiktoken_cache`, and sentences are found with NLTK's untrained Punkt
tokenizer (what LlamaIndex uses by default) — so nothing is ever downloaded, whatever
`TIKTOKEN_CACHE_DIR` or `NLTK_DATA` say. If the bundled encoding is missing, a regex
word/punctuation counter stands in (with a warning): chunk sizes are then approximate but
chunking still works.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .config import ChunkingConfig
from .parsing import ParsedDocument

__all__ = ["Chunk", "chunk_document", "count_tokens"]

log = logging.getLogger(__name__)

# sha256 of the cl100k_base ranks file, as published by OpenAI (and checked by tiktoken itself).
_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
_tokenizer_lock = threading.Lock()


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    page: int | None


Tokenizer = Callable[[str], Sequence[int | str]]


def _bundled_tiktoken_dir() -> Path:
    import llama_index.core

    return Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"


def _regex_tokens(text: str) -> list[str]:
    # Offline stand-in: words, numbers and single punctuation marks, roughly one token each.
    return re.findall(r"\w+|[^\w\s]", text)


@lru_cache(maxsize=1)
def _tokenizer() -> Tokenizer:
    """cl100k_base from the bundled cache, never the network."""
    cache_dir = _bundled_tiktoken_dir()
    # tiktoken names cache files by the sha1 of the download URL.
    cached = cache_dir / hashlib.sha1(_CL100K_URL.encode()).hexdigest()
    try:
        if hashlib.sha256(cached.read_bytes()).hexdigest() != _CL100K_SHA256:
            raise ValueError(f"{cached} does not match the published cl100k_base hash")
        import tiktoken

        # tiktoken only reads its cache from TIKTOKEN_CACHE_DIR; point it at the verified copy
        # for this one load (the encoding is then memoised by tiktoken).
        with _tokenizer_lock:
            saved = os.environ.get("TIKTOKEN_CACHE_DIR")
            os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
            try:
                encoding = tiktoken.get_encoding("cl100k_base")
            finally:
                if saved is None:
                    del os.environ["TIKTOKEN_CACHE_DIR"]
                else:
                    os.environ["TIKTOKEN_CACHE_DIR"] = saved
    except (OSError, ValueError, ImportError) as exc:
        log.warning("cl100k_base tokenizer unavailable (%s); counting regex tokens instead", exc)
        return _regex_tokens

    def encode(text: str) -> list[int]:
        # Special-token text in a document is just text, never an error.
        return encoding.encode(text, disallowed_special=())

    return encode


def count_tokens(text: str) -> int:
    """Tokens in `text` as the chunker counts them (chunk_size is measured in these)."""
    return len(_tokenizer()(text))


def _sentence_tokenizer() -> Callable[[str], list[str]]:
    # LlamaIndex's default, minus its NLTK data lookup (which may try to download).
    from llama_index.core.node_parser.text.utils import split_by_sentence_tokenizer_internal
    from nltk.tokenize import PunktSentenceTokenizer  # type: ignore[import-untyped]

    punkt = PunktSentenceTokenizer()

    def split(text: str) -> list[str]:
        return split_by_sentence_tokenizer_internal(text, punkt)

    return split


# --- text normalisation -----------------------------------------------------------------------

_INLINE_SPACE = re.compile(r"(?<=\S)[ \t\f\v\u00a0]{2,}|[\f\v\u00a0]")
_BLANK_LINES = re.compile(r"\n{3,}")


def _normalise(text: str) -> str:
    """Unify line ends, drop trailing spaces and extra blank lines, squeeze inner space runs.

    Leading indentation is kept (code blocks need it); runs of spaces after the first word of a
    line become one space.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _INLINE_SPACE.sub(" ", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


# --- splitters --------------------------------------------------------------------------------

Splitter = Callable[[str], list[str]]


@lru_cache(maxsize=32)
def _splitter(strategy: str, chunk_size: int, chunk_overlap: int) -> Splitter:
    """One splitter per distinct config, built once (the worker calls us per document)."""
    from llama_index.core.node_parser import SentenceSplitter, TokenTextSplitter

    tokenizer = _tokenizer()
    sentences = SentenceSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        tokenizer=tokenizer,
        chunking_tokenizer_fn=_sentence_tokenizer(),
    )
    if strategy == "sentence":
        return sentences.split_text
    if strategy == "token":
        tokens = TokenTextSplitter(
            chunk_size=chunk_size, chunk_overlap=chunk_overlap, tokenizer=tokenizer
        )
        return tokens.split_text
    if strategy == "markdown":
        return _markdown_splitter(sentences.split_text, chunk_size)
    raise ValueError(f"unknown chunking strategy {strategy!r}")


_HEADING = re.compile(r"^#{1,6}\s")


def _markdown_splitter(split_large: Splitter, chunk_size: int) -> Splitter:
    from llama_index.core.node_parser import MarkdownNodeParser
    from llama_index.core.schema import Document, MetadataMode

    parser = MarkdownNodeParser.from_defaults(include_metadata=False, include_prev_next_rel=False)

    def split(text: str) -> list[str]:
        nodes = parser.get_nodes_from_documents([Document(text=text)])
        sections = [node.get_content(metadata_mode=MetadataMode.NONE) for node in nodes]
        merged: list[str] = []
        pending = ""  # heading-only sections wait for the body that follows them
        for raw in sections:
            section = raw.strip()
            if not section:
                continue
            if pending:
                section = f"{pending}\n\n{section}"
                pending = ""
            if all(_HEADING.match(line) for line in section.split("\n") if line.strip()):
                pending = section
                continue
            merged.append(section)
        if pending:
            merged.append(pending)
        pieces: list[str] = []
        for section in merged:
            if count_tokens(section) <= chunk_size:
                pieces.append(section)
            else:
                pieces.extend(split_large(section))
        return pieces

    return split


def chunk_document(doc: ParsedDocument, cfg: ChunkingConfig) -> list[Chunk]:
    """Chunks of `doc` in reading order, page by page; empty pages yield none."""
    split = _splitter(cfg.strategy, cfg.chunk_size, cfg.chunk_overlap)
    chunks: list[Chunk] = []
    for page in doc.pages:
        text = _normalise(page.text)
        if not text:
            continue
        for piece in split(text):
            normalised = _normalise(piece)
            if normalised:
                chunks.append(Chunk(index=len(chunks), text=normalised, page=page.number))
    return chunks
