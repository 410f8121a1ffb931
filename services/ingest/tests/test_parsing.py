"""Parsing: every supported format, and a clear ParseError for every kind of bad input."""

from __future__ import annotations

import io
import random

import pytest
from fpdf import FPDF

from agentbus.ingest.parsing import Page, ParsedDocument, ParseError, detect_kind, parse

PAGE_TEXTS = (
    "Deployments roll out through the canary stage first.",
    "Rollback restores the previous release in under five minutes.",
    "Incident reviews are written within two working days.",
)


def make_pdf(
    pages: tuple[str, ...] = PAGE_TEXTS,
    *,
    title: str | None = "Release Runbook",
    owner_password: str | None = None,
    user_password: str = "",
) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    if title:
        pdf.set_title(title)
    if owner_password is not None:
        pdf.set_encryption(owner_password=owner_password, user_password=user_password)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def image_only_pdf() -> bytes:
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 30, 30)).save(png, format="PNG")
    png.seek(0)
    pdf = FPDF()
    pdf.add_page()
    pdf.image(png, x=10, y=10, w=80)
    return bytes(pdf.output())


def reason_of(data: bytes, filename: str, content_type: str) -> str:
    with pytest.raises(ParseError) as caught:
        parse(data, filename, content_type)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == caught.value.reason
    assert "\n" not in caught.value.reason
    return caught.value.reason


# --- formats ----------------------------------------------------------------------------------


def test_plain_text_keeps_text_and_takes_title_from_filename() -> None:
    doc = parse(b"Line one.\r\nLine two.\n", "notes/ops-handbook.txt", "text/plain")
    assert doc == ParsedDocument(
        kind="text", title="ops-handbook", pages=(Page(None, "Line one.\nLine two.\n"),)
    )
    assert doc.text == "Line one.\nLine two.\n"


def test_utf8_bom_is_accepted_and_dropped() -> None:
    doc = parse("\ufeffCafé au lait".encode(), "menu.txt", "text/plain; charset=utf-8")
    assert doc.pages[0].text == "Café au lait"


def test_markdown_title_is_the_first_h1_outside_code() -> None:
    source = (
        "Intro line.\n\n```bash\n# not a title\n```\n\n## Section\n\n# Deploy Guide #\n\nBody.\n"
    )
    doc = parse(source.encode(), "guide.md", "text/markdown")
    assert doc.kind == "markdown"
    assert doc.title == "Deploy Guide"
    assert "# not a title" in doc.text  # Markdown is kept as written for the chunker


def test_markdown_setext_and_front_matter_titles_and_fallback() -> None:
    setext = parse(b"Operations\n==========\n\nText.", "ops.md", "text/markdown")
    assert setext.title == "Operations"
    front = parse(b"---\ntitle: 'From Front Matter'\n---\nNo heading.", "x.md", "text/markdown")
    assert front.title == "From Front Matter"
    plain = parse(b"No heading at all.", "faq.md", "text/markdown")
    assert plain.title == "faq"


HTML = b"""<!DOCTYPE html>
<html><head><title> Rollback &amp; Recovery </title>
<style>body { color: red; }</style>
<script>var secret = "do not index";</script>
</head>
<body>
<noscript>Enable JavaScript</noscript>
<template><p>template text</p></template>
<svg><title>icon title</title><text>svg text</text></svg>
<h1>Main   heading</h1>
<p>First&nbsp;paragraph with <b>bold</b> and
   wrapped   text.</p>
<ul><li>one</li><li>two &lt;3</li></ul>
<pre>line 1
  line 2</pre>
<p>Caf&eacute; &#x27;quoted&#x27;<br>after break</p>
<!-- a comment -->
</body></html>"""


def test_html_text_and_title_without_scripts_or_styles() -> None:
    doc = parse(HTML, "page.html", "text/html")
    assert doc.kind == "html"
    assert doc.title == "Rollback & Recovery"
    text = doc.text
    for hidden in ("secret", "color", "Enable JavaScript", "template text", "svg text", "icon"):
        assert hidden not in text
    assert "comment" not in text
    assert "Main heading" in text
    assert "First paragraph with bold and wrapped text." in text
    assert "one\ntwo <3" in text
    assert "line 1\n  line 2" in text  # <pre> keeps its lines
    assert "Café 'quoted'\nafter break" in text
    assert "\n\n\n" not in text
    assert doc.pages == (Page(None, text),)


