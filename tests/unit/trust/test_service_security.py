"""The hub identity and certificate expiry checks a docaxis process runs at startup."""

from __future__ import annotations

import datetime as dt

import pytest
import structlog

from docaxis_client.trust import Role
from docaxis_client.trust.demo_pki import DemoCA, KeyType
from services.common.config import ConfigError
from services.common.trust import TrustRegistry, warn_expiring
from services.security import check_hub_identity


def test_the_hub_identity_is_checked_before_serving(
    fresh_ca: DemoCA, registry: TrustRegistry
) -> None:
    check_hub_identity(fresh_ca.issue_role(Role.HUB, "hub").identity(), registry)
    check_hub_identity(
        fresh_ca.issue_role(Role.HUB, "hub", key_type=KeyType.ED25519).identity(), registry
    )
    with pytest.raises(ConfigError, match="Ed25519 or P-256"):
        check_hub_identity(
            fresh_ca.issue_role(Role.HUB, "hub", key_type=KeyType.RSA2048).identity(), registry
        )
    with pytest.raises(ConfigError, match="not a hub certificate"):
        check_hub_identity(fresh_ca.issue_role(Role.ADMIN, "admin").identity(), registry)
    with pytest.raises(ConfigError, match="UNTRUSTED_ISSUER"):
        check_hub_identity(DemoCA.create().issue_role(Role.HUB, "hub").identity(), registry)


def test_certificates_close_to_expiry_are_warned_about(fresh_ca: DemoCA) -> None:
    now = dt.datetime.now(dt.UTC)
    soon = fresh_ca.issue_server(not_after=now + dt.timedelta(days=10)).certificate
    later = fresh_ca.issue_role(Role.HUB, "hub").certificate
    with structlog.testing.capture_logs() as logs:
        warn_expiring([("tls server", soon), ("hub", later)], within_days=30)
    assert [(e["event"], e["purpose"], e["days_left"]) for e in logs] == [
        ("certificate_expiring", "tls server", 9)
    ]
