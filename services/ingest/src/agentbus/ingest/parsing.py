"""Turn uploaded bytes into text: plain text, Markdown, HTML and PDF (with page numbers).

Everything here is pure and synchronous: bytes in, `ParsedDocument` out. Any problem with the
input — empty, binary, badly encoded, damaged or encrypted — surfaces as `ParseError` whose
`reason` is one line fit to show the user (it ends up in `IngestFailed.reason`). No exception from
a parsing library is allowed to escape: a worker must never crash on a hostile upload.
"""

from __future__ import annotations

import codecs
import io
import re
import time
import unicodedata
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal

Kind = Literal["text", "markdown", "html", "pdf"]

__all__ = ["Kind", "Page", "ParseError", "ParsedDocument", "detect_kind", "parse"]


class ParseError(ValueError):
    """The document cannot be indexed; `reason` says why in one user-facing line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Page:
    """One page of text: 1-based for PDFs, None for formats without pages."""

    number: int | None
    text: str


@dataclass(frozen=True)
class ParsedDocument:
    kind: Kind
    title: str | None
    pages: tuple[Page, ...]

    @property
    def text(self) -> str:
        """The whole document, pages separated by a blank line (blank pages skipped)."""
        return "\n\n".join(page.text for page in self.pages if page.text)


# --- kind detection ---------------------------------------------------------------------------

_PDF_MAGIC = b"%PDF-"
# Readers accept the header anywhere in the first 1024 bytes (some producers prepend junk).
_PDF_HEADER_WINDOW = 1024

_CONTENT_TYPES: dict[str, Kind] = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "application/x-pdf": "pdf",
    # Structured text formats are still worth indexing as text.
    "application/json": "text",
    "application/xml": "text",
    "application/yaml": "text",
    "application/x-yaml": "text",
    "application/toml": "text",
}

# Plain-text formats worth indexing when the upload carries no useful content type.
_TEXT_EXTENSIONS = (
    ".txt", ".text", ".log", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".toml", ".ini",
    ".cfg", ".conf", ".rst", ".adoc", ".xml", ".sql", ".sh", ".py", ".rs", ".go", ".java", ".kt",
    ".js", ".ts", ".tsx", ".jsx", ".c", ".h", ".cc", ".cpp", ".hpp", ".cs", ".rb", ".php",
    ".swift", ".scala", ".proto", ".tf",
)  # fmt: skip

_EXTENSIONS: dict[str, Kind] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdown": "markdown",
    ".mkd": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".pdf": "pdf",
    **dict.fromkeys(_TEXT_EXTENSIONS, "text"),
}

# Content types that say nothing about the format: the extension (or the bytes) decide.
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}


def _extension(filename: str) -> str:
    base = re.split(r"[\\/]", filename)[-1]
    dot = base.rfind(".")
    return base[dot:].lower() if dot > 0 else ""


def _stem(filename: str) -> str | None:
    base = re.split(r"[\\/]", filename)[-1]
    dot = base.rfind(".")
    stem = (base[:dot] if dot > 0 else base).strip()
    return stem or None


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def detect_kind(filename: str, content_type: str, data: bytes) -> Kind:
    """Decide the format from the bytes, the declared content type and the file extension.

    The bytes win when they are unambiguous (a `%PDF-` header is a PDF whatever its name). A
    specific content type wins over the extension, except that `text/plain` — what many clients
    send for any text file — is refined by a Markdown or HTML extension. Generic types such as
    `application/octet-stream` defer to the extension; without one, text-looking bytes are
    accepted (as HTML if they start like HTML) and `parse` rejects anything binary.
    """
    if _PDF_MAGIC in data[:_PDF_HEADER_WINDOW]:
        return "pdf"
    media = _media_type(content_type)
    ext = _extension(filename)
    by_ext = _EXTENSIONS.get(ext)
    if media in _CONTENT_TYPES:
        by_type = _CONTENT_TYPES[media]
        if by_type == "text" and by_ext in ("markdown", "html"):
            return by_ext
        return by_type
    if media.startswith("text/"):
        # text/csv, text/x-python, ...: any other text subtype is indexed as plain text.
        return by_ext if by_ext in ("markdown", "html") else "text"
    if media in _GENERIC_TYPES:
        if by_ext is not None:
            return by_ext
        if not ext:
            head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
            return "html" if head.startswith((b"<!doctype html", b"<html")) else "text"
    shown = f"{media or 'no content type'} ({ext})" if ext else (media or "no content type")
    raise ParseError(f"unsupported file type: {shown}")


# --- text decoding ----------------------------------------------------------------------------

_BOM = codecs.BOM_UTF8
# C0 control characters that never occur in real text (tab, LF, VT, FF, CR and ESC do).
_BINARY_CONTROLS = bytes(b for b in range(32) if b not in b"\t\n\x0b\x0c\r\x1b") + b"\x7f"
# Control characters dropped from decoded text: they only upset tokenizers and databases.
_STRAY_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _check_not_binary(data: bytes) -> None:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ParseError("not valid UTF-8 (the file is UTF-16; save it as UTF-8)")
    if b"\x00" in data:
        raise ParseError("looks like binary data, not text")
    controls = len(data) - len(data.translate(None, _BINARY_CONTROLS))
    if controls > len(data) * 0.05:
        raise ParseError("looks like binary data, not text")
    if len(data) >= 16:
        # Mostly undecodable bytes means a binary blob, not a mis-encoded text file (where
        # only the odd accented letter fails to decode).
        undecodable = data.decode("utf-8", errors="replace").count("\ufffd")
        if undecodable > len(data) * 0.3:
            raise ParseError("looks like binary data, not text")


def _decode_utf8(data: bytes) -> str:
    _check_not_binary(data)
    offset = len(_BOM) if data.startswith(_BOM) else 0
    try:
        text = data[offset:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"not valid UTF-8 (invalid byte at offset {offset + exc.start})") from None
    return _clean_text(text)


def _clean_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _STRAY_CONTROLS.sub("", text)


def _require_text(text: str, reason: str = "no extractable text") -> str:
    if not text.strip():
        raise ParseError(reason)
    return text


# --- plain text and Markdown ------------------------------------------------------------------

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_ATX_H1 = re.compile(r"^ {0,3}#[ \t]+(.*)$")
_SETEXT_H1 = re.compile(r"^\s{0,3}=+\s*$")
_FRONT_MATTER_TITLE = re.compile(r"^title:(.*)$", re.MULTILINE)


def _strip_closing_hashes(heading: str) -> str:
    # `# Title ##`: a closing run of #s preceded by a space is not part of the title. Done with
    # string methods because the obvious regex backtracks quadratically on long lines.
    text = heading.rstrip(" \t")
    without = text.rstrip("#")
    if without != text and (not without or without.endswith((" ", "\t"))):
        return without
    return text


def _markdown_title(text: str) -> str | None:
    """The first level-1 heading outside code blocks (ATX `# x` or setext), else front matter."""
    lines = text.split("\n")
    start = 0
    front_title: str | None = None
    if lines and lines[0].strip() == "---":
        # YAML front matter (Jekyll, Hugo, MkDocs): its `title:` is a fallback.
        for i in range(1, len(lines)):
            if lines[i].strip() in ("---", "..."):
                match = _FRONT_MATTER_TITLE.search("\n".join(lines[1:i]))
                if match:
                    front_title = match.group(1).strip().strip("\"'").strip() or None
                start = i + 1
                break
    in_fence = False
    previous = ""
    for line in lines[start:]:
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            match = _ATX_H1.match(line)
            if match:
                return _collapse(_strip_closing_hashes(match.group(1))) or None
            if previous.strip() and _SETEXT_H1.match(line):
                return _collapse(previous) or None
        previous = "" if in_fence else line
    return front_title


def _parse_text(data: bytes, filename: str, kind: Literal["text", "markdown"]) -> ParsedDocument:
    text = _require_text(_decode_utf8(data), "file is empty")
    title = _markdown_title(text) if kind == "markdown" else None
    return ParsedDocument(kind=kind, title=title or _stem(filename), pages=(Page(None, text),))


# --- HTML -------------------------------------------------------------------------------------

# Elements whose content is not visible text (or is fallback markup for another renderer).
_SKIPPED = {"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "canvas"}
_PARAGRAPHS = {
    "address", "article", "aside", "blockquote", "details", "dl", "fieldset", "figure",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "main", "nav", "ol",
    "p", "pre", "section", "table", "ul",
}  # fmt: skip
_LINES = {"caption", "dd", "div", "dt", "figcaption", "li", "summary", "tr", "option"}
_CELLS = {"td", "th"}
_WHITESPACE = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _collapse(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


class _HtmlText(HTMLParser):
    """Collects visible text: block elements become line breaks, `<pre>` keeps its lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities are decoded for us
        self._out: list[str] = []
        self._skip = 0
        self._pre = 0
        self._newlines = 0  # line breaks owed before the next text (0, 1 or 2)
        self._title: list[str] | None = None  # collecting while inside <title>
        self._h1: list[str] | None = None
        self.title = ""
        self.first_h1 = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skip += 1
        elif self._skip:
            return  # e.g. an SVG's own <title> is not the page title
        elif tag == "title" and not self.title and self._title is None:
            self._title = []
        elif tag == "h1" and not self.first_h1:
            self._h1 = []
        if tag == "pre":
            self._pre += 1
        self._break(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # `<br/>`, `<svg .../>`: a break at most, never an unclosed skipped region.
        if not self._skip:
            self._break(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skip = max(0, self._skip - 1)
        elif self._skip:
            return
        elif tag == "title" and self._title is not None:
            self.title = _collapse("".join(self._title))
            self._title = None
        elif tag == "h1" and self._h1 is not None:
            self.first_h1 = _collapse("".join(self._h1))
            self._h1 = None
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        self._break(tag)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._title is not None:
            self._title.append(data)
            return
        if self._h1 is not None:
            self._h1.append(data)
        text = data if self._pre else _WHITESPACE.sub(" ", data)
        if not self._pre and (
            self._newlines or not self._out or self._out[-1].endswith(("\n", " "))
        ):
            text = text.lstrip()
        if not text:
            return
        if self._newlines and self._out:
            # Breaks are owed, and written only before more text: no runs of empty lines.
            self._out[-1] = self._out[-1].rstrip(" ")
            self._out.append("\n" * self._newlines)
        self._newlines = 0
        self._out.append(text)

    def _break(self, tag: str) -> None:
        if tag in _PARAGRAPHS:
            self._newlines = 2
        elif tag == "br":
            self._newlines = min(self._newlines + 1, 2)
        elif tag in _LINES:
            self._newlines = max(self._newlines, 1)
        elif tag in _CELLS and self._out and not self._out[-1].endswith((" ", "\n")):
            self._out.append(" ")  # adjacent cells must not run together

    def text(self) -> str:
        lines = [line.rstrip() for line in "".join(self._out).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def _html_charset(data: bytes, content_type: str) -> str | None:
    """The encoding the page declares (content-type parameter, else `<meta charset>`)."""
    match = re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", content_type, re.IGNORECASE)
    found = match.group(1) if match else None
    if found is None:
        meta = _META_CHARSET.search(data[:4096])
        found = meta.group(1).decode("ascii") if meta else None
    if found is None:
        return None
    try:
        return codecs.lookup(found).name
    except LookupError:
        return None


def _parse_html(data: bytes, filename: str, content_type: str) -> ParsedDocument:
    # HTML may declare a legacy charset; honour it, but UTF-8 remains the strict default.
    charset = _html_charset(data, content_type)
    if charset and charset not in ("utf-8", "utf-8-sig") and not data.startswith(_BOM):
        _check_not_binary(data)
        try:
            markup = _clean_text(data.decode(charset))
        except UnicodeDecodeError as exc:
            raise ParseError(
                f"not valid {charset} as declared (invalid byte at offset {exc.start})"
            ) from None
    else:
        markup = _decode_utf8(data)
    _require_text(markup, "file is empty")
    parser = _HtmlText()
    parser.feed(markup)
    parser.close()
    text = _require_text(parser.text())
    title = parser.title or parser.first_h1 or _stem(filename)
    return ParsedDocument(kind="html", title=title, pages=(Page(None, text),))


# --- PDF --------------------------------------------------------------------------------------


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else type(exc).__name__
    return message if len(message) <= 120 else message[:117] + "..."


def _clean_pdf_text(text: str) -> str:
    # NFKC folds ligatures (ﬁ -> fi) and presentation forms PDFs are full of, which helps search.
    text = unicodedata.normalize("NFKC", _clean_text(text))
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip()


# A PDF's parsing cost grows with its pages (and a crafted one can make a page slow): both are
# bounded, so one upload cannot hold a worker for long.
MAX_PDF_PAGES = 2000
PDF_TIME_LIMIT_S = 120.0


def _parse_pdf(data: bytes, filename: str, max_pages: int, time_limit_s: float) -> ParsedDocument:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    if _PDF_MAGIC not in data[:_PDF_HEADER_WINDOW]:
        raise ParseError("PDF is damaged: no %PDF- header (is it really a PDF?)")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        # Many PDFs are "encrypted" only to set permissions and open with an empty password.
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise ParseError("PDF is encrypted (password protected)")
        count = len(reader.pages)
        if count > max_pages:
            raise ParseError(f"PDF has {count} pages, over the limit of {max_pages}")
        deadline = time.monotonic() + time_limit_s
        pages: list[Page] = []
        for number, page in enumerate(reader.pages, start=1):
            if time.monotonic() >= deadline:
                raise ParseError(f"PDF parsing passed its time limit of {time_limit_s:g} s")
            try:
                raw = page.extract_text()
            except Exception as exc:
                raise ParseError(f"PDF is damaged: page {number}: {_short(exc)}") from exc
            pages.append(Page(number, _clean_pdf_text(raw or "")))
        title: str | None = None
        try:
            meta = reader.metadata
            title = _collapse(meta.title) if meta is not None and meta.title else None
        except Exception:
            title = None  # a broken info dictionary is no reason to reject the text
    except ParseError:
        raise
    except (DependencyError, FileNotDecryptedError):
        # AES needs the optional `cryptography` package; without it we cannot read the text.
        raise ParseError("PDF is encrypted (unsupported encryption)") from None
    except Exception as exc:
        raise ParseError(f"PDF is damaged: {_short(exc)}") from exc
    if not pages:
        raise ParseError("PDF is damaged: it has no pages")
    if not any(page.text for page in pages):
        raise ParseError("no extractable text (scanned or image-only PDF? OCR is not supported)")
    if title and title.lower() in ("untitled", "untitled document"):
        title = None
    return ParsedDocument(kind="pdf", title=title or _stem(filename), pages=tuple(pages))


# --- entry point ------------------------------------------------------------------------------


def parse(
    data: bytes,
    filename: str,
    content_type: str,
    *,
    max_pdf_pages: int = MAX_PDF_PAGES,
    pdf_time_limit_s: float = PDF_TIME_LIMIT_S,
) -> ParsedDocument:
    """Parse one uploaded file; raises `ParseError` (only) for anything that cannot be indexed."""
    if not data.removeprefix(_BOM).strip():
        raise ParseError("file is empty")
    kind = detect_kind(filename, content_type, data)
    try:
        if kind == "pdf":
            return _parse_pdf(data, filename, max_pdf_pages, pdf_time_limit_s)
        if kind == "html":
            return _parse_html(data, filename, content_type)
        return _parse_text(data, filename, kind)
    except ParseError:
        raise
    except Exception as exc:  # a bug or a library surprise must still fail only this document
        raise ParseError(f"could not read the {kind} file: {_short(exc)}") from exc