def test_html_title_falls_back_to_h1_then_filename() -> None:
    assert parse(b"<h1>Heading Title</h1><p>x</p>", "a.html", "text/html").title == "Heading Title"
    assert parse(b"<p>only text</p>", "b.htm", "text/html").title == "b"


def test_html_honours_a_declared_legacy_charset() -> None:
    markup = '<meta charset="iso-8859-1"><p>Café</p>'.encode("latin-1")
    assert parse(markup, "old.html", "text/html").text == "Café"
    assert parse("<p>Café</p>".encode("latin-1"), "a.html", "text/html; charset=latin-1").text == (
        "Café"
    )


def test_pdf_text_per_page_with_page_numbers_and_title() -> None:
    doc = parse(make_pdf(), "runbook.pdf", "application/pdf")
    assert doc.kind == "pdf"
    assert doc.title == "Release Runbook"
    assert [page.number for page in doc.pages] == [1, 2, 3]
    assert [page.text for page in doc.pages] == list(PAGE_TEXTS)
    assert doc.text == "\n\n".join(PAGE_TEXTS)


def test_pdf_without_metadata_title_uses_filename_and_keeps_blank_pages() -> None:
    doc = parse(make_pdf(("Some text.", ""), title=None), "scan-01.pdf", "application/pdf")
    assert doc.title == "scan-01"
    assert doc.pages == (Page(1, "Some text."), Page(2, ""))


def test_pdf_encrypted_only_for_permissions_opens_with_empty_password() -> None:
    doc = parse(make_pdf(owner_password="owner-secret"), "locked.pdf", "application/pdf")
    assert [page.text for page in doc.pages] == list(PAGE_TEXTS)


# --- kind detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content_type", "data", "kind"),
    [
        ("a.txt", "text/plain", b"x", "text"),
        ("a.md", "text/markdown", b"x", "markdown"),
        ("a.md", "text/plain", b"x", "markdown"),
        ("a.md", "application/octet-stream", b"x", "markdown"),
        ("a.markdown", "", b"x", "markdown"),
        ("a.html", "text/html; charset=utf-8", b"x", "html"),
        ("a.htm", "application/octet-stream", b"x", "html"),
        ("a", "application/octet-stream", b"<!DOCTYPE html><p>x", "html"),
        ("README", "", b"hello", "text"),
        ("a.pdf", "application/pdf", b"%PDF-1.7 ...", "pdf"),
        ("a.pdf", "application/octet-stream", b"not really", "pdf"),
        ("a.txt", "text/plain", b"%PDF-1.4 bytes win", "pdf"),
        ("a.bin", "image/png", b"%PDF-1.4 bytes win", "pdf"),
        ("main.py", "text/x-python", b"x", "text"),
        ("data.json", "application/json", b"{}", "text"),
        ("a.yaml", "application/octet-stream", b"k: v", "text"),
        ("Notes.MD", "TEXT/PLAIN", b"x", "markdown"),
    ],
)
def test_detect_kind(filename: str, content_type: str, data: bytes, kind: str) -> None:
    assert detect_kind(filename, content_type, data) == kind


