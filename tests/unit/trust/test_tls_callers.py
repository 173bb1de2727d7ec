"""Who a mutual-TLS caller is: certificate checks, roles, revocation, the directory."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from docaxis_client.credentials import parse_crl
from docaxis_client.trust import CrlInvalidError, Role
from docaxis_client.trust.demo_pki import DemoCA, certificates_pem
from services.common.config import ConfigError
from services.common.errors import PermissionDeniedError, UnauthenticatedError
from services.common.identity import Caller, TlsCallerResolver
from services.common.identity import Role as CallerRole
from services.common.trust import TrustRegistry
from tests.tls_peer import peer_context as _ctx

CODE = "000.00.13.H45"


def test_an_agency_certificate_names_its_agency(fresh_ca: DemoCA, registry: TrustRegistry) -> None:
    issued = fresh_ca.issue_agency(CODE, "Sở Y tế")
    caller = TlsCallerResolver(registry).resolve(_ctx(issued))
    assert caller == Caller(
        CallerRole.AGENCY,
        CODE,
        issued.certificate.subject.rfc4514_string(),
        f"{issued.certificate.serial_number:x}",
    )


def test_operator_roles_and_the_monitor_restriction(
    fresh_ca: DemoCA, registry: TrustRegistry
) -> None:
    resolver = TlsCallerResolver(registry)
    assert resolver.resolve(_ctx(fresh_ca.issue_role(Role.ADMIN, "a"))).role is CallerRole.ADMIN
    assert resolver.resolve(_ctx(fresh_ca.issue_role(Role.HUB, "h"))).role is CallerRole.HUB
    with pytest.raises(PermissionDeniedError, match="health"):
        resolver.resolve(_ctx(fresh_ca.issue_role(Role.MONITOR, "m")))


def test_a_revocation_applies_to_the_next_call_despite_the_cache(
    fresh_ca: DemoCA, registry: TrustRegistry
) -> None:
    issued = fresh_ca.issue_agency(CODE, "Sở Y tế")
    resolver = TlsCallerResolver(registry)
    assert resolver.resolve(_ctx(issued)).agency_code == CODE
    fresh_ca.revoke(issued.certificate)
    registry.use_crls(fresh_ca.crls())
    with pytest.raises(UnauthenticatedError) as failure:
        resolver.resolve(_ctx(issued))
    assert failure.value.reason == "CERTIFICATE_REVOKED"
    assert failure.value.meta["serial"] == f"{issued.certificate.serial_number:x}"


async def test_a_reload_that_changes_nothing_keeps_every_caller_and_wakes_no_stream(
    fresh_ca: DemoCA, registry: TrustRegistry
) -> None:
    """The periodic reload reads the same CRLs again (parsed anew from the database): the
    revocations did not change, so the generation callers key their caches on stays and no
    open stream is woken to check its caller; a new revocation still changes both at once."""
    crls = fresh_ca.crls()
    registry.use_crls(crls)
    generation = registry.generation
    changed = asyncio.ensure_future(registry.changed())
    registry.use_crls(
        [parse_crl(crl.public_bytes(serialization.Encoding.DER)) for crl in reversed(crls)]
    )
    await asyncio.sleep(0)
    assert (registry.generation, changed.done()) == (generation, False)
    issued = fresh_ca.issue_agency(CODE, "Sở Y tế")
    resolver = TlsCallerResolver(registry)
    assert resolver.resolve(_ctx(issued)).agency_code == CODE
    fresh_ca.revoke(issued.certificate)
    registry.use_crls(fresh_ca.crls())
    await asyncio.wait_for(changed, timeout=5)
    assert registry.generation == generation + 1
    with pytest.raises(UnauthenticatedError) as failure:
        resolver.resolve(_ctx(issued))
    assert failure.value.reason == "CERTIFICATE_REVOKED"


def test_a_known_certificate_is_answered_from_the_cache_without_parsing_it_again(
    fresh_ca: DemoCA, registry: TrustRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = fresh_ca.issue_agency(CODE, "Sở Y tế")
    resolver = TlsCallerResolver(registry)
    first = resolver.resolve(_ctx(issued))

    def parsed_again(data: bytes) -> x509.Certificate:
        raise AssertionError("a cached certificate was parsed again")

    monkeypatch.setattr(x509, "load_pem_x509_certificate", parsed_again)
    monkeypatch.setattr(x509, "load_pem_x509_certificates", parsed_again)

    def resolve_again() -> tuple[Caller, dict[str, Any]]:
        # In a copy of the context: the log context bound here stays here.
        return resolver.resolve(_ctx(issued)), structlog.contextvars.get_contextvars()

    again, logged = contextvars.copy_context().run(resolve_again)
    assert again == first
    assert logged["caller_subject"] == first.subject
    assert logged["caller_serial"] == first.serial


def _identity(caller: Caller) -> tuple[str | None, str]:
    return caller.agency_code, caller.serial


def test_each_cached_certificate_is_answered_as_itself(
    fresh_ca: DemoCA, registry: TrustRegistry
) -> None:
    """Certificates alike in all but their key and serial (the same CA, the same length, an
    agency's reissued one beside it) each name their own agency and serial, call after call:
    a call's certificate bytes arrive anew each time, and the cache keys on all of them."""
    twin = CODE[:-1] + "6"
    issued = [
        fresh_ca.issue_agency(CODE, "Sở Y tế"),
        fresh_ca.issue_agency(twin, "Sở Y tế"),
        fresh_ca.issue_agency(CODE, "Sở Y tế"),  # reissued: the same subject, another serial
    ]
    expected = [
        (code, f"{i.certificate.serial_number:x}")
        for code, i in zip((CODE, twin, CODE), issued, strict=True)
    ]
    resolver = TlsCallerResolver(registry)
    for _ in range(3):
        for certificate, identity in zip(issued, expected, strict=True):
            assert _identity(resolver.resolve(_ctx(certificate))) == identity


def test_the_cache_keeps_its_bound_evicting_the_oldest(
    fresh_ca: DemoCA, registry: TrustRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = (fresh_ca.issue_agency(CODE, "Sở Y tế") for _ in range(3))
    resolver = TlsCallerResolver(registry, cache_entries=2)
    parsed: list[int] = []
    load = x509.load_pem_x509_certificate

    def counted(data: bytes) -> x509.Certificate:
        certificate = load(data)
        parsed.append(certificate.serial_number)
        return certificate

    monkeypatch.setattr(x509, "load_pem_x509_certificate", counted)
    for issued in (first, second, third, third, second, first):
        assert resolver.resolve(_ctx(issued)).serial == f"{issued.certificate.serial_number:x}"
    # The third pushed the first out; the first, back, pushed the second out.
    serials = [i.certificate.serial_number for i in (first, second, third, first)]
    assert parsed == serials
    with pytest.raises(ValueError, match="at least one"):
        TlsCallerResolver(registry, cache_entries=0)


def test_a_revocation_refuses_the_revoked_certificate_and_keeps_the_others(
    fresh_ca: DemoCA, registry: TrustRegistry
) -> None:
    revoked, kept = (fresh_ca.issue_agency(CODE, "Sở Y tế") for _ in range(2))
    resolver = TlsCallerResolver(registry)
    for issued in (revoked, kept):
        assert resolver.resolve(_ctx(issued)).agency_code == CODE
    fresh_ca.revoke(revoked.certificate)
    registry.use_crls(fresh_ca.crls())
    for _ in range(2):  # refused again: a refusal is not cached, nor the answer before it
        with pytest.raises(UnauthenticatedError) as failure:
            resolver.resolve(_ctx(revoked))
        assert failure.value.reason == "CERTIFICATE_REVOKED"
        assert resolver.resolve(_ctx(kept)).serial == f"{kept.certificate.serial_number:x}"


def test_certificates_that_are_not_client_credentials_are_refused(
    fresh_ca: DemoCA, registry: TrustRegistry
) -> None:
    resolver = TlsCallerResolver(registry)
    with pytest.raises(UnauthenticatedError) as official:
        resolver.resolve(_ctx(fresh_ca.issue_person("Nguyễn Văn A", CODE)))
    assert official.value.reason == "CERTIFICATE_USAGE"  # no clientAuth: officials do not log in
    with pytest.raises(UnauthenticatedError) as nobody:
        resolver.resolve(_ctx(None))
    assert nobody.value.reason == "UNAUTHENTICATED"
    expired = fresh_ca.issue_agency(
        CODE,
        "Sở Y tế",
        not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
    )
    with pytest.raises(UnauthenticatedError) as late:
        resolver.resolve(_ctx(expired))
    assert late.value.reason == "CERTIFICATE_EXPIRED"
    with pytest.raises(UnauthenticatedError) as foreign:
        resolver.resolve(_ctx(DemoCA.create().issue_agency(CODE, "Giả")))
    assert foreign.value.reason == "UNTRUSTED_ISSUER"


async def test_an_agency_must_be_registered_and_open(
    fresh_ca: DemoCA, registry: TrustRegistry
) -> None:
    open_codes: set[str] = set()

    async def is_open(code: str) -> bool:
        return code in open_codes

    resolver = TlsCallerResolver(registry, is_open)
    ctx = _ctx(fresh_ca.issue_agency(CODE, "Sở Y tế"))
    with pytest.raises(PermissionDeniedError) as failure:
        await resolver.authenticate(ctx)
    assert failure.value.reason == "NOT_REGISTERED"
    open_codes.add(CODE)
    assert (await resolver.authenticate(ctx)).agency_code == CODE


def test_only_crls_of_the_anchors_are_accepted(fresh_ca: DemoCA, registry: TrustRegistry) -> None:
    info = registry.check_crl(fresh_ca.crl("intermediate"))
    assert info.issuer == fresh_ca.issuing.certificate.subject.rfc4514_string()
    with pytest.raises(CrlInvalidError):
        registry.check_crl(DemoCA.create().crl("intermediate"))
    # A CRL the anchors no longer vouch for is skipped, not fatal to the other revocations.
    generation = registry.generation
    registry.use_crls([DemoCA.create().crl("root"), fresh_ca.crl("root")])
    assert registry.generation == generation + 1
    der = fresh_ca.crl("root").public_bytes(serialization.Encoding.DER)
    assert registry.check_crl(parse_crl(der)).number > 0


def test_crl_files_given_at_startup_revoke_too(fresh_ca: DemoCA, tmp_path: Path) -> None:
    assert fresh_ca.intermediate is not None
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(
        certificates_pem([fresh_ca.root_certificate, fresh_ca.intermediate.certificate])
    )
    issued = fresh_ca.issue_agency(CODE, "Sở Y tế")
    fresh_ca.revoke(issued.certificate)
    crl = tmp_path / "issuing.crl"
    crl.write_bytes(fresh_ca.crl("intermediate").public_bytes(serialization.Encoding.DER))
    registry = TrustRegistry.from_files(str(bundle), [str(crl)])
    with pytest.raises(UnauthenticatedError) as failure:
        TlsCallerResolver(registry).resolve(_ctx(issued))
    assert failure.value.reason == "CERTIFICATE_REVOKED"
    # Ingested CRLs come and go; the configured ones stay.
    registry.use_crls([])
    with pytest.raises(UnauthenticatedError):
        TlsCallerResolver(registry).resolve(_ctx(issued))
    with pytest.raises(ConfigError, match="cannot read the CRL"):
        TrustRegistry.from_files(str(bundle), [str(tmp_path / "missing.crl")])
    foreign = tmp_path / "foreign.crl"
    foreign.write_bytes(DemoCA.create().crl().public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ConfigError, match="DOCAXIS_CRL_FILES"):
        TrustRegistry.from_files(str(bundle), [str(foreign)])


def test_a_peer_hub_certificate_names_its_hub_and_acts_as_nothing_else(
    fresh_ca: DemoCA, registry: TrustRegistry
) -> None:
    """Federation: a hub's peer certificate is that hub among its peers, never an agency, an
    operator or the hub role; an agency's certificate is never a peer hub."""
    resolver = TlsCallerResolver(registry)
    peer = resolver.resolve(_ctx(fresh_ca.issue_peer("national")))
    assert (peer.role, peer.peer_hub, peer.agency_code) == (CallerRole.PEER, "national", None)
    assert peer.require_peer() == "national"
    with pytest.raises(PermissionDeniedError):
        peer.require_agency()
    with pytest.raises(PermissionDeniedError):
        peer.require_admin()
    agency = resolver.resolve(_ctx(fresh_ca.issue_agency(CODE, "Sở Y tế")))
    with pytest.raises(PermissionDeniedError):
        agency.require_peer()
    hub = resolver.resolve(_ctx(fresh_ca.issue_role(Role.HUB, "h")))
    with pytest.raises(PermissionDeniedError):
        hub.require_peer()
