"""The bounded cache of manifest digests that transport and hop receipts share."""

from __future__ import annotations

from services.exchange.domain.model import manifest_of
from services.exchange.service_layer.manifest_digests import ManifestDigests
from tests.unit.exchange.builders import header as make_header


def test_a_digest_is_the_manifests_and_the_oldest_is_forgotten() -> None:
    header = make_header()
    expected = manifest_of(header, ()).sha256_hex()
    digests = ManifestDigests(kept=2)
    assert digests.of("a", header, ()) == expected
    digests.of("b", header, ())
    digests.of("c", header, ())
    # "a" was forgotten: asked again, it is built from what is given now.
    other = make_header(number="7817")
    assert digests.of("a", other, ()) == manifest_of(other, ()).sha256_hex() != expected
    assert digests.of("c", other, ()) == expected  # "c" still kept: not built again
