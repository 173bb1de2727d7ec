"""Agency identifiers (mã định danh): QCVN 102 codes and the QĐ 20/2020 generic form."""

from __future__ import annotations

import enum
import re
import unicodedata

# QCVN 102: V1V2V3.Z1Z2.Y1Y2.MX1X2, read right to left; the group letter is the 11th character.
# Explicit ASCII classes and fullmatch: \d accepts any Unicode digit, and $ accepts a final \n.
_QCVN102 = re.compile(r"[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}")
# QĐ 20/2020 generic identifiers: up to 35 characters of [0-9A-Z.], no empty segment.
_QD20 = re.compile(r"[0-9A-Z]+(?:\.[0-9A-Z]+)*")
QD20_MAX_LENGTH = 35


class CodeForm(enum.StrEnum):
    QCVN102 = "qcvn102"
    QD20 = "qd20"


DEFAULT_FORMS: frozenset[CodeForm] = frozenset({CodeForm.QCVN102, CodeForm.QD20})


def normalise_code(code: str) -> str:
    """Codes compare after NFC normalisation and trimming; case is significant (always upper)."""
    return unicodedata.normalize("NFC", code).strip()


def code_problem(code: str, forms: frozenset[CodeForm] = DEFAULT_FORMS) -> str | None:
    """Why `code` is not an agency code in any of the accepted forms, or None if it is one."""
    if not code:
        return "must not be empty"
    if CodeForm.QCVN102 in forms and _QCVN102.fullmatch(code):
        return None
    if CodeForm.QD20 in forms and len(code) <= QD20_MAX_LENGTH and _QD20.fullmatch(code):
        return None
    wanted = " or ".join(
        {
            CodeForm.QCVN102: "a QCVN 102 code like 000.00.00.H45",
            CodeForm.QD20: "a QĐ 20/2020 identifier (up to 35 of 0-9, A-Z and dots)",
        }[form]
        for form in sorted(forms)
    )
    return f"{code!r} is not {wanted}"


def parse_forms(raw: str) -> frozenset[CodeForm]:
    """Parses a comma-separated list such as "qcvn102,qd20"."""
    forms = {CodeForm(part.strip()) for part in raw.split(",") if part.strip()}
    if not forms:
        raise ValueError("at least one code form is required")
    return frozenset(forms)
