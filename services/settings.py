"""Process settings, read once at startup from an injectable environment mapping."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from services.common.config import ConfigError, read_bool, read_float, read_int, require
from services.common.limits import LimitSettings
from services.directory.domain.codes import CodeForm, parse_forms
from services.directory.domain.hubs import hub_code_problem
from services.exchange.domain.model import DEFAULT_MAX_ATTACHMENT_BYTES, DEFAULT_MAX_PUSHES
from services.exchange.domain.notices import DEFAULT_COALESCE_AFTER, DEFAULT_MAX_PENDING_NOTICES
from services.exchange.domain.peering import DEFAULT_REFUSAL_WINDOW_S
from services.exchange.domain.quota import DEFAULT_UPLOAD_QUOTA_BYTES
from services.ledger.witnesses import WitnessEndpoint, parse_witnesses
from services.national.settings import NationalAxisSettings

DEFAULT_GRPC_ADDRESS = "127.0.0.1:50051"
DEFAULT_LEDGER_ORIGIN = "ledger.docaxis.local/v1"
# The demo PKI `make run` creates (docaxis pki dev-setup); DEMO ONLY.
DEFAULT_PKI_DIR = Path(__file__).resolve().parent.parent / ".local" / "dev" / "pki"
_WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104  # recognised, not bound
# Set by `docaxis run` in the environment of each worker process it starts.
WORKER_INDEX_ENV = "DOCAXIS_WORKER_INDEX"


@dataclass(frozen=True, slots=True)
class Settings:
    grpc_address: str
    database_url: str = field(repr=False)
    # Needed by the exchange only (checked when a process is planned to serve it).
    amqp_url: str | None = field(default=None, repr=False)
    # Where the exchange finds DirectoryService; None means "in this process".
    directory_address: str | None = None
    # Plaintext gRPC with caller identity taken from request headers: development only.
    dev_insecure: bool = False
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
    # Pushes (or pull-mode fetches) of one copy without an acknowledgement before delivery gives
    # up on it: the copy is dead-lettered until an administrator resends it (domain.md §10.1).
    max_pushes: int = DEFAULT_MAX_PUSHES
    # How often the exchange looks for mail waiting for an agency a reorganisation has closed
    # since, and moves it to the successor (services/exchange/service_layer/reroute.py).
    reroute_interval_s: float = 30.0
    # An unfinished resumable upload untouched this long is deleted with its chunks.
    upload_ttl_s: float = 7 * 86400.0
    # Bytes an agency may hold in uploads no document uses (until they expire after the TTL).
    upload_quota_bytes: int = DEFAULT_UPLOAD_QUOTA_BYTES
    code_forms: frozenset[CodeForm] = frozenset({CodeForm.QCVN102, CodeForm.QD20})
    shutdown_grace_s: float = 10.0
    health_interval_s: float = 1.0
    # Plain-HTTP /livez and /readyz for an orchestrator (services/common/probes.py); None: none.
    # Bind it where only the orchestrator reaches (a pod's port, loopback for systemd).
    probe_address: str | None = None
    log_level: str = "INFO"
    # The log's name in its checkpoints; an auditor pins it.
    ledger_origin: str = DEFAULT_LEDGER_ORIGIN
    # File holding the checkpoint signing key(s), one C2SP signer key per line (several lines:
    # dual-signing while a key rotates). Required to serve the ledger.
    ledger_key_file: str | None = None
    ledger_checkpoint_interval_s: float = 1.0
    # Witnesses asked to cosign each checkpoint (C2SP tlog-witness), and how many cosignatures a
    # checkpoint needs before it is served (receipts, GetCheckpoint, tiles). Default quorum: all.
    ledger_witnesses: tuple[WitnessEndpoint, ...] = ()
    ledger_witness_quorum: int = 0
    # Run each pool under its narrow database role (app_writer, ledger_sequencer, ledger_reader)
    # rather than as the connecting user; turn off only for a user that cannot SET ROLE.
    database_roles: bool = True
    # Mutual TLS: the server's certificate chain and key, and the trust anchors (a PEM bundle of
    # one or more roots, optionally with their issuing CAs) that client certificates and document
    # signatures must chain to. Paths only: the key is read from its file, never from the env.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    # Extra CRLs (PEM or DER files) loaded at startup, on top of those ingested at runtime.
    crl_files: tuple[str, ...] = ()
    # The hub's own identity: signs transport receipts and authenticates the exchange to a
    # separate directory process.
    hub_cert_file: str | None = None
    hub_key_file: str | None = None
    # How far back a document signature may be dated when it is submitted (narrows backdating).
    max_signature_age_s: float = 30 * 86400
    # Ask the OCSP responder a signer's certificate names (the network: off unless enabled);
    # CRLs the axis holds are checked either way.
    ocsp_enabled: bool = False
    ocsp_timeout_s: float = 5.0
    # PEM bundle of the time-stamping authorities' anchors (the national CA's TSA): RFC 3161
    # timestamps in signed PDFs are trusted only through these; unset, a timestamped PDF is
    # refused (TIMESTAMP_INVALID).
    tsa_ca_file: str | None = None
    # Certificates expiring within this many days are warned about at startup.
    cert_warning_days: int = 30
    # Status notices waiting for one sender, at most; past it new statuses are recorded but not
    # queued as notices (services/exchange/domain/notices.py).
    max_pending_notices: int = DEFAULT_MAX_PENDING_NOTICES
    # From this many notices waiting for a sender on, a copy's status notice it has not been
    # handed yet is replaced by the copy's next one (coalesced).
    coalesce_notices_after: int = DEFAULT_COALESCE_AFTER
    # A Receive stream's broker channel, once the stream ends, waits this long for the next
    # stream before it is closed (services/exchange/adapters/rabbit.py, RabbitInbox).
    stream_channel_idle_s: float = 60.0
    # Worker processes of `docaxis run` serving one address (SO_REUSEPORT), to use every core.
    workers: int = 1
    # Which of them this process is (set by `docaxis run` for the ones it starts): the first
    # (0) alone runs the singletons (ledger writer, reroute and upload sweeps).
    worker_index: int = 0
    # Federation (domain.md §1): this hub's code among its peers, the peer hubs it exchanges with
    # (code → gRPC address), and how often their directories are pulled (SyncAgencies).
    hub_code: str = ""
    peers: tuple[tuple[str, str], ...] = ()
    peer_sync_interval_s: float = 30.0
    # Abuse limits per agency and per connection (services/common/limits.py).
    limits: LimitSettings = field(default_factory=LimitSettings)
    # This hub's certificate towards its peers (urn:docaxis:peer:<hub code>) and its key; needed
    # with mutual TLS when peers are configured.
    peer_cert_file: str | None = None
    peer_key_file: str | None = None
    # Forwarding to a peer: attempts of one copy before it is dead-lettered come from
    # max_pushes; the circuit opens after this many failures in a row.
    peer_failures_to_open: int = 5
    # The longest back-off between attempts to reach a peer (jittered exponential below it).
    peer_max_backoff_s: float = 60.0
    # How long after its acceptance a copy a peer refuses because its directory does not know
    # the recipient (yet) is still handed over again, with back-off; then the refusal is final.
    peer_refusal_window_s: float = DEFAULT_REFUSAL_WINDOW_S
    # A national axis this hub sits under (DOCAXIS_NATIONAL_AXIS*, services/national/).
    national_axis: NationalAxisSettings | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def signatures_required(self) -> bool:
        """Unsigned documents are refused everywhere but in development mode."""
        return not self.dev_insecure

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        try:
            forms = parse_forms(env.get("DOCAXIS_CODE_FORMS", "").strip() or "qcvn102,qd20")
        except ValueError as exc:
            raise ConfigError(f"DOCAXIS_CODE_FORMS: {exc}") from None
        witnesses = parse_witnesses(env.get("DOCAXIS_LEDGER_WITNESSES", ""))
        settings = cls(
            grpc_address=env.get("DOCAXIS_GRPC_ADDRESS", DEFAULT_GRPC_ADDRESS),
            database_url=require(env, "DOCAXIS_DATABASE_URL"),
            amqp_url=env.get("DOCAXIS_AMQP_URL", "").strip() or None,
            directory_address=env.get("DOCAXIS_DIRECTORY_ADDRESS") or None,
            dev_insecure=read_bool(env, "DOCAXIS_DEV_INSECURE", False),
            max_attachment_bytes=read_int(
                env, "DOCAXIS_MAX_ATTACHMENT_BYTES", DEFAULT_MAX_ATTACHMENT_BYTES
            ),
            max_pushes=read_int(env, "DOCAXIS_MAX_PUSHES", DEFAULT_MAX_PUSHES),
            reroute_interval_s=read_float(env, "DOCAXIS_REROUTE_INTERVAL_S", 30.0),
            upload_ttl_s=read_float(env, "DOCAXIS_UPLOAD_TTL_S", 7 * 86400.0),
            upload_quota_bytes=read_int(
                env, "DOCAXIS_UPLOAD_QUOTA_BYTES", DEFAULT_UPLOAD_QUOTA_BYTES
            ),
            code_forms=forms,
            shutdown_grace_s=read_float(env, "DOCAXIS_SHUTDOWN_GRACE_S", 10.0),
            health_interval_s=read_float(env, "DOCAXIS_HEALTH_INTERVAL_S", 1.0),
            probe_address=_host_port(env, "DOCAXIS_PROBE_ADDRESS"),
            log_level=env.get("DOCAXIS_LOG_LEVEL", "INFO"),
            ledger_origin=env.get("DOCAXIS_LEDGER_ORIGIN", DEFAULT_LEDGER_ORIGIN),
            ledger_key_file=env.get("DOCAXIS_LEDGER_KEY_FILE") or None,
            ledger_checkpoint_interval_s=read_float(
                env, "DOCAXIS_LEDGER_CHECKPOINT_INTERVAL_S", 1.0
            ),
            ledger_witnesses=witnesses,
            ledger_witness_quorum=read_int(env, "DOCAXIS_LEDGER_WITNESS_QUORUM", len(witnesses)),
            database_roles=read_bool(env, "DOCAXIS_DATABASE_ROLES", True),
            tls_cert_file=env.get("DOCAXIS_TLS_CERT_FILE") or None,
            tls_key_file=env.get("DOCAXIS_TLS_KEY_FILE") or None,
            tls_client_ca_file=env.get("DOCAXIS_TLS_CLIENT_CA_FILE") or None,
            crl_files=tuple(
                path.strip() for path in env.get("DOCAXIS_CRL_FILES", "").split(",") if path.strip()
            ),
            hub_cert_file=env.get("DOCAXIS_HUB_CERT_FILE") or None,
            hub_key_file=env.get("DOCAXIS_HUB_KEY_FILE") or None,
            max_signature_age_s=read_float(env, "DOCAXIS_MAX_SIGNATURE_AGE_S", 30 * 86400),
            ocsp_enabled=read_bool(env, "DOCAXIS_OCSP", False),
            ocsp_timeout_s=read_float(env, "DOCAXIS_OCSP_TIMEOUT_S", 5.0),
            tsa_ca_file=env.get("DOCAXIS_TSA_CA_FILE") or None,
            cert_warning_days=read_int(env, "DOCAXIS_CERT_WARNING_DAYS", 30),
            max_pending_notices=read_int(
                env, "DOCAXIS_MAX_PENDING_NOTICES", DEFAULT_MAX_PENDING_NOTICES
            ),
            coalesce_notices_after=read_int(
                env, "DOCAXIS_COALESCE_NOTICES_AFTER", DEFAULT_COALESCE_AFTER
            ),
            stream_channel_idle_s=read_float(env, "DOCAXIS_STREAM_CHANNEL_IDLE_S", 60.0),
            workers=read_int(env, "DOCAXIS_WORKERS", 1),
            worker_index=read_int(env, WORKER_INDEX_ENV, 0),
            hub_code=env.get("DOCAXIS_HUB_CODE", "").strip(),
            peers=parse_peers(env.get("DOCAXIS_PEERS", "")),
            peer_sync_interval_s=read_float(env, "DOCAXIS_PEER_SYNC_INTERVAL_S", 30.0),
            limits=LimitSettings.from_env(env),
            peer_cert_file=env.get("DOCAXIS_PEER_CERT_FILE") or None,
            peer_key_file=env.get("DOCAXIS_PEER_KEY_FILE") or None,
            peer_failures_to_open=read_int(env, "DOCAXIS_PEER_FAILURES_TO_OPEN", 5),
            peer_max_backoff_s=read_float(env, "DOCAXIS_PEER_MAX_BACKOFF_S", 60.0),
            peer_refusal_window_s=read_float(
                env, "DOCAXIS_PEER_REFUSAL_WINDOW_S", DEFAULT_REFUSAL_WINDOW_S
            ),
            national_axis=NationalAxisSettings.from_env(
                env, dev_insecure=read_bool(env, "DOCAXIS_DEV_INSECURE", False)
            ),
        )
        _check_trust_settings(settings)
        if settings.max_attachment_bytes <= 0:
            raise ConfigError("DOCAXIS_MAX_ATTACHMENT_BYTES must be positive")
        if settings.upload_quota_bytes < settings.max_attachment_bytes:
            raise ConfigError(
                "DOCAXIS_UPLOAD_QUOTA_BYTES must allow at least one attachment of "
                "DOCAXIS_MAX_ATTACHMENT_BYTES"
            )
        if not 0 <= settings.ledger_witness_quorum <= len(witnesses):
            raise ConfigError(
                "DOCAXIS_LEDGER_WITNESS_QUORUM must be between 0 and the number of witnesses"
            )
        if settings.max_pushes <= 0:
            raise ConfigError("DOCAXIS_MAX_PUSHES must be positive")
        if settings.max_pending_notices <= 0:
            raise ConfigError("DOCAXIS_MAX_PENDING_NOTICES must be positive")
        if settings.coalesce_notices_after <= 0:
            raise ConfigError("DOCAXIS_COALESCE_NOTICES_AFTER must be positive")
        if not 1 <= settings.workers <= 64:
            raise ConfigError("DOCAXIS_WORKERS must be 1 to 64")
        if settings.workers > 1 and settings.grpc_address.rsplit(":", 1)[-1] == "0":
            raise ConfigError("DOCAXIS_WORKERS > 1 needs a fixed port in DOCAXIS_GRPC_ADDRESS")
        _check_federation(settings)
        for key, value, minimum in (
            ("DOCAXIS_PEER_SYNC_INTERVAL_S", settings.peer_sync_interval_s, 0.05),
            ("DOCAXIS_PEER_MAX_BACKOFF_S", settings.peer_max_backoff_s, 0.1),
            ("DOCAXIS_PEER_REFUSAL_WINDOW_S", settings.peer_refusal_window_s, 0.0),
            ("DOCAXIS_SHUTDOWN_GRACE_S", settings.shutdown_grace_s, 0.0),
            ("DOCAXIS_HEALTH_INTERVAL_S", settings.health_interval_s, 0.01),
            ("DOCAXIS_REROUTE_INTERVAL_S", settings.reroute_interval_s, 0.05),
            ("DOCAXIS_UPLOAD_TTL_S", settings.upload_ttl_s, 60.0),
            ("DOCAXIS_STREAM_CHANNEL_IDLE_S", settings.stream_channel_idle_s, 0.1),
            ("DOCAXIS_LEDGER_CHECKPOINT_INTERVAL_S", settings.ledger_checkpoint_interval_s, 0.01),
        ):
            if not math.isfinite(value) or value < minimum:
                raise ConfigError(f"{key} must be a number of seconds >= {minimum}, got {value}")
        return settings


def parse_peers(raw: str) -> tuple[tuple[str, str], ...]:
    """`national=10.0.0.5:50051,province-b=10.0.0.7:50051` as (code, address) pairs."""
    peers: list[tuple[str, str]] = []
    for part in raw.split(","):
        if not part.strip():
            continue
        code, sep, address = part.strip().partition("=")
        if not sep or not code.strip() or not address.strip():
            raise ConfigError(f"DOCAXIS_PEERS: {part.strip()!r} is not <hub code>=<host:port>")
        peers.append((code.strip(), address.strip()))
    return tuple(peers)


def _check_federation(settings: Settings) -> None:
    codes = [code for code, _ in settings.peers]
    if settings.peers and not settings.hub_code:
        raise ConfigError("DOCAXIS_PEERS needs this hub's own code: set DOCAXIS_HUB_CODE")
    for code in [settings.hub_code, *codes] if settings.hub_code else codes:
        if (why := hub_code_problem(code)) is not None:
            raise ConfigError(f"DOCAXIS_HUB_CODE/DOCAXIS_PEERS: {why}")
    if len(set(codes)) != len(codes) or settings.hub_code in codes:
        raise ConfigError("DOCAXIS_PEERS names a hub twice, or this hub itself")
    if (settings.peer_cert_file is None) != (settings.peer_key_file is None):
        raise ConfigError("DOCAXIS_PEER_CERT_FILE and DOCAXIS_PEER_KEY_FILE go together")
    if settings.peers and settings.tls and settings.peer_cert_file is None:
        raise ConfigError(
            "peer hubs over mutual TLS need this hub's peer certificate: set "
            "DOCAXIS_PEER_CERT_FILE and DOCAXIS_PEER_KEY_FILE (docaxis pki issue-peer)"
        )
    if settings.peer_failures_to_open < 1:
        raise ConfigError("DOCAXIS_PEER_FAILURES_TO_OPEN must be at least 1")
    national = settings.national_axis
    if national is not None:
        if not settings.hub_code:
            raise ConfigError("DOCAXIS_NATIONAL_AXIS needs this hub's own code: DOCAXIS_HUB_CODE")
        if (why := hub_code_problem(national.hub_code)) is not None:
            raise ConfigError(f"DOCAXIS_NATIONAL_AXIS: {why}")
        if national.hub_code in (settings.hub_code, *codes):
            raise ConfigError("DOCAXIS_NATIONAL_AXIS's hub code is this hub or a DOCAXIS_PEERS hub")


def _check_trust_settings(settings: Settings) -> None:
    """Mutual TLS and a hub identity, unless explicitly in development mode (plaintext, caller
    identities from request headers)."""
    pairs = (
        (
            "DOCAXIS_TLS_CERT_FILE",
            settings.tls_cert_file,
            "DOCAXIS_TLS_KEY_FILE",
            settings.tls_key_file,
        ),
        (
            "DOCAXIS_HUB_CERT_FILE",
            settings.hub_cert_file,
            "DOCAXIS_HUB_KEY_FILE",
            settings.hub_key_file,
        ),
    )
    for cert_key, cert, key_key, key in pairs:
        if (cert is None) != (key is None):
            raise ConfigError(f"{cert_key} and {key_key} go together")
    if settings.tls and settings.tls_client_ca_file is None:
        raise ConfigError("mutual TLS needs the client trust anchors: DOCAXIS_TLS_CLIENT_CA_FILE")
    if settings.crl_files and settings.tls_client_ca_file is None:
        raise ConfigError("DOCAXIS_CRL_FILES needs the trust anchors of DOCAXIS_TLS_CLIENT_CA_FILE")
    if settings.max_signature_age_s <= 0:
        raise ConfigError("DOCAXIS_MAX_SIGNATURE_AGE_S must be positive")
    if settings.dev_insecure:
        return
    if not settings.tls:
        raise ConfigError(
            "mutual TLS is required: set DOCAXIS_TLS_CERT_FILE, DOCAXIS_TLS_KEY_FILE and "
            "DOCAXIS_TLS_CLIENT_CA_FILE (or DOCAXIS_DEV_INSECURE=true to run plaintext with "
            "header identities, for development only)"
        )
    if settings.hub_cert_file is None:
        raise ConfigError(
            "transport receipts need the hub's signing identity: set DOCAXIS_HUB_CERT_FILE and "
            "DOCAXIS_HUB_KEY_FILE"
        )


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How the `docaxis` operator and demo commands reach a running axis (flags override these).

    Without DOCAXIS_ADDRESS they dial DOCAXIS_GRPC_ADDRESS, the address the server binds, so a
    client started with the server's settings (`make demo` after `make run`) finds it."""

    address: str
    pki_dir: Path
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        return cls(
            address=env.get("DOCAXIS_ADDRESS")
            or dialable(env.get("DOCAXIS_GRPC_ADDRESS") or DEFAULT_GRPC_ADDRESS),
            pki_dir=Path(env.get("DOCAXIS_PKI_DIR") or DEFAULT_PKI_DIR),
            ca_file=_path(env.get("DOCAXIS_CLIENT_CA_FILE")),
            cert_file=_path(env.get("DOCAXIS_CLIENT_CERT_FILE")),
            key_file=_path(env.get("DOCAXIS_CLIENT_KEY_FILE")),
            insecure=read_bool(env, "DOCAXIS_DEV_INSECURE", False),
        )


