"""`make demo` against a production-like axis (mutual TLS, signatures required): the document
travels as a PDF signed by the official and the agency, and each recipient sees what the hub
verified of it."""

from __future__ import annotations

from pathlib import Path

import pytest
from docaxis.directory.v1 import directory_service_pb2 as dpb

from docaxis_client.trust.demo_pki import IssuedCertificate, KeyType, key_pem, slug
from services.demo import DEMO_AGENCIES, SENDER, SIGNER, run_demo
from services.directory.entrypoints.grpc_api import agency_from_pb
from services.directory.service_layer.handlers import DirectoryHandlers
from tests.pki import SuitePki

pytestmark = pytest.mark.integration


def _write(stem: Path, issued: IssuedCertificate) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_name(f"{stem.name}.pem").write_bytes(issued.chain_pem())
    key = stem.with_name(f"{stem.name}.key")
    key.write_bytes(key_pem(issued.key))
    key.chmod(0o600)


def _demo_pki(pki: SuitePki, folder: Path) -> Path:
    """The demo PKI folder layout, issued by the suite's CA (which the axis trusts)."""
    (folder / "bundle.pem").parent.mkdir(parents=True, exist_ok=True)
    (folder / "bundle.pem").write_bytes(pki.bundle.read_bytes())
    for code, (name, key_type) in DEMO_AGENCIES.items():
        _write(folder / "agencies" / code, pki.ca.issue_agency(code, name, key_type=key_type))
    official = pki.ca.issue_person(SIGNER, SENDER, key_type=KeyType.ED25519)
    _write(folder / "persons" / SENDER / slug(SIGNER), official)
    _write(folder / "tsa" / "tsa", pki.tsa)
    return folder


async def test_the_demo_sends_a_signed_pdf_and_recipients_see_the_hubs_checks(
    axis: str,
    pki: SuitePki,
    directory: DirectoryHandlers,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    present, missing = await directory.get_many(list(DEMO_AGENCIES))
    for code in missing:
        name, _key = DEMO_AGENCIES[code]
        await directory.register(
            agency_from_pb(
                dpb.Agency(
                    code=code, name=name, kind=dpb.AGENCY_KIND_DEPARTMENT, valid_from="2019-01-01"
                )
            )
        )
    assert all(agency.valid_to is None for agency in present)

    assert await run_demo(axis, _demo_pki(pki, tmp_path / "pki")) == 0

    out = capsys.readouterr().out
    assert "demo passed" in out
    assert f"hub verified PADES cong-van-demo.pdf (ChuKyNguoiKy): {SIGNER}, ed25519-sha512" in out
    assert "hub verified PADES cong-van-demo.pdf (ChuKyCoQuan)" in out
    # Both PDF signatures carry the demo TSA's RFC 3161 timestamp, verified by the hub.
    assert out.count("hub verified PADES cong-van-demo.pdf") == out.count("; RFC 3161 timestamp 2")
    assert "hub verified MANIFEST" in out
