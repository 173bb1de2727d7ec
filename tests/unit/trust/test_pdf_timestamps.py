"""RFC 3161 signature timestamps in PDFs: verified against the TSA anchors, and the time at which
the signer's certificate is judged."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from asn1crypto import cms

from docaxis_client.trust.demo_pki import DemoCA, IssuedCertificate
from docaxis_client.trust.errors import CertificateExpiredError, TimestampInvalidError, TrustError
from docaxis_client.trust.pdf import demo_pdf, http_timestamper, sign_pdf, verify_pdf
from docaxis_client.trust.tsa import LocalTimeStamper, TimestampAuthority, serving
from tests.unit.trust.conftest import Signers
from tests.unit.trust.factories import OFFICIAL, SENDER, SENDER_NAME

PAGE = demo_pdf(["Cong van 55/UBND-VP"])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _authority(ca: DemoCA, at: dt.datetime | None = None) -> TimestampAuthority:
    tsa = ca.issue_tsa()
    if at is None:
        return TimestampAuthority(tsa.identity())
    return TimestampAuthority(tsa.identity(), clock=lambda: at)


def _signed(person: IssuedCertificate, agency: IssuedCertificate, stamper: object) -> bytes:
    assert isinstance(stamper, LocalTimeStamper)
    pdf = sign_pdf(PAGE, person.identity(), field_name="ChuKyNguoiKy", timestamper=stamper)
    return sign_pdf(pdf, agency.identity(), field_name="ChuKyCoQuan", timestamper=stamper)


def _verify(pdf: bytes, ca: DemoCA, tsa: DemoCA | None) -> list[dt.datetime | None]:
    result = verify_pdf(
        pdf,
        ca.trust_store(),
        agency=SENDER,
        main=True,
        at=_now(),
        timestamps=None if tsa is None else tsa.trust_store(),
    )
    return [signer.timestamped_at for signer in result.signers]


def _refusal(pdf: bytes, ca: DemoCA, tsa: DemoCA | None) -> TrustError:
    with pytest.raises(TrustError) as caught:
        _verify(pdf, ca, tsa)
    return caught.value


@pytest.fixture(scope="module")
def tsa_ca() -> DemoCA:
    """The TSA's own CA: its anchors are the deployment's TSA anchors, not the signers'."""
    return DemoCA.create(common_name="DEMO TSA root")


def test_timestamped_signatures_report_the_tsas_time(
    ca: DemoCA, tsa_ca: DemoCA, p256: Signers
) -> None:
    pdf = _signed(p256.person, p256.organization, LocalTimeStamper(_authority(tsa_ca)))
    stamps = _verify(pdf, ca, tsa_ca)
    assert all(
        stamp is not None and abs(stamp - _now()) < dt.timedelta(minutes=5) for stamp in stamps
    )


def test_a_certificate_expired_now_but_valid_at_the_timestamp_is_accepted(tsa_ca: DemoCA) -> None:
    """Signed (and stamped by the TSA) two days ago with certificates that expired yesterday:
    the timestamp proves when, so they pass; the same PDF without a timestamp is refused."""
    ca = DemoCA.create(not_before=_now() - dt.timedelta(days=30))
    start = _now() - dt.timedelta(days=3)
    end = start + dt.timedelta(days=2)
    person = ca.issue_person(OFFICIAL, SENDER, not_before=start, not_after=end)
    agency = ca.issue_agency(SENDER, SENDER_NAME, not_before=start, not_after=end)
    two_days_ago = _now() - dt.timedelta(days=2)
    stamped = _signed(person, agency, LocalTimeStamper(_authority(tsa_ca, two_days_ago)))

    assert _verify(stamped, ca, tsa_ca) == [two_days_ago.replace(microsecond=0)] * 2

    unstamped = sign_pdf(
        sign_pdf(PAGE, person.identity(), field_name="ChuKyNguoiKy"),
        agency.identity(),
        field_name="ChuKyCoQuan",
    )
    assert isinstance(_refusal(unstamped, ca, tsa_ca), CertificateExpiredError)


def test_a_timestamp_from_a_tsa_outside_the_tsa_anchors_is_timestamp_invalid(
    ca: DemoCA, tsa_ca: DemoCA, p256: Signers
) -> None:
    """A TSA of the signers' own CA is not a TSA anchor; nor is any TSA when none are set."""
    pdf = _signed(p256.person, p256.organization, LocalTimeStamper(_authority(ca)))
    error = _refusal(pdf, ca, tsa_ca)
    assert isinstance(error, TimestampInvalidError)
    assert error.reason == "TIMESTAMP_INVALID"
    assert error.context == {"signature": "ChuKyNguoiKy"}
    trusted_tsa = _signed(p256.person, p256.organization, LocalTimeStamper(_authority(tsa_ca)))
    assert isinstance(_refusal(trusted_tsa, ca, None), TimestampInvalidError)


class _ForgingStamper(LocalTimeStamper):
    """A TSA answer over another message imprint: a token that belongs to other bytes."""

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo:
        other = hashlib.new(md_algorithm, b"another signature").digest()
        token: cms.ContentInfo = await super().async_timestamp(other, md_algorithm)
        return token


def test_a_token_over_other_bytes_is_timestamp_invalid(
    ca: DemoCA, tsa_ca: DemoCA, p256: Signers
) -> None:
    pdf = _signed(p256.person, p256.organization, _ForgingStamper(_authority(tsa_ca)))
    assert isinstance(_refusal(pdf, ca, tsa_ca), TimestampInvalidError)


def test_the_http_responder_gives_real_tokens_to_pyhankos_http_client(
    ca: DemoCA, tsa_ca: DemoCA, p256: Signers
) -> None:
    """RFC 3161 over HTTP: what `docaxis sign pdf --tsa-url` and the demo use."""
    with serving(_authority(tsa_ca)) as url:
        stamper = http_timestamper(url)
        pdf = sign_pdf(PAGE, p256.person.identity(), field_name="ChuKyNguoiKy", timestamper=stamper)
        pdf = sign_pdf(
            pdf, p256.organization.identity(), field_name="ChuKyCoQuan", timestamper=stamper
        )
    assert all(stamp is not None for stamp in _verify(pdf, ca, tsa_ca))