@dataclass(frozen=True, slots=True)
class LedgerExportSettings:
    """What `docaxis audit export` needs: only the database (read as the ledger reader role) and
    the log's origin, not a server's TLS and broker settings."""

    database_url: str = field(repr=False)
    database_roles: bool = True
    ledger_origin: str = DEFAULT_LEDGER_ORIGIN

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Self:
        return cls(
            database_url=require(env, "DOCAXIS_DATABASE_URL"),
            database_roles=read_bool(env, "DOCAXIS_DATABASE_ROLES", True),
            ledger_origin=env.get("DOCAXIS_LEDGER_ORIGIN", DEFAULT_LEDGER_ORIGIN),
        )


def dialable(bind_address: str) -> str:
    """The address a local client dials to reach a server bound to ``bind_address``: a wildcard
    host (all interfaces) is reached on the loopback."""
    host, _, port = bind_address.rpartition(":")
    return f"127.0.0.1:{port}" if host in _WILDCARD_HOSTS else bind_address


def _host_port(env: Mapping[str, str], key: str) -> str | None:
    """A `host:port` setting checked now rather than when it is bound; empty means unset."""
    raw = env.get(key, "").strip()
    if not raw:
        return None
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{key} must be host:port, got {raw!r}")
    return raw


def _path(raw: str | None) -> Path | None:
    return Path(raw) if raw else None
