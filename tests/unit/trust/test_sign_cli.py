"""`docaxis sign pdf|edxml`: documents signed from the command line verify as agencies' do."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from docaxis_client.trust.demo_pki import PkiFolder
from docaxis_client.trust.pdf import verify_pdf
from docaxis_client.trust.signatures import SignerRole
from docaxis_client.trust.tsa import TimestampAuthority, serving
from docaxis_client.trust.xmldsig import verify_envelope
from gateway.edxml import edxml_bytes
from services.cli import main
from tests.unit.edxml.builders import a_document

AGENCY = "000.00.11.H40"  # the sender of the builders' edXML document


def _docaxis(*argv: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 0


@pytest.fixture
def pki(tmp_path: Path) -> PkiFolder:
    folder = PkiFolder(tmp_path / "pki")
    folder.init()
    folder.issue_agency(AGENCY, "Sở Tài chính")
    folder.issue_person("Trần Văn An", AGENCY)
    return folder


def test_sign_pdf_adds_the_officials_then_the_agencys_signature(
    pki: PkiFolder, tmp_path: Path
) -> None:
    """Two --cert in order make the ND30 pair on a new demo page."""
    out = tmp_path / "signed.pdf"
    _docaxis(
        "sign",
        "pdf",
        "--demo-text",
        "Cong van 2491/STC-NS",
        "--cert",
        str(pki.path / "persons" / AGENCY / "tran-van-an.pem"),
        "--cert",
        str(pki.path / "agencies" / f"{AGENCY}.pem"),
        str(out),
    )

    result = verify_pdf(
        out.read_bytes(), pki.trust_store(), agency=AGENCY, main=True, at=dt.datetime.now(dt.UTC)
    )
    assert [s.role for s in result.signers] == [SignerRole.PERSON, SignerRole.ORGANIZATION]


def test_sign_pdf_with_tsa_url_timestamps_each_signature(pki: PkiFolder, tmp_path: Path) -> None:
    """--tsa-url: an RFC 3161 token from the TSA (here the demo PKI's, over HTTP) per signature,
    verified against the TSA anchors."""
    pki.issue_tsa()
    authority = TimestampAuthority(PkiFolder.load_identity(pki.path / "tsa" / "tsa.pem"))
    out = tmp_path / "stamped.pdf"
    with serving(authority) as url:
        _docaxis(
            "sign",
            "pdf",
            "--demo-text",
            "Cong van 2492/STC-NS",
            "--tsa-url",
            url,
            "--cert",
            str(pki.path / "persons" / AGENCY / "tran-van-an.pem"),
            "--cert",
            str(pki.path / "agencies" / f"{AGENCY}.pem"),
            str(out),
        )

    result = verify_pdf(
        out.read_bytes(),
        pki.trust_store(),
        agency=AGENCY,
        main=True,
        at=dt.datetime.now(dt.UTC),
        timestamps=pki.trust_store(),
    )
    assert all(signer.timestamped_at is not None for signer in result.signers)


def test_sign_edxml_signs_the_package_as_the_agency(pki: PkiFolder, tmp_path: Path) -> None:
    """The envelope signature verifies and names the agency."""
    source, out = tmp_path / "doc.edxml", tmp_path / "signed.edxml"
    source.write_bytes(edxml_bytes(a_document()))

    _docaxis(
        "sign",
        "edxml",
        str(source),
        str(out),
        "--cert",
        str(pki.path / "agencies" / f"{AGENCY}.pem"),
    )

    result = verify_envelope(
        out.read_bytes(), pki.trust_store(), agency=AGENCY, at=dt.datetime.now(dt.UTC)
    )
    assert result.signer.agency_code == AGENCY
