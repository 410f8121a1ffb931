"""Chunking: indices, pages, overlap, determinism and size bounds for every strategy, offline."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentbus.ingest import chunking
from agentbus.ingest.chunking import Chunk, chunk_document, count_tokens
from agentbus.ingest.config import ChunkingConfig
from agentbus.ingest.parsing import Page, ParsedDocument

STRATEGIES = ("sentence", "token", "markdown")

TOPICS = ("payments", "search", "billing", "alerts", "deploys", "storage", "auth", "graphs")


def sentences(topic: str, n: int) -> str:
    return " ".join(
        f"Step {i} of the {topic} runbook checks the {topic} dashboards and pages on-call."
        for i in range(n)
    )


def text_doc(text: str, kind: str = "text") -> ParsedDocument:
    return ParsedDocument(kind=kind, title="t", pages=(Page(None, text),))  # type: ignore[arg-type]


def pdf_doc() -> ParsedDocument:
    return ParsedDocument(
        kind="pdf",
        title="manual",
        pages=(
            Page(1, sentences("payments", 30)),
            Page(2, ""),  # a blank page yields no chunk but keeps the numbering
            Page(3, sentences("search", 30)),
            Page(4, "Short last page."),
        ),
    )


MARKDOWN = "\n\n".join(
    [
        "# Operations Guide",
        "## Payments",
        sentences("payments", 3),
        "```bash\n# a comment, not a heading\nmake   deploy\n```",
        "## Search\n\n" + sentences("search", 40),
        "### Tuning",
        "Keep the index warm.",
    ]
)


def check_invariants(chunks: list[Chunk], cfg: ChunkingConfig) -> None:
    assert chunks, "expected at least one chunk"
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text.strip(), chunk
        assert chunk.text == chunk.text.strip()
        assert "\r" not in chunk.text
        assert "\n\n\n" not in chunk.text
        assert all(line == line.rstrip() for line in chunk.text.split("\n"))
        assert count_tokens(chunk.text) <= cfg.chunk_size, chunk


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_invariants_and_determinism_on_plain_text(strategy: str) -> None:
    cfg = ChunkingConfig(strategy=strategy, chunk_size=64, chunk_overlap=16)  # type: ignore[arg-type]
    doc = text_doc(sentences("payments", 40) + "\n\n\n\n" + sentences("billing", 40))
    chunks = chunk_document(doc, cfg)
    check_invariants(chunks, cfg)
    assert len(chunks) > 10
    assert all(c.page is None for c in chunks)
    # Same input and an equal (not identical) config: identical output.
    again = chunk_document(text_doc(doc.text), ChunkingConfig(**cfg.model_dump()))
    assert again == chunks


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pdf_pages_are_chunked_separately(strategy: str) -> None:
    cfg = ChunkingConfig(strategy=strategy, chunk_size=48, chunk_overlap=8)  # type: ignore[arg-type]
    doc = pdf_doc()
    chunks = chunk_document(doc, cfg)
    check_invariants(chunks, cfg)
    pages = [c.page for c in chunks]
    assert pages == sorted(pages)
    assert set(pages) == {1, 3, 4}
    for chunk in chunks:
        topic = {1: "payments", 3: "search", 4: None}[chunk.page]  # type: ignore[index]
        other = {"payments", "search"} - {topic}
        # A chunk never mixes text from two pages.
        assert not any(word in chunk.text for word in other)
        if topic:
            assert topic in chunk.text
    assert chunks[-1] == Chunk(index=len(chunks) - 1, text="Short last page.", page=4)


def test_sentence_overlap_repeats_whole_sentences() -> None:
    cfg = ChunkingConfig(strategy="sentence", chunk_size=80, chunk_overlap=40)
    chunks = chunk_document(text_doc(sentences("alerts", 30)), cfg)
    assert len(chunks) > 3
    for left, right in itertools.pairwise(chunks):
        first_sentence = right.text.split(". ")[0] + "."
        assert first_sentence in left.text, (left.text, right.text)


def test_sentence_chunks_end_at_sentence_boundaries() -> None:
    cfg = ChunkingConfig(strategy="sentence", chunk_size=64, chunk_overlap=0)
    chunks = chunk_document(text_doc(sentences("deploys", 30)), cfg)
    assert all(c.text.endswith(".") for c in chunks)
    assert all(c.text.startswith("Step ") for c in chunks)


def test_token_overlap_shares_text_between_neighbours() -> None:
    cfg = ChunkingConfig(strategy="token", chunk_size=40, chunk_overlap=12)
    chunks = chunk_document(text_doc(sentences("storage", 20)), cfg)
    assert len(chunks) > 3
    for left, right in itertools.pairwise(chunks):
        head = " ".join(right.text.split()[:3])
        assert head in left.text, (left.text, right.text)


def test_no_overlap_means_no_repeated_text() -> None:
    text = " ".join(f"Word{i}" for i in range(400))
    for strategy in ("sentence", "token"):
        cfg = ChunkingConfig(strategy=strategy, chunk_size=50, chunk_overlap=0)  # type: ignore[arg-type]
        chunks = chunk_document(text_doc(text), cfg)
        words = [w for c in chunks for w in c.text.split()]
        assert words == text.split()


def test_markdown_splits_at_headings_and_splits_large_sections() -> None:
    cfg = ChunkingConfig(strategy="markdown", chunk_size=128, chunk_overlap=8)
    chunks = chunk_document(text_doc(MARKDOWN, "markdown"), cfg)
    check_invariants(chunks, cfg)
    # A heading with no body of its own travels with the next section.
    assert chunks[0].text.startswith("# Operations Guide\n\n## Payments\n\nStep 0 of the payments")
    # A `#` line inside a code fence is not a heading; the fence stays with its section.
    assert "# a comment, not a heading\nmake deploy\n```" in chunks[0].text
    assert "search" not in chunks[0].text
    search = [c for c in chunks if "search" in c.text]
    assert len(search) > 2  # the large section was split
    assert search[0].text.startswith("## Search")
    assert chunks[-1].text == "### Tuning\n\nKeep the index warm."


def test_markdown_without_headings_behaves_like_sentences() -> None:
    text = sentences("auth", 30)
    md = chunk_document(text_doc(text, "markdown"), ChunkingConfig(strategy="markdown"))
    plain = chunk_document(text_doc(text), ChunkingConfig(strategy="sentence"))
    assert [c.text for c in md] == [c.text for c in plain]


def test_whitespace_is_normalised() -> None:
    doc = text_doc("  Alpha   beta\t\tgamma.  \r\n\r\n\r\n\r\nDelta\u00a0\u00a0epsilon.   \n")
    chunks = chunk_document(doc, ChunkingConfig())
    assert chunks == [Chunk(0, "Alpha beta gamma.\n\nDelta epsilon.", None)]
    # Indentation inside the text is meaningful (code, nested lists) and is kept.
    code = text_doc("def f():\n    return  1\n")
    assert chunk_document(code, ChunkingConfig())[0].text == "def f():\n    return 1"


def test_blank_and_empty_documents_give_no_chunks() -> None:
    doc = ParsedDocument(kind="pdf", title=None, pages=(Page(1, ""), Page(2, " \n\t ")))
    assert chunk_document(doc, ChunkingConfig()) == []


def test_a_single_giant_word_is_still_bounded() -> None:
    cfg = ChunkingConfig(strategy="sentence", chunk_size=32, chunk_overlap=0)
    chunks = chunk_document(text_doc("x" * 5000), cfg)
    check_invariants(chunks, cfg)
    assert "".join(c.text for c in chunks) == "x" * 5000


def test_splitters_are_built_once_per_config() -> None:
    cfg = ChunkingConfig(strategy="token", chunk_size=77, chunk_overlap=7)
    doc = text_doc(sentences("graphs", 10))
    chunk_document(doc, cfg)
    misses = chunking._splitter.cache_info().misses
    for _ in range(3):
        chunk_document(doc, ChunkingConfig(strategy="token", chunk_size=77, chunk_overlap=7))
    assert chunking._splitter.cache_info().misses == misses


def test_tokens_are_counted_with_cl100k() -> None:
    # cl100k_base splits these exactly so; the regex stand-in would count differently.
    assert count_tokens("hello world") == 2
    assert count_tokens("tiktoken is great!") == 6
    assert count_tokens("<|endoftext|>") > 1  # special tokens in documents are plain text


def test_chunking_never_touches_the_network(tmp_path: Path) -> None:
    """In a fresh process with sockets disabled and caches pointing at empty folders."""
    script = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise RuntimeError("network access attempted")

        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from agentbus.ingest.chunking import chunk_document, count_tokens
        from agentbus.ingest.config import ChunkingConfig
        from agentbus.ingest.parsing import Page, ParsedDocument

        text = "# Title\\n\\n" + " ".join(f"Sentence {i} is about Rust." for i in range(200))
        doc = ParsedDocument(kind="markdown", title=None, pages=(Page(None, text),))
        for strategy in ("sentence", "token", "markdown"):
            cfg = ChunkingConfig(strategy=strategy, chunk_size=64, chunk_overlap=8)
            assert len(chunk_document(doc, cfg)) > 5
        print("tokens", count_tokens("hello world"))
        """
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": str(empty),
        "NLTK_DATA": str(empty),
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tokens 2"
    assert "unavailable" not in result.stderr  # the real tokenizer, not the stand-in
    assert list(empty.iterdir()) == []  # nothing was downloaded or cached there
