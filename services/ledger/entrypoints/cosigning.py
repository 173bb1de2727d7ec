"""Collecting witness cosignatures for the log's checkpoints (C2SP tlog-witness, client side).

After each new checkpoint, every configured witness is sent it with a consistency proof from the
size that witness last cosigned. A 409 tells us that size (we may not know it after a restart):
the request is retried once with the right proof. A witness that refuses a proof, or holds
another root for the same size, has evidence of a fork: that is logged as an error and counted
(docaxis_ledger_forks{source="witness"}). Cosignatures are verified before they are stored;
readers serve only checkpoints that reached the quorum.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import structlog

from docaxis_client.ledger.cosignature import (
    merge_signatures,
    parse_signature_lines,
    verified_cosignatures,
)
from docaxis_client.ledger.note import NoteError
from services.common.metrics import AxisMetrics, ForkSource
from services.ledger.service_layer.ports import (
    CheckpointsToCosign,
    CosignatureStore,
    StoredCheckpoint,
)
from services.ledger.witnesses import WitnessEndpoint
from services.witness.domain import format_request

log = structlog.get_logger(__name__)

TIMEOUT_S = 5.0


class WitnessCollector:
    def __init__(
        self,
        reader: CheckpointsToCosign,
        writer: CosignatureStore,
        witnesses: Sequence[WitnessEndpoint],
        http: httpx.AsyncClient,
        metrics: AxisMetrics | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._witnesses = list(witnesses)
        self._http = http
        self._metrics = metrics
        self._known_size: dict[str, int] = {}  # what each witness last cosigned, as far as we know
        self._cosigned: dict[str, int] = {}  # the largest size we hold its cosignature for

    async def collect(self) -> None:
        """One round: every witness is asked for the newest checkpoint it has not cosigned."""
        latest = await self._reader.latest_signed_checkpoint()
        if latest is None:
            return
        await asyncio.gather(*(self._ask(w, latest) for w in self._witnesses))

    async def _ask(self, witness: WitnessEndpoint, checkpoint: StoredCheckpoint) -> None:
        if self._cosigned.get(witness.name, -1) >= checkpoint.size:
            return
        old = self._known_size.get(witness.name, 0)
        for _ in range(2):  # a 409 teaches us the witness's size: one retry with its proof
            if old > checkpoint.size:
                log.error(
                    "witness_ahead_of_log",
                    witness=witness.name,
                    witness_size=old,
                    log_size=checkpoint.size,
                )
                self._fork()
                return
            proof = (
                []
                if old in (0, checkpoint.size)
                else await self._reader.consistency_proof(old, checkpoint.size)
            )
            try:
                response = await self._http.post(
                    f"{witness.url}/add-checkpoint",
                    content=format_request(old, proof, checkpoint.note),
                    timeout=TIMEOUT_S,
                )
            except httpx.HTTPError as exc:
                log.warning("witness_unreachable", witness=witness.name, error=repr(exc))
                self._failed(witness)
                return
            if response.status_code == 200:
                await self._store(witness, checkpoint, response.content)
                return
            if response.status_code == 409:
                told = _size_of(response)
                if told is None:
                    break
                if told == old == checkpoint.size:
                    # It holds this size with another root: the log showed it a different tree.
                    log.error("witness_holds_another_root", witness=witness.name, size=told)
                    self._fork()
                    return
                self._known_size[witness.name] = old = told
                continue
            if response.status_code == 422:
                log.error(
                    "witness_refused_consistency",
                    witness=witness.name,
                    old_size=old,
                    size=checkpoint.size,
                    detail=response.text[:200],
                )
                self._fork()
                return
            break
        log.warning(
            "witness_refused",
            witness=witness.name,
            status=response.status_code,
            detail=response.text[:200],
        )
        self._failed(witness)

    async def _store(
        self, witness: WitnessEndpoint, checkpoint: StoredCheckpoint, body: bytes
    ) -> None:
        try:
            signatures = parse_signature_lines(body)
            cosigned = merge_signatures(checkpoint.note, signatures)
            found = verified_cosignatures(cosigned, [witness.verifier])
        except NoteError as exc:
            log.warning("witness_bad_cosignature", witness=witness.name, error=str(exc))
            self._failed(witness)
            return
        when = found.get(witness.verifier)
        if when is None:
            log.warning("witness_cosigned_with_another_key", witness=witness.name)
            self._failed(witness)
            return
        line = next(
            s.line
            for s in signatures
            if (s.name, s.key_id) == (witness.name, witness.verifier.key_id)
        )
        await self._writer.store_cosignatures(
            checkpoint.size, [(witness.verifier.vkey, line, when)]
        )
        self._known_size[witness.name] = self._cosigned[witness.name] = checkpoint.size
        if self._metrics is not None:
            self._metrics.witness_answered(witness.name, cosigned=True)
        log.debug("checkpoint_cosigned", witness=witness.name, size=checkpoint.size)

    def _failed(self, witness: WitnessEndpoint) -> None:
        if self._metrics is not None:
            self._metrics.witness_answered(witness.name, cosigned=False)

    def _fork(self) -> None:
        if self._metrics is not None:
            self._metrics.ledger_fork(ForkSource.WITNESS)


def _size_of(response: httpx.Response) -> int | None:
    text = response.text.strip()
    return int(text) if text.isdigit() else None
