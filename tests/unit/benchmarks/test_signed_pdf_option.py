"""`python -m benchmarks --signed-pdf`: each sender's attachment is a PDF docaxis verifies as
that sender's, signed by its official and then its agency."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from benchmarks.load import signed_pdf
from benchmarks.stack import BenchPki
from docaxis_client.trust.pdf import verify_pdf
from docaxis_client.trust.signatures import SignerRole

SENDER = "000.00.00.H98"


def test_the_attachment_verifies_as_the_senders_official_then_agency(tmp_path: Path) -> None:
    pki = BenchPki(tmp_path)

    result = verify_pdf(
        signed_pdf(SENDER, pki.keys(SENDER)),
        pki.ca.trust_store(),
        agency=SENDER,
        main=True,
        at=dt.datetime.now(dt.UTC),
    )

    assert [(s.role, s.agency_code) for s in result.signers] == [
        (SignerRole.PERSON, SENDER),
        (SignerRole.ORGANIZATION, SENDER),
    ]
