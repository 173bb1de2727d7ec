"""Concurrent Submits' manifest signatures verified in one hop (signatures.MANIFEST_CHECKS): every
document is still checked before it is stored and answered on its own."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest

from docaxis_client.trust.demo_pki import DemoCA, KeyType
from docaxis_client.trust.signatures import sign_document
from services.common.errors import DomainError
from services.directory.domain.codes import code_problem
from services.exchange.domain.model import Signature, Submission, manifest_of
from services.exchange.service_layer.handlers import ExchangeHandlers, SubmitResult
from services.exchange.service_layer.signatures import (
    ATTACHMENT_CHECKS,
    MANIFEST_CHECKS,
    SignatureVerifier,
)
from tests.fakes import FakeDirectoryLookup, FakeDocumentStore
from tests.unit.common.test_worker_thread import held, queued
from tests.unit.exchange.builders import EDUCATION, HEALTH, SENDER, header
from tests.unit.trust.factories import flip_last_byte

OFFICIAL = "Nguyễn Văn Đức"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def ca() -> DemoCA:
    return DemoCA.create()


def signed(ca: DemoCA, number: str, *, forged: bool = False) -> Submission:
    """A document signed by SENDER's official (Ed25519) and agency (P-256), as the bench's are;
    `forged`: the agency's signature changed by one bit."""
    head = dataclasses.replace(
        header(number=number), promulgation_date=_now().date(), signer_full_name=OFFICIAL
    )
    pair = sign_document(
        manifest_of(head, ()),
        person=ca.issue_person(OFFICIAL, SENDER, key_type=KeyType.ED25519).identity(),
        organization=ca.issue_agency(SENDER, "Văn phòng Chính phủ").identity(),
    )
    signatures = tuple(
        Signature(
            s.role.value,
            s.algorithm.value,
            flip_last_byte(s.signature) if forged and s is pair.organization else s.signature,
            s.chain,
            s.signed_at,
        )
        for s in (pair.person, pair.organization)
    )
    return Submission(f"c-{number}", head, (), signatures=signatures)


def exchange_of(ca: DemoCA, store: FakeDocumentStore) -> ExchangeHandlers:
    return ExchangeHandlers(
        store,
        FakeDirectoryLookup(SENDER, HEALTH, EDUCATION),
        code_problem,
        clock=_now,
        signatures=SignatureVerifier(ca.trust_store, required=True),
    )


async def test_a_forged_signature_among_good_ones_verified_in_one_hop_is_refused_alone(
    ca: DemoCA,
) -> None:
    """Four Submits whose checks queue behind a busy thread are verified in one batch: the
    forged one is refused with its own SIGNATURE_INVALID (its role named) and nothing of it is
    stored; the three others are accepted and stored."""
    store = FakeDocumentStore(clock=_now)
    exchange = exchange_of(ca, store)
    documents = [signed(ca, n, forged=n == "7002") for n in ("7001", "7002", "7003", "7004")]
    gate, first = await held(MANIFEST_CHECKS)
    batches = MANIFEST_CHECKS.batches
    calls = [asyncio.ensure_future(exchange.submit(SENDER, d)) for d in documents]
    await queued(MANIFEST_CHECKS, 4)
    gate.opened.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    await first

    assert MANIFEST_CHECKS.batches == batches + 1  # the four checks took one hop
    refused = outcomes[1]
    assert isinstance(refused, DomainError)
    assert (refused.reason, refused.meta["role"]) == ("SIGNATURE_INVALID", "organization")
    accepted = [outcomes[0], *outcomes[2:]]
    assert all(isinstance(o, SubmitResult) and not o.replayed for o in accepted)
    stored = sorted(d.consignment_id for d in store.documents.values())
    assert stored == ["c-7001", "c-7003", "c-7004"]
    verifications = [d.verification for d in store.documents.values()]
    assert all(v is not None and v.signed for v in verifications)


async def test_a_manifest_check_does_not_wait_for_a_pdf_check(ca: DemoCA) -> None:
    """A PDF's or an envelope's check (tens of milliseconds to seconds) holds its own thread,
    not the one the documents' manifest signatures are verified in: a Submit signed in the
    manifest is verified and stored while the attachment thread is busy."""
    store = FakeDocumentStore(clock=_now)
    exchange = exchange_of(ca, store)
    gate, held_check = await held(ATTACHMENT_CHECKS)
    try:
        async with asyncio.timeout(10):  # behind the held thread it would wait here
            result = await exchange.submit(SENDER, signed(ca, "7101"))
    finally:
        gate.opened.set()
        await held_check

    assert not result.replayed
    assert [d.consignment_id for d in store.documents.values()] == ["c-7101"]
