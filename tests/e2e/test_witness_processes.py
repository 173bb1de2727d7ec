"""Ledger trust end to end: two `docaxis witness run` processes cosign the axis's checkpoints,
a client's monitor follows them, the gateway serves the log as C2SP tlog-tiles that an
independent reader verifies, and a forked checkpoint is refused by a witness and detected (and
reported) by a client."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import subprocess
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from docaxis_client.ledger.cosignature import CosignerVerifier
from docaxis_client.ledger.monitor import LedgerForkError
from docaxis_client.ledger.note import (
    Checkpoint,
    NoteSigner,
    parse_checkpoint,
    parse_note,
    sign_checkpoint,
)
from docaxis_client.ledger.policy import LogKey, QuorumNotMetError, TrustPolicy, WitnessKey
from services.settings import DEFAULT_LEDGER_ORIGIN
from services.witness.domain import format_request
from tests.conftest import make_header
from tests.e2e.conftest import register
from tests.e2e.processes import DOCAXIS, AxisProcess, GatewayProcess, _ChildProcess, free_port
from tests.exposition import sample
from tests.infra import SuiteServices
from tests.pki import SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

# The eight RFC 6962 test leaves and the root they make (ledger.md section 2).
RFC6962_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
RFC6962_ROOT = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


class WitnessProcess(_ChildProcess):
    """`docaxis witness run` with a fresh key, following the axis's log key."""

    def __init__(self, log_dir: Path, number: int, log_vkey: str) -> None:
        self._log_dir = log_dir
        self._name = f"witness-{number}"
        key = log_dir / f"{self._name}.key"
        subprocess.run(
            [
                *(str(DOCAXIS), "witness", "keygen", "--name", f"{self._name}.e2e.example"),
                *("--out", str(key)),
            ],
            check=True,
            capture_output=True,
        )
        vkey = subprocess.run(
            [str(DOCAXIS), "witness", "vkey", "--key-file", str(key)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        self.verifier = CosignerVerifier.from_vkey(vkey)
        self.state = log_dir / f"{self._name}-state"
        self.url = f"http://127.0.0.1:{free_port()}"
        self._command = [
            *(str(DOCAXIS), "witness", "run", "--key-file", str(key)),
            *("--log-vkey", log_vkey, "--state", str(self.state)),
            *("--address", self.url.removeprefix("http://")),
        ]

    @property
    def log_path(self) -> Path:
        return self._log_dir / f"{self._name}.log"

    async def start(self) -> None:
        self._spawn(self._command, {"PATH": "/usr/bin:/bin"})

        async def answers() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    response = await http.get(f"{self.url}/add-checkpoint")
                    return response.status_code == 405
            except httpx.HTTPError:
                return False

        await eventually(answers, lambda up: up, within=30)


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle Tree Hash over leaf hashes, written from the RFC (not docaxis's code)."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def tile_index(n: int) -> str:
    """The C2SP tlog-tiles path element for index n."""
    groups = [f"{n % 1000:03d}"]
    while n >= 1000:
        n //= 1000
        groups.append(f"x{n % 1000:03d}")
    return "/".join(reversed(groups))


async def read_log_over_http(http: httpx.AsyncClient) -> tuple[bytes, int, bytes, list[bytes]]:
    """An independent reader of C2SP tlog-tiles: the checkpoint, then every entry bundle and
    the level-0 tiles; returns (note, size, root, bodies) after checking the tiles against the
    bundles and the root against the checkpoint."""
    assert mth([leaf(x) for x in RFC6962_LEAVES]).hex() == RFC6962_ROOT  # the reader's hashing
    note = (await http.get("/ledger/checkpoint")).content
    body, _, _ = note.partition(b"\n\n")
    origin, size_text, root_b64 = body.decode().split("\n")[:3]
    size, root = int(size_text), base64.b64decode(root_b64)
    bodies: list[bytes] = []
    hashes: list[bytes] = []
    for n in range((size + 255) // 256):
        width = min(256, size - n * 256)
        suffix = "" if width == 256 else f".p/{width}"
        bundle = await http.get(f"/ledger/tile/entries/{tile_index(n)}{suffix}")
        assert bundle.status_code == 200, bundle.text
        data, pos = bundle.content, 0
        while pos < len(data):
            length = int.from_bytes(data[pos : pos + 2], "big")
            bodies.append(data[pos + 2 : pos + 2 + length])
            pos += 2 + length
        tile = await http.get(f"/ledger/tile/0/{tile_index(n)}{suffix}")
        assert tile.status_code == 200, tile.text
        hashes += [tile.content[i : i + 32] for i in range(0, len(tile.content), 32)]
    assert len(bodies) == len(hashes) == size
    assert [leaf(b) for b in bodies] == hashes  # level-0 tiles are the bundles' leaf hashes
    assert mth(hashes) == root  # and the checkpoint's root is theirs
    assert origin == DEFAULT_LEDGER_ORIGIN
    return note, size, root, bodies


async def test_two_witnesses_cosign_tiles_verify_and_a_fork_is_refused_and_detected(
    e2e_database_url: str,
    services: SuiteServices,
    tmp_path: Path,
    ledger_key_file: Path,
    pki: SuitePki,
) -> None:
    signer = NoteSigner.from_skey(ledger_key_file.read_text().strip())
    witnesses = [WitnessProcess(tmp_path, n, signer.verifier.vkey) for n in (1, 2)]
    for witness in witnesses:
        await witness.start()
    axis = AxisProcess(
        e2e_database_url,
        services.amqp_url,
        tmp_path,
        ledger_key_file,
        pki=pki,
        extra_env={
            "DOCAXIS_LEDGER_WITNESSES": ",".join(f"{w.url} {w.verifier.vkey}" for w in witnesses),
            "DOCAXIS_LEDGER_WITNESS_QUORUM": "2",
        },
    )
    gateway: GatewayProcess | None = None
    try:
        await axis.start()
        sender, recipient = await register(axis, 2)
        policy = TrustPolicy(
            DEFAULT_LEDGER_ORIGIN,
            (LogKey(signer.verifier),),
            tuple(WitnessKey(w.verifier) for w in witnesses),
            2,
        )
        async with axis.client(sender) as dms:
            monitor = dms.monitor_ledger(policy)
            submitted = await dms.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
            document = submitted.receipt.document_uuid
            # Every response carries the latest cosigned checkpoint; the monitor checks each.
            await eventually(
                lambda: dms.track(document),
                lambda track: bool(track.ledger_checkpoint),
                within=30,
            )
            first = monitor.latest()
            assert first is not None
            assert set(policy.open(first).cosigned_at) == {w.verifier.name for w in witnesses}
            await dms.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
            await eventually(
                lambda: dms.track(document),
                lambda _: (
                    parse_checkpoint(parse_note(monitor.latest() or first)[0]).size
                    > parse_checkpoint(parse_note(first)[0]).size
                ),
                within=30,
            )
            held = monitor.latest()
            assert held is not None
            size = parse_checkpoint(parse_note(held)[0]).size

            # The operator (who holds the log key) shows witness 1 another root for a size it
            # cosigned: refused with 409, evidence kept.
            forked = sign_checkpoint(
                Checkpoint(DEFAULT_LEDGER_ORIGIN, size, b"\x42" * 32), [signer]
            )
            async with httpx.AsyncClient() as http:
                probe = await http.post(
                    f"{witnesses[0].url}/add-checkpoint", content=format_request(0, [], forked)
                )
                assert probe.status_code == 409
                witness_size = int(probe.text)
                forked = sign_checkpoint(
                    Checkpoint(DEFAULT_LEDGER_ORIGIN, witness_size, b"\x42" * 32), [signer]
                )
                refused = await http.post(
                    f"{witnesses[0].url}/add-checkpoint",
                    content=format_request(witness_size, [], forked),
                )
            assert refused.status_code == 409
            (evidence,) = (witnesses[0].state / "forks").iterdir()
            assert json.loads(evidence.read_text())["shown_note"].encode() == forked

            # Without the witnesses' cosignatures the client's policy refuses it outright...
            with pytest.raises(QuorumNotMetError):
                await monitor.observe(forked)
            # ...and a client trusting the log key alone still catches the split view against
            # what it holds, and reports it to the hub's administrators.
            key_only = dms.monitor_ledger(TrustPolicy(DEFAULT_LEDGER_ORIGIN, policy.log_keys))
            await key_only.observe(held)
            split = sign_checkpoint(Checkpoint(DEFAULT_LEDGER_ORIGIN, size, b"\x42" * 32), [signer])
            with pytest.raises(LedgerForkError, match=f"two roots for size {size}") as caught:
                await key_only.observe(split)
            assert caught.value.reason == "LEDGER_FORK"

        db = await asyncpg.connect(e2e_database_url)
        try:
            assert await db.fetchval("SELECT count(*) FROM ledger.fork_report") == 1
        finally:
            await db.close()

        # The gateway serves the log as tlog-tiles; an independent reader verifies it.
        gateway = GatewayProcess(axis, tmp_path)
        await gateway.start()
        pair = pki.write_pair(f"tiles-{recipient}", pki.agency(recipient).agency)
        context = ssl.create_default_context(cafile=str(pki.bundle))
        context.load_cert_chain(str(pair.certificate), str(pair.key))
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{gateway.port}", verify=context, timeout=30
        ) as http:
            note, tiled_size, _, bodies = await read_log_over_http(http)
        assert tiled_size >= size
        assert policy.open(note).checkpoint.size == tiled_size
        assert any(json.loads(b).get("doc") == document for b in bodies)
        async with httpx.AsyncClient(base_url=gateway.probes_url) as probes:
            metrics = (await probes.get("/metrics")).text
        assert sample(metrics, "docaxis_ledger_forks_total", source="client") == 1
        assert (
            sample(metrics, "docaxis_ledger_cosignatures_total", witness=witnesses[0].verifier.name)
            or 0
        ) >= 2
    finally:
        if gateway is not None:
            assert await gateway.terminate() == 0, gateway.logs()
        assert await axis.terminate() == 0, axis.logs()
        for witness in witnesses:
            assert await witness.terminate() == 0, witness.logs()
