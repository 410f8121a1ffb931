"""Regenerate docs/architecture-note.pdf from architecture-note.txt (pages split on `%%`).

The PDF is committed so that loading the sample needs nothing beyond the platform; run this
(`.venv/bin/python samples/acme/make_pdf.py`) after editing the text. A fixed creation date keeps
the bytes, and so the document's content hash, the same from one run to the next.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF

HERE = Path(__file__).parent


def build(text: str) -> bytes:
    pdf = FPDF()
    pdf.set_creation_date(datetime(2026, 1, 1, tzinfo=UTC))
    pdf.set_title("Architecture note: the checkout path")
    pdf.set_font("Helvetica", size=12)
    for page in text.split("%%"):
        pdf.add_page()
        pdf.multi_cell(0, 7, " ".join(page.split()))
    return bytes(pdf.output())


if __name__ == "__main__":
    source = (HERE / "architecture-note.txt").read_text()
    (HERE / "docs" / "architecture-note.pdf").write_bytes(build(source))
