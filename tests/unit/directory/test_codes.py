"""Agency codes: the QCVN 102 form, the QĐ 20/2020 generic form, and configurable forms."""

from __future__ import annotations

import pytest

from services.directory.domain.codes import (
    DEFAULT_FORMS,
    QD20_MAX_LENGTH,
    CodeForm,
    code_problem,
    normalise_code,
    parse_forms,
)

QCVN102_ONLY = frozenset({CodeForm.QCVN102})
QD20_ONLY = frozenset({CodeForm.QD20})


@pytest.mark.parametrize(
    "code", ["000.00.00.H45", "000.00.13.H45", "000.00.00.G22", "123.45.67.A01"]
)
def test_qcvn_102_codes_are_accepted_in_every_configuration_that_allows_them(code: str) -> None:
    """A three-two-two-digit code with a group letter and two digits is a QCVN 102 code."""
    assert code_problem(code) is None
    assert code_problem(code, QCVN102_ONLY) is None


@pytest.mark.parametrize(
    "code",
    [
        "000.00.00.h45",  # lower-case group letter
        "000.00.00.H4",  # too short
        "00.00.00.H45",
        "000.00.00.H455",  # too long
        "0000.00.00.H45",
        "000-00-00-H45",  # wrong separators
        "000.00.00.145",  # a digit where the group letter goes
        "hello world",
        "000.00.00.H45 extra",
    ],
)
def test_malformed_codes_are_refused_when_only_qcvn_102_is_accepted(code: str) -> None:
    """Case, length, separators and the group letter are all part of the QCVN 102 form."""
    problem = code_problem(code, QCVN102_ONLY)
    assert problem is not None
    assert repr(code) in problem
    assert "QCVN 102" in problem


@pytest.mark.parametrize(
    "code",
    ["000.00.00.h45", "hello world", "A..B", ".ABC", "ABC.", "Ủ.BAN", "A" * (QD20_MAX_LENGTH + 1)],
)
def test_garbage_is_refused_with_the_default_forms(code: str) -> None:
    """Lower case, spaces, empty segments, non-ASCII letters and over-long codes fit no form."""
    problem = code_problem(code, DEFAULT_FORMS)
    assert problem is not None
    assert "QCVN 102" in problem
    assert "QĐ 20/2020" in problem


def test_a_qd_20_identifier_has_at_most_35_characters() -> None:
    """35 characters are an identifier, 36 are not (QĐ 20/2020)."""
    assert code_problem("ABCDEFGHIJ.0123456789.ABCDEFGHIJ.XY", QD20_ONLY) is None
    assert code_problem("ABCDEFGHIJ.0123456789.ABCDEFGHIJ.XYZ", QD20_ONLY) is not None


def test_an_empty_code_is_refused_as_empty() -> None:
    """The empty string gets its own message rather than a list of forms."""
    assert code_problem("") == "must not be empty"


@pytest.mark.parametrize(
    "code", ["G01", "000.00.00.H455", "ABC.12.XYZ", "1" * QD20_MAX_LENGTH, "W00.01"]
)
def test_qd_20_generic_identifiers_are_accepted_when_that_form_is_enabled(code: str) -> None:
    """Upper-case letters, digits and single dots up to 35 characters form a QĐ 20 identifier."""
    assert code_problem(code, QD20_ONLY) is None
    assert code_problem(code, DEFAULT_FORMS) is None


@pytest.mark.parametrize("code", ["G01", "ABC.12.XYZ", "W00.01"])
def test_generic_identifiers_are_refused_when_only_qcvn_102_is_configured(code: str) -> None:
    """A deployment restricted to QCVN 102 refuses QĐ 20 identifiers and names only QCVN 102."""
    problem = code_problem(code, QCVN102_ONLY)
    assert problem is not None
    assert "QĐ 20" not in problem


def test_the_refusal_names_only_the_configured_form() -> None:
    """With only QĐ 20 enabled the message does not offer QCVN 102 as an alternative."""
    problem = code_problem("a b", QD20_ONLY)
    assert problem is not None
    assert "QĐ 20/2020" in problem
    assert "QCVN 102" not in problem


def test_forms_parse_from_a_comma_separated_setting() -> None:
    """Spaces and empty items are ignored; each known name maps to its form."""
    assert parse_forms("qcvn102, qd20,") == DEFAULT_FORMS
    assert parse_forms(" qd20 ") == QD20_ONLY


@pytest.mark.parametrize("raw", ["", " , ", "qcvn102,iso"])
def test_an_empty_or_unknown_form_list_is_an_error(raw: str) -> None:
    """At least one form is required and every name must be known."""
    with pytest.raises(ValueError, match=r"code form|qcvn102|is not a valid"):
        parse_forms(raw)


def test_codes_are_compared_after_nfc_normalisation_and_trimming() -> None:
    """Decomposed input and surrounding spaces do not make a different code."""
    assert normalise_code("  000.00.00.H45\n") == "000.00.00.H45"
    assert normalise_code("U\u031b\u0309") == "\u1eec"  # NFD Ử becomes NFC Ử


@pytest.mark.parametrize("code", ["٠٠٠.٠٠.٠٠.H45", "０００.００.００.H45"])
def test_non_ascii_digits_are_not_qcvn_102_digits(code: str) -> None:
    """Arabic-Indic or full-width digits are not the ASCII digits QCVN 102 prescribes."""
    assert code_problem(code, QCVN102_ONLY) is not None


@pytest.mark.parametrize("forms", [QCVN102_ONLY, QD20_ONLY])
def test_a_code_with_a_trailing_newline_is_refused_before_normalisation(
    forms: frozenset[CodeForm],
) -> None:
    """code_problem judges the exact string it is given; a newline is not part of any form."""
    assert code_problem("000.00.00.H45\n", forms) is not None
