"""Tests for the demo PKI folder the `docaxis pki` commands drive."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from docaxis_client.trust import CertificateRevokedError, Role, sign_document, verify_document
from docaxis_client.trust.demo_pki import KeyType, PkiFolder, slug
from services.demo import ensure_demo_pki
from tests.unit.trust.factories import OFFICIAL, SENDER, SENDER_NAME, make_manifest


@pytest.fixture
def pki(tmp_path: Path) -> PkiFolder:
    """A freshly initialised demo PKI folder."""
    folder = PkiFolder(tmp_path / "pki")
    folder.init()
    return folder


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_the_layout_with_private_keys_readable_by_the_owner_only(
    pki: PkiFolder,
) -> None:
    """ca.pem/.key, intermediate.pem/.key and one CRL per CA; keys are 0600."""
    names = sorted(str(p.relative_to(pki.path)) for p in pki.path.rglob("*") if p.is_file())
    assert names == [
        "ca.key",
        "ca.pem",
        "crl/intermediate.pem",
        "crl/root.pem",
        "intermediate.key",
        "intermediate.pem",
    ]
    assert _mode(pki.path / "ca.key") == 0o600
    assert _mode(pki.path / "intermediate.key") == 0o600


def test_issued_files_load_back_and_sign_a_verifiable_document(pki: PkiFolder) -> None:
    """Agency and person files become signing identities that verify with the folder's store."""
    agency = pki.issue_agency(SENDER, SENDER_NAME)
    person = pki.issue_person(OFFICIAL, SENDER, key_type=KeyType.ED25519)
    assert agency.certificate == pki.path / "agencies" / f"{SENDER}.pem"
    assert person.certificate == pki.path / "persons" / SENDER / "nguyen-van-duc.pem"
    assert _mode(agency.key) == 0o600
    manifest = make_manifest()
    signatures = sign_document(
        manifest,
        person=PkiFolder.load_identity(person.certificate),
        organization=PkiFolder.load_identity(agency.certificate),
    )
    assert verify_document(manifest, signatures, pki.trust_store()).sender == SENDER


def test_server_and_role_certificates_go_to_their_folders(pki: PkiFolder) -> None:
    """issue-server and issue-role write servers/<name> and roles/<role>/<name>."""
    server = pki.issue_server()
    monitor = pki.issue_role(Role.MONITOR, "Grafana")
    assert server.certificate == pki.path / "servers" / "localhost.pem"
    assert monitor.certificate == pki.path / "roles" / "monitor" / "grafana.pem"


def test_tls_certificates_refuse_ed25519_keys_and_write_nothing(pki: PkiFolder) -> None:
    """gRPC's TLS cannot use Ed25519: agency, server and operator certificates refuse it with
    a message that says so; person and hub certificates (signing only) still take it."""
    refusals: dict[str, Callable[[], object]] = {
        "an agency certificate": lambda: pki.issue_agency(
            SENDER, SENDER_NAME, key_type=KeyType.ED25519
        ),
        "a server certificate": lambda: pki.issue_server(key_type=KeyType.ED25519),
        "a monitor certificate": lambda: pki.issue_role(
            Role.MONITOR, "Grafana", key_type=KeyType.ED25519
        ),
    }
    for what, issue in refusals.items():
        with pytest.raises(ValueError, match=f"{what} authenticates TLS.*Ed25519"):
            issue()
    assert not (pki.path / "agencies").exists()
    assert not (pki.path / "servers").exists()
    assert pki.issue_role(Role.HUB, "hub", key_type=KeyType.ED25519).certificate.exists()
    assert pki.issue_person(OFFICIAL, SENDER, key_type=KeyType.ED25519).certificate.exists()


def test_revoke_rewrites_the_crl_and_the_folder_store_rejects_the_certificate(
    pki: PkiFolder,
) -> None:
    """After revoke, trust_store() carries the serial on the issuing CA's CRL."""
    agency = pki.issue_agency(SENDER, SENDER_NAME)
    person = pki.issue_person(OFFICIAL, SENDER)
    manifest = make_manifest()
    signatures = sign_document(
        manifest,
        person=PkiFolder.load_identity(person.certificate),
        organization=PkiFolder.load_identity(agency.certificate),
    )
    pki.revoke(agency.certificate)
    pki.issue_role(Role.ADMIN, "admin")  # later issuance keeps earlier revocations
    with pytest.raises(CertificateRevokedError) as caught:
        verify_document(manifest, signatures, pki.trust_store())
    assert caught.value.serial == agency.serial


def test_init_refuses_to_replace_an_existing_ca(pki: PkiFolder) -> None:
    """Re-running init without force keeps the existing CA."""
    with pytest.raises(FileExistsError):
        pki.init()


def test_issuing_the_same_name_twice_needs_force(pki: PkiFolder) -> None:
    """Certificates are not silently overwritten."""
    pki.issue_agency(SENDER, SENDER_NAME)
    with pytest.raises(FileExistsError):
        pki.issue_agency(SENDER, SENDER_NAME)
    pki.issue_agency(SENDER, SENDER_NAME, force=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Nguyễn Văn Đức", "nguyen-van-duc"), ("Trần Thị Hoa", "tran-thi-hoa"), ("a/../b", "a-..-b")],
)
def test_slug_makes_ascii_file_names_from_vietnamese_names(text: str, expected: str) -> None:
    """Marks are stripped, đ becomes d, and path separators never survive."""
    assert slug(text) == expected


def test_the_demo_pki_has_the_administrators_pkcs12_for_a_browser(tmp_path: Path) -> None:
    """`make run`'s PKI: admin.p12 holds the administrator's key and chain, no password,
    readable by the owner only; a second run keeps it."""
    folder = tmp_path / "pki"
    created = ensure_demo_pki(folder)
    p12 = folder / "roles" / "admin" / "admin.p12"
    assert any(str(p12) in line for line in created)
    assert _mode(p12) == 0o600
    loaded = pkcs12.load_pkcs12(p12.read_bytes(), None)
    admin = PkiFolder.load_identity(folder / "roles" / "admin" / "admin.pem")
    assert loaded.cert is not None
    assert loaded.cert.certificate == admin.certificate
    assert [c.certificate for c in loaded.additional_certs] == list(admin.chain[1:])
    assert loaded.key is not None
    assert loaded.key.public_key() == admin.key.public_key()
    assert ensure_demo_pki(folder) == [f"demo PKI in {folder} is complete"]