@pytest.mark.parametrize(
    ("filename", "content_type", "reason"),
    [
        ("photo.png", "image/png", "unsupported file type: image/png (.png)"),
        ("blob.bin", "binary/octet-stream", "unsupported file type: binary/octet-stream (.bin)"),
        ("report.docx", "", "unsupported file type: no content type (.docx)"),
        ("archive", "application/zip", "unsupported file type: application/zip"),
    ],
)  # fmt: skip
def test_unsupported_types(filename: str, content_type: str, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        detect_kind(filename, content_type, b"\x89PNG\r\n\x1a\n")
    assert caught.value.reason == reason
    assert reason_of(b"\x89PNG\r\n\x1a\n", filename, content_type) == reason


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\t \r\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf \n"])
@pytest.mark.parametrize(
    ("filename", "content_type"),
    [("a.txt", "text/plain"), ("a.md", "text/markdown"), ("a.pdf", "application/pdf")],
)
def test_empty_or_whitespace_file(data: bytes, filename: str, content_type: str) -> None:
    assert reason_of(data, filename, content_type) == "file is empty"


def test_binary_garbage_is_not_text() -> None:
    garbage = random.Random(20240611).randbytes(4096)
    for filename, content_type in [
        ("a.txt", "text/plain"),
        ("a.md", "text/markdown"),
        ("a.html", "text/html"),
        ("noext", "application/octet-stream"),
    ]:
        assert reason_of(garbage, filename, content_type) == "looks like binary data, not text"


def test_nul_bytes_and_control_characters_are_binary() -> None:
    assert reason_of(b"hello\x00world", "a.txt", "text/plain") == "looks like binary data, not text"
    controls = bytes(range(1, 9)) * 20 + b"some text"
    assert reason_of(controls, "a.txt", "text/plain") == "looks like binary data, not text"


def test_invalid_utf8_reports_the_offset() -> None:
    data = "naïve text ".encode() * 10 + "café".encode("latin-1") + b" and more"
    offset = data.index(b"\xe9")
    assert reason_of(data, "a.txt", "text/plain") == (
        f"not valid UTF-8 (invalid byte at offset {offset})"
    )
    # The offset counts the BOM too: it points into the file as uploaded.
    assert reason_of(b"\xef\xbb\xbfab\xff", "a.md", "text/markdown") == (
        "not valid UTF-8 (invalid byte at offset 5)"
    )


def test_utf16_gets_a_helpful_reason() -> None:
    data = "hello".encode("utf-16")
    assert reason_of(data, "a.txt", "text/plain").startswith("not valid UTF-8 (the file is UTF-16")


def test_truncated_pdf_is_damaged() -> None:
    pdf = make_pdf()
    for cut in (len(pdf) // 5, len(pdf) // 2, len(pdf) * 9 // 10):
        assert reason_of(pdf[:cut], "a.pdf", "application/pdf").startswith("PDF is damaged: ")


def test_pdf_without_header_is_damaged() -> None:
    reason = reason_of(b"this is not a pdf at all", "a.pdf", "application/pdf")
    assert reason.startswith("PDF is damaged: no %PDF- header")


def test_password_protected_pdf_is_encrypted() -> None:
    pdf = make_pdf(owner_password="owner-secret", user_password="user-secret")
    assert reason_of(pdf, "secret.pdf", "application/pdf").startswith("PDF is encrypted")


def test_image_only_pdf_has_no_extractable_text() -> None:
    assert reason_of(image_only_pdf(), "scan.pdf", "application/pdf").startswith(
        "no extractable text"
    )


def test_html_without_visible_text() -> None:
    markup = b"<html><head><title>T</title><script>x()</script></head><body> </body></html>"
    assert reason_of(markup, "a.html", "text/html") == "no extractable text"


def test_library_exceptions_never_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    import pypdf

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom inside the library")

    monkeypatch.setattr(pypdf, "PdfReader", explode)
    assert reason_of(make_pdf(), "a.pdf", "application/pdf") == (
        "PDF is damaged: boom inside the library"
    )


def test_corrupted_pdfs_only_ever_raise_parse_error() -> None:
    pdf = bytearray(make_pdf())
    rng = random.Random(7)
    for _ in range(40):
        mutated = bytearray(pdf)
        for _ in range(rng.randint(1, 30)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            doc = parse(bytes(mutated), "fuzz.pdf", "application/pdf")
        except ParseError as exc:
            assert exc.reason
        else:
            assert doc.kind == "pdf"


def test_hostile_markdown_lines_parse_in_linear_time() -> None:
    # Patterns that make naive title regexes backtrack quadratically (minutes at this size).
    import time

    for line in ("# a" + " " * 100_000 + "x", "---\ntitle: a" + " " * 100_000 + "x\n---\n"):
        started = time.perf_counter()
        parse(line.encode(), "x.md", "text/markdown")
        assert time.perf_counter() - started < 5


def test_pdf_over_the_page_limit_is_refused_before_its_text_is_read() -> None:
    # issue 13, point 7: a PDF's cost grows with its pages; the limit is checked up front.
    data = make_pdf(tuple(f"page {i}" for i in range(5)))
    assert len(parse(data, "ok.pdf", "application/pdf", max_pdf_pages=5).pages) == 5
    with pytest.raises(ParseError, match="5 pages, over the limit of 4"):
        parse(data, "long.pdf", "application/pdf", max_pdf_pages=4)


def test_pdf_parsing_stops_at_its_time_limit() -> None:
    data = make_pdf(tuple(f"page {i}" for i in range(3)))
    with pytest.raises(ParseError, match="time limit"):
        parse(data, "slow.pdf", "application/pdf", pdf_time_limit_s=0.0)
