"""Thai in invoices is shaped as HarfBuzz shapes it: tone marks above upper vowels are drawn with
the font's own mark glyphs (``.small`` variants, GSUB), not stacked on top of the vowel.

The reference is HarfBuzz shaping the same words with the same font file; the PDF side is read
back from the rendered invoice: each drawn character code, through the embedded font's
ToUnicode map, to the glyph it stands for in the font the invoice registered.
"""

from __future__ import annotations

import io

import uharfbuzz as hb
from pypdf import PdfReader
from reportlab.pdfbase import pdfmetrics

from consumers.invoice_pdf import FONTS, render_invoice
from tests.unit.test_invoice_pdf import SELLER, thai_order

#: ที่ prints as ที and เที่ยง as เทียง when unshaped; the mark of ศักดิ์ overlaps its vowel.
WORDS = ("ที่", "เที่ยง", "ศักดิ์")


def harfbuzz_glyphs(word: str) -> list[int]:
    blob = hb.Blob((FONTS / "NotoSansThai-Regular.ttf").read_bytes())
    font = hb.Font(hb.Face(blob))
    buffer = hb.Buffer()
    buffer.add_str(word)
    buffer.guess_segment_properties()
    hb.shape(font, buffer, {"kern": True, "liga": True})
    return [info.codepoint for info in buffer.glyph_infos]


def pdf_glyphs(pdf: bytes) -> list[list[int]]:
    """Glyph ids of each Thai word on the first page, in the order they are drawn."""
    text = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    cmap = pdfmetrics.getFont("WoofleetThai").face.charToGlyph
    words: list[list[int]] = []
    current: list[int] = []
    for char in text + " ":
        code = ord(char)
        thai_or_private = 0x0E00 <= code <= 0x0E7F or 0xE000 <= code <= 0xF8FF
        if thai_or_private and code in cmap:
            current.append(cmap[code])
        elif current:
            words.append(current)
            current = []
    return words


def test_thai_tone_marks_are_the_glyphs_harfbuzz_chooses() -> None:
    # Given a customer whose name needs shaping
    billing = {"first_name": " ".join(WORDS), "last_name": "", "country": "TH"}
    order = thai_order(billing=billing, shipping={})
    # When the invoice is rendered
    pdf = render_invoice(order, SELLER)
    # Then each word is drawn with exactly the glyphs HarfBuzz shapes it into
    drawn = pdf_glyphs(pdf)
    for word in WORDS:
        assert harfbuzz_glyphs(word) in drawn, f"{word} is not drawn as HarfBuzz shapes it"
