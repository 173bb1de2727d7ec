"""The gateway's delegation contract: the call metadata with which it acts for an agency.

Shared by the gateway (which sends it) and the services (which accept it only from the gateway
role), so that the two sides cannot drift apart.
"""

from __future__ import annotations

ON_BEHALF_HEADER = "x-docaxis-on-behalf-of"
# With it, the DER certificate the agency authenticated to the gateway with: the services
# validate it too, so that a revocation ingested at runtime applies to calls through the gateway
# at once.
ON_BEHALF_CERT_HEADER = "x-docaxis-on-behalf-cert-bin"
# The on-behalf-of value with which the gateway acts for an administrator (the admin console);
# the forwarded certificate must then carry the admin role. Not an agency code, so the two
# kinds of principal cannot be confused.
ADMINISTRATOR = "role:admin"


def on_behalf_metadata(
    principal: str, certificate_der: bytes
) -> tuple[tuple[str, str | bytes], ...]:
    """Call metadata the gateway sends (with its own certificate) to act for `principal` (an
    agency code, or ADMINISTRATOR), with the certificate it authenticated to the gateway with."""
    return ((ON_BEHALF_HEADER, principal), (ON_BEHALF_CERT_HEADER, certificate_der))
