"""Statements and certificates as files people keep: a statement as CSV for a spreadsheet, a
service-hours certificate as a PDF to print.

The PDF embeds WenQuanYi Micro Hei (``fonts/``, from Debian's fonts-wqy-microhei, Apache 2.0):
one face with Latin and the 20,900 unified CJK ideographs, so a Chinese name or community
prints as it is written. Only the glyphs used are embedded. A character the font lacks (an
emoji, a rare ideograph outside the basic block) prints as ``?`` rather than vanish; the JSON
certificate keeps it as it is.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import Align, XPos, YPos

from services.points.recognition import Certificate
from services.points.statements import Statement

FONT = Path(__file__).parent / "fonts" / "wqy-microhei.ttc"
STATEMENT_COLUMNS = (
    "posted_at",
    "transfer_id",
    "kind",
    "counterparty",
    "request_id",
    "memo",
    "amount",
    "balance",
)
# A spreadsheet reads a cell starting with one of these as a formula (the fullwidth forms too,
# which some read as their ASCII twins), after any leading spaces or line breaks: text is never
# one.
_FORMULA_STARTS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _cell(text: str | None) -> str:
    if not text:
        return ""
    unspaced = text.lstrip()
    is_formula = unspaced.startswith(_FORMULA_STARTS) or unspaced != text
    return f"'{text}" if is_formula else text


def _local(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).isoformat(timespec="seconds")


def statement_csv(statement: Statement) -> str:
    """The statement as CSV (RFC 4180): a header row, the opening balance, one row per entry
    with the balance after it, and the closing balance; times in the statement's zone."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(STATEMENT_COLUMNS)
    zone = statement.period.zone
    framing = ("", "", "", "")
    opening = str(statement.opening_balance)
    writer.writerow(
        (_local(statement.period.starts, zone), "", "opening_balance", *framing, opening)
    )
    for line in statement.lines:
        writer.writerow(
            (
                _local(line.posted_at, zone),
                _cell(line.transfer_id),
                line.kind,
                _cell(line.counterparty),
                _cell(line.request_id),
                _cell(line.memo),
                str(line.amount),
                str(line.balance),
            )
        )
    closing = str(statement.closing_balance)
    writer.writerow((_local(statement.period.ends, zone), "", "closing_balance", *framing, closing))
    return out.getvalue()


@cache
def _printable_characters() -> frozenset[int]:
    font = TTFont(FONT, fontNumber=0, lazy=True)
    try:
        return frozenset(font.getBestCmap())
    finally:
        font.close()


def _printable(text: str) -> str:
    known = _printable_characters()
    return "".join(
        character if ord(character) in known or character in "\n" else "?" for character in text
    )


def _category(code: str) -> str:
    return code.replace("_", " ").capitalize()


def _hours(value: Decimal) -> str:
    return f"{value:.2f}"


def _listed(names: Iterable[str]) -> str:
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


def certificate_pdf(certificate: Certificate) -> bytes:
    """The certificate as a one-page A4 PDF to print."""
    pdf = FPDF(format="A4")
    pdf.set_creation_date(certificate.issued_at)
    pdf.set_creator("Redvest points")
    pdf.set_title(f"Service hours of {certificate.holder}")
    pdf.set_margins(25, 25, 25)
    pdf.set_auto_page_break(auto=True, margin=25)
    pdf.add_font("body", fname=FONT)
    pdf.add_page()
    width = pdf.epw

    def paragraph(text: str, size: float, *, align: Align = Align.L, gap: float = 4) -> None:
        pdf.set_font("body", size=size)
        pdf.multi_cell(width, size * 0.55, _printable(text), align=align)
        pdf.ln(gap)

    who = certificate.name or certificate.holder
    volunteer = certificate.holder.partition(":")[2]
    where = (
        f" in {_listed(certificate.communities)}"
        if certificate.communities
        else " in the community"
    )
    paragraph("Certificate of volunteer service", 22, align=Align.C, gap=2)
    paragraph("Service hours confirmed by the moral bank", 12, align=Align.C, gap=10)
    paragraph(
        f"This certifies that {who} (volunteer {volunteer}) gave "
        f"{_hours(certificate.total_hours)} hours of confirmed volunteer service{where} "
        f"from {certificate.period.first:%Y-%m-%d} to {certificate.period.last:%Y-%m-%d}.",
        13,
        gap=8,
    )
    pdf.set_font("body", size=11)
    with pdf.table(
        col_widths=(50, 15, 15, 20),
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
        first_row_as_headings=False,
    ) as table:
        for row in (
            ("Service", "Times", "Hours", "Points"),
            *(
                (
                    _category(line.category),
                    str(line.services),
                    _hours(line.hours),
                    _hours(line.points),
                )
                for line in certificate.categories
            ),
            (
                "Total",
                str(certificate.total_services),
                _hours(certificate.total_hours),
                _hours(certificate.total_points),
            ),
        ):
            cells = table.row()
            for text in row:
                cells.cell(_printable(text))
    pdf.ln(8)
    notes = [
        "Hours count once the resident or staff confirmed the service, on the day its points "
        f"were posted ({certificate.period.zone}). Hours whose points were reversed are not "
        "counted.",
    ]
    if not certificate.communities:
        notes.append("The community where the service was done was not recorded.")
    for note in notes:
        paragraph(note, 9, gap=2)
    pdf.set_y(-55)
    pdf.set_font("body", size=11)
    # Signed and stamped by hand when printed.
    for line in ("For the community office: ______________________", "Stamp and date:"):
        pdf.cell(width, 8, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)
    pdf.set_font("body", size=9)
    pdf.cell(
        width,
        5,
        f"Issued {certificate.issued_at:%Y-%m-%d %H:%M} UTC for {certificate.holder}.",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    return bytes(pdf.output())
