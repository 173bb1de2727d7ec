"""The gateway's settings, read once at startup from an injectable environment mapping
(`DOCAXIS_GATEWAY_*`). Paths only for certificates and keys: keys are read from their files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Self

PREFIX = "DOCAXIS_GATEWAY_"


class GatewayConfigError(Exception):
    """A required setting is missing or malformed; raised at startup."""


def _host_port(value: str, key: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise GatewayConfigError(f"{key} must be host:port, got {value!r}")
    return host.strip("[]"), int(port)


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(PREFIX + name, "").strip()
    if not value:
        raise GatewayConfigError(f"missing required setting {PREFIX}{name}")
    return value


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(PREFIX + name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise GatewayConfigError(f"{PREFIX}{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    # The HTTPS listener (REST/JSON, national-axis-compatible endpoints), mutual TLS.
    address: str = "127.0.0.1:8443"
    # Plain-HTTP loopback listener: /metrics, /livez, /readyz.
    metrics_address: str = "127.0.0.1:9464"
    # Where the docaxis services answer gRPC (directory and exchange).
    grpc_target: str = "127.0.0.1:50051"
    # The name the services' certificate carries, when grpc_target lists several replicas'
    # addresses rather than a name (empty: the target's host is checked).
    grpc_server_name: str = ""
    # The gateway's HTTPS server certificate chain and key.
    tls_cert_file: str = ""
    tls_key_file: str = field(default="", repr=False)
    # Trust anchors (PEM bundle of roots and issuing CAs) for agencies' client certificates
    # and for the services' server certificate.
    tls_client_ca_file: str = ""
    # The gateway's own client certificate (urn:docaxis:role:gateway) towards the services.
    client_cert_file: str = ""
    client_key_file: str = field(default="", repr=False)
    # CRLs (PEM or DER) checked against agencies' certificates at the edge.
    crl_files: tuple[str, ...] = ()
    # Deadline of each gRPC call to the services.
    call_timeout_s: float = 60.0
    # The admin console signs an administrator out after this long without a request.
    admin_idle_s: float = 1800.0
    # A connection must send a request's headers this soon after its TLS handshake (or after
    # its previous response), or it is closed: idle and slow-header connections hold nothing.
    header_timeout_s: float = 10.0
    # A request body may take this long plus one second per `body_min_rate` bytes sent
    # (408 after that): slow-drip bodies cannot hold connections (gateway/body_limits.py).
    body_grace_s: float = 30.0
    body_min_rate: float = 16 * 1024
    # The ledger's trust-policy.json (origin and checkpoint keys), pinned: the console verifies
    # ledger proofs with it. Empty: the policy the axis itself publishes (GetTrustPolicy).
    ledger_trust_policy: str = ""

    @property
    def listen(self) -> tuple[str, int]:
        return _host_port(self.address, PREFIX + "ADDRESS")

    @property
    def metrics_listen(self) -> tuple[str, int]:
        return _host_port(self.metrics_address, PREFIX + "METRICS_ADDRESS")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        crls = env.get(PREFIX + "CRL_FILES", "")
        settings = cls(
            address=env.get(PREFIX + "ADDRESS", "127.0.0.1:8443"),
            metrics_address=env.get(PREFIX + "METRICS_ADDRESS", "127.0.0.1:9464"),
            grpc_target=env.get(PREFIX + "GRPC_TARGET", "127.0.0.1:50051"),
            grpc_server_name=env.get(PREFIX + "GRPC_SERVER_NAME", "").strip(),
            tls_cert_file=_required(env, "TLS_CERT_FILE"),
            tls_key_file=_required(env, "TLS_KEY_FILE"),
            tls_client_ca_file=_required(env, "TLS_CLIENT_CA_FILE"),
            client_cert_file=_required(env, "CLIENT_CERT_FILE"),
            client_key_file=_required(env, "CLIENT_KEY_FILE"),
            crl_files=tuple(path for path in crls.split(os.pathsep) if path.strip()),
            call_timeout_s=_number(env, "CALL_TIMEOUT_S", 60.0),
            admin_idle_s=_number(env, "ADMIN_IDLE_S", 1800.0),
            header_timeout_s=_number(env, "HEADER_TIMEOUT_S", 10.0),
            body_grace_s=_number(env, "BODY_GRACE_S", 30.0),
            body_min_rate=_number(env, "BODY_MIN_RATE", 16 * 1024),
            ledger_trust_policy=env.get(PREFIX + "LEDGER_TRUST_POLICY", "").strip(),
        )
        settings.listen  # noqa: B018 - validates the address now, not at bind time
        settings.metrics_listen  # noqa: B018
        return settings
