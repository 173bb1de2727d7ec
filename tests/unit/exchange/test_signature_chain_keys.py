"""A signature's chain is stored under a key that no other list of certificates shares
(adapters/signature_chains.py), and the writer refers to chains from a day after the last
migration of the upgrade that applied 0043 (writes_from)."""

from __future__ import annotations

import datetime as dt

from services.exchange.adapters.signature_chains import SignatureChain, writes_from
from services.exchange.service_layer.upgrade_walks import UPGRADE_WINDOW

BEGAN = dt.datetime(2026, 12, 8, 1, tzinfo=dt.UTC)


def test_lists_of_the_same_bytes_cut_differently_have_different_keys() -> None:
    """The certificates' bytes run together are the same; their lengths tell them apart."""
    keys = {
        SignatureChain.of(chain).sha256
        for chain in [(b"abc",), (b"ab", b"c"), (b"a", b"bc"), (b"a", b"b", b"c"), (b"abc", b"")]
    }
    assert len(keys) == 5
    assert SignatureChain.of(()).sha256 != SignatureChain.of((b"",)).sha256


def test_a_chain_keeps_its_certificates_in_order() -> None:
    chain = SignatureChain.of([b"leaf", b"ca"])
    assert chain.certificates == (b"leaf", b"ca")
    assert chain.sha256 == SignatureChain.of((b"leaf", b"ca")).sha256
    assert chain.sha256 != SignatureChain.of((b"ca", b"leaf")).sha256


def test_references_are_written_a_day_after_the_upgrades_last_migration() -> None:
    """A day after 0043 or after the last migration applied within a day of it (the rest of
    its upgrade, the next one's); a migration applied later (an upgrade after the window) does
    not put it back; a database no earlier version ran against refers at once."""
    hour = dt.timedelta(hours=1)
    assert writes_from(BEGAN, [None]) == BEGAN + UPGRADE_WINDOW
    assert writes_from(BEGAN, [BEGAN, BEGAN + hour]) == BEGAN + hour + UPGRADE_WINDOW
    assert writes_from(BEGAN, [BEGAN + hour, BEGAN + 30 * hour]) == BEGAN + hour + UPGRADE_WINDOW
    assert writes_from(None, [None]) == dt.datetime.min.replace(tzinfo=dt.UTC)
