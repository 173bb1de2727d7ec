"""C2SP tlog-cosignature v1: a witness's timestamped Ed25519 signature over a checkpoint.

A cosignature is a note signature line whose key id uses signature type 0x04 and whose signature
is `u64 timestamp || Ed25519 signature` over::

    cosignature/v1
    time <timestamp>
    <the whole checkpoint body>

It states that, as of `timestamp`, this is the largest consistent tree the witness has seen for
the log. Verifiers of the log key ignore these lines (another key id), so cosigned notes stay
readable by any signed-note verifier.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from docaxis_client.ledger.note import (
    KeyFormatError,
    MalformedNoteError,
    NoteError,
    NoteSignature,
    compute_key_id,
    is_valid_key_name,
    parse_note,
)

ALG_COSIGNATURE_V1 = 0x04
_HEADER = "cosignature/v1\n"
_PRIVATE_PREFIX = "PRIVATE+KEY+"
MAX_TIMESTAMP = (1 << 63) - 1


class InvalidCosignatureError(NoteError):
    """A cosignature from a known witness key did not verify: the note is not trusted."""

    reason = "COSIGNATURE_INVALID"


def cosigned_message(checkpoint_text: str, timestamp: int) -> bytes:
    return f"{_HEADER}time {timestamp}\n{checkpoint_text}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _decode_key(text: str, what: str) -> tuple[str, str, bytes]:
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise KeyFormatError(f"a {what} has three '+'-separated parts")
    name, hex_id, key_b64 = parts
    if not is_valid_key_name(name):
        raise KeyFormatError(f"invalid key name {name!r}")
    try:
        raw = base64.b64decode(key_b64, validate=True)
    except ValueError as exc:
        raise KeyFormatError(f"{what}: invalid base64") from exc
    if _b64(raw) != key_b64 or len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
        raise KeyFormatError(f"{what}: only cosignature/v1 Ed25519 keys (type 0x04) are supported")
    return name, hex_id, raw[1:]


@dataclass(frozen=True, slots=True)
class CosignerVerifier:
    """A witness's public key, `<name>+<hex key id>+<base64(0x04 || Ed25519 key)>`."""

    name: str
    public_key: bytes
    key_id: bytes = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise KeyFormatError(f"invalid key name {self.name!r}")
        try:
            key = Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError as exc:
            raise KeyFormatError("not an Ed25519 public key") from exc
        key_id = compute_key_id(self.name, ALG_COSIGNATURE_V1, self.public_key)
        object.__setattr__(self, "key_id", key_id)
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Self:
        name, hex_id, public_key = _decode_key(vkey, "witness verifier key")
        verifier = cls(name, public_key)
        if verifier.key_id.hex() != hex_id:
            raise KeyFormatError(f"key id {hex_id} does not match the witness key")
        return verifier

    @property
    def vkey(self) -> str:
        return (
            f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_COSIGNATURE_V1]) + self.public_key)}"
        )

    def timestamp_of(self, checkpoint_text: str, signature: NoteSignature) -> int:
        """The cosignature's timestamp if it is this witness's valid signature on the text."""
        raw = signature.signature
        if len(raw) != 8 + 64:
            raise InvalidCosignatureError(f"cosignature by {self.name} has the wrong length")
        timestamp = int.from_bytes(raw[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            raise InvalidCosignatureError(f"cosignature by {self.name}: timestamp out of range")
        try:
            self._key.verify(raw[8:], cosigned_message(checkpoint_text, timestamp))
        except InvalidSignature:
            raise InvalidCosignatureError(f"invalid cosignature by {self.name}") from None
        return timestamp


class Cosigner:
    """A witness's private key; text form `PRIVATE+KEY+<name>+<hex id>+<base64(0x04 || seed)>`."""

    __slots__ = ("_key", "verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.verifier = CosignerVerifier(name, private_key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, name: str) -> Self:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> Self:
        if not skey.startswith(_PRIVATE_PREFIX):
            raise KeyFormatError("a witness signer key starts with PRIVATE+KEY+")
        name, hex_id, seed = _decode_key(skey.removeprefix(_PRIVATE_PREFIX), "witness signer key")
        cosigner = cls(name, Ed25519PrivateKey.from_private_bytes(seed))
        if cosigner.verifier.key_id.hex() != hex_id:
            raise KeyFormatError(f"key id {hex_id} does not match the witness key")
        return cosigner

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def skey(self) -> str:
        seed = self._key.private_bytes_raw()
        key = _b64(bytes([ALG_COSIGNATURE_V1]) + seed)
        return f"{_PRIVATE_PREFIX}{self.name}+{self.verifier.key_id.hex()}+{key}"

    def cosign(self, checkpoint_text: str, when: dt.datetime) -> NoteSignature:
        timestamp = int(when.timestamp())
        signature = self._key.sign(cosigned_message(checkpoint_text, timestamp))
        raw = timestamp.to_bytes(8, "big") + signature
        return NoteSignature(self.name, self.verifier.key_id, raw)

    def __repr__(self) -> str:
        return f"Cosigner({self.verifier.vkey!r})"  # never the private key


def parse_signature_lines(text: bytes) -> list[NoteSignature]:
    """Signature lines as a witness returns them (tlog-witness add-checkpoint response body)."""
    dummy = b"x\n\n" + text
    try:
        _, sigs = parse_note(dummy)
    except MalformedNoteError as exc:
        raise MalformedNoteError(f"not note signature lines: {exc}") from exc
    return sigs


def verified_cosignatures(
    note: bytes, witnesses: Iterable[CosignerVerifier]
) -> dict[CosignerVerifier, dt.datetime]:
    """Each known witness that cosigned the note, with its timestamp; unknown keys are ignored,
    a bad cosignature from a known key raises (as a bad log signature does)."""
    text, sigs = parse_note(note)
    known = {(w.name, w.key_id): w for w in witnesses}
    found: dict[CosignerVerifier, dt.datetime] = {}
    for sig in sigs:
        witness = known.get((sig.name, sig.key_id))
        if witness is None or witness in found:
            continue
        timestamp = witness.timestamp_of(text, sig)
        found[witness] = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return found


def merge_signatures(note: bytes, extra: Iterable[NoteSignature]) -> bytes:
    """The note with `extra` signature lines appended (those it already carries are skipped)."""
    text, sigs = parse_note(note)
    present = {(s.name, s.key_id) for s in sigs}
    lines = [s.line for s in sigs]
    for sig in extra:
        if (sig.name, sig.key_id) not in present:
            present.add((sig.name, sig.key_id))
            lines.append(sig.line)
    return (text + "\n" + "".join(lines)).encode("utf-8")
