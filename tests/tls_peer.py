"""A gRPC ServicerContext as the caller resolvers read it: a TLS peer's auth context (its client
certificate and presented chain) and the call's metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import grpc

from docaxis_client.trust.demo_pki import IssuedCertificate, certificates_pem


class PeerContext:
    def __init__(
        self, issued: IssuedCertificate | None, metadata: Sequence[tuple[str, str | bytes]] = ()
    ) -> None:
        self._metadata = tuple(metadata)
        self._properties: dict[str, Sequence[bytes]] = {}
        if issued is not None:
            self._properties = {
                "x509_pem_cert": [certificates_pem([issued.certificate])],
                "x509_pem_cert_chain": [certificates_pem(issued.chain[1:])],
            }

    def auth_context(self) -> Mapping[str, Sequence[bytes]]:
        return self._properties

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]]:
        return self._metadata


def peer_context(
    issued: IssuedCertificate | None, *metadata: tuple[str, str | bytes]
) -> grpc.aio.ServicerContext[Any, Any]:
    """A call from the holder of `issued` (None: no client certificate) with `metadata`."""
    return cast("grpc.aio.ServicerContext[Any, Any]", PeerContext(issued, metadata))
