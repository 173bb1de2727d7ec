"""An RFC 3161 time-stamping authority: signed timestamp tokens, and a small HTTP responder.

Signing tools ask a TSA to countersign the hash of their signature value (the national CA runs
one, national_profile); the token proves the signature existed at the TSA's time, so a verifier
judges the signer's certificate at that time instead of at the signer's own claim. docaxis
verifies such tokens (pdf.verify_pdf). This authority signs with a certificate of the demo/test
PKI (DemoCA.issue_tsa) so that the demo, the tests and `docaxis sign pdf --tsa-url` get real
tokens from a real HTTP exchange; production signers use the national CA's TSA.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pyhanko.sign.general import as_signing_certificate_v2, simple_cms_attribute
from pyhanko.sign.timestamps.api import TimeStamper

from docaxis_client.trust.keys import SigningIdentity

# The TSA policy the demo's tokens name (2.25: a UUID-based OID, never a real policy).
DEMO_TSA_POLICY = "2.25.305233187463614089711297003436457617133"
TIMESTAMP_QUERY = "application/timestamp-query"
TIMESTAMP_REPLY = "application/timestamp-reply"
_MAX_REQUEST_BYTES = 16 * 1024
_DIGESTS = {"sha256", "sha384", "sha512"}


def _asn1(identity: SigningIdentity) -> list[asn1_x509.Certificate]:
    return [
        asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
        for cert in identity.chain
    ]


def _rejection(text: str) -> tsp.TimeStampResp:
    # RFC 3161 §2.4.2: status rejection with a reason, no token.
    return tsp.TimeStampResp(
        {
            "status": tsp.PKIStatusInfo(
                {"status": tsp.PKIStatus("rejection"), "status_string": [text]}
            )
        }
    )


@dataclass(frozen=True, slots=True)
class TimestampAuthority:
    """Signs timestamp tokens with ``identity`` (a certificate with EKU timeStamping).

    ``clock`` gives the time tokens state; tests move it to make a token of another day.
    """

    identity: SigningIdentity
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    def respond(self, request: bytes) -> bytes:
        """The DER TimeStampResp to a DER TimeStampReq (a rejection for one it cannot serve)."""
        try:
            parsed = tsp.TimeStampReq.load(request)
            imprint = parsed["message_imprint"]
            digest = imprint["hash_algorithm"]["algorithm"].native
            hashed = imprint["hashed_message"].native
        except (ValueError, TypeError, KeyError):
            return bytes(_rejection("not a TimeStampReq").dump())
        if digest not in _DIGESTS or len(hashed) != hashlib.new(digest).digest_size:
            return bytes(_rejection(f"unsupported message imprint {digest}").dump())
        return bytes(self.response(parsed).dump())

    def response(self, request: tsp.TimeStampReq) -> tsp.TimeStampResp:
        """A granted response carrying a token over the request's message imprint."""
        certificates = _asn1(self.identity)
        signer = certificates[0]
        at = self.clock().astimezone(dt.UTC).replace(microsecond=0)
        info = {
            "version": "v1",
            "policy": DEMO_TSA_POLICY,
            "message_imprint": request["message_imprint"],
            "serial_number": secrets.randbits(64),
            "gen_time": at,
            "tsa": asn1_x509.GeneralName(name="directory_name", value=signer.subject),
        }
        if request["nonce"].native is not None:
            info["nonce"] = request["nonce"]
        content = tsp.TSTInfo(info).dump()
        signed_attributes = cms.CMSAttributes(
            [
                simple_cms_attribute("content_type", "tst_info"),
                simple_cms_attribute("signing_time", cms.Time({"utc_time": core.UTCTime(at)})),
                simple_cms_attribute("signing_certificate_v2", as_signing_certificate_v2(signer)),
                simple_cms_attribute("message_digest", hashlib.sha256(content).digest()),
            ]
        )
        key = self.identity.key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            signature = key.sign(signed_attributes.dump(), ec.ECDSA(hashes.SHA256()))
            mechanism = "sha256_ecdsa"
        elif isinstance(key, rsa.RSAPrivateKey):
            signature = key.sign(signed_attributes.dump(), padding.PKCS1v15(), hashes.SHA256())
            mechanism = "sha256_rsa"
        else:
            raise ValueError("a TSA key must be ECDSA or RSA")
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    {
                        "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                            {"issuer": signer.issuer, "serial_number": signer.serial_number}
                        )
                    }
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signed_attrs": signed_attributes,
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": mechanism}),
                "signature": signature,
            }
        )
        signed_data = {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": cms.ParsableOctetString(content),
            },
            "signer_infos": [signer_info],
        }
        if request["cert_req"].native:
            signed_data["certificates"] = certificates
        token = cms.ContentInfo(
            {"content_type": "signed_data", "content": cms.SignedData(signed_data)}
        )
        return tsp.TimeStampResp(
            {"status": tsp.PKIStatusInfo({"status": "granted"}), "time_stamp_token": token}
        )


class LocalTimeStamper(TimeStamper):
    """pyHanko's client side of a TimestampAuthority in this process (no HTTP)."""

    def __init__(self, authority: TimestampAuthority) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._authority = authority

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        return self._authority.response(req)


def _handler(authority: TimestampAuthority) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.headers.get_content_type() != TIMESTAMP_QUERY:
                self.send_error(415, f"send {TIMESTAMP_QUERY}")
                return
            if not 0 < length <= _MAX_REQUEST_BYTES:
                self.send_error(413, "a timestamp query is a few hundred bytes")
                return
            body = authority.respond(self.rfile.read(length))
            self.send_response(200)
            self.send_header("Content-Type", TIMESTAMP_REPLY)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per token on stderr helps nobody

    return Handler


@contextlib.contextmanager
def serving(authority: TimestampAuthority, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serves ``authority`` over HTTP (RFC 3161 §3.4) until the block ends; yields its URL."""
    server = ThreadingHTTPServer((host, port), _handler(authority))
    thread = threading.Thread(target=server.serve_forever, name="tsa", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
