"""C2SP signed-note with Ed25519 keys, and the C2SP tlog-checkpoint body carried in it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from docaxis_client.ledger.merkle import HASH_SIZE, MAX_TREE_SIZE

ALG_ED25519 = 0x01
KEY_ID_SIZE = 4
# The spec asks verifiers to accept at least 16 signatures; the Go reference stops at 100, and so
# do we, so a note Go accepts we accept too. The size cap bounds work before any parsing.
MAX_SIGNATURES = 100
MAX_NOTE_SIZE = 1 << 20
SIGNATURE_PREFIX = "\u2014 "  # em dash, space

_PRIVATE_PREFIX = "PRIVATE+KEY+"
_HEX_ID = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class NoteError(ValueError):
    """A signed note or key could not be parsed or verified; `reason` is machine-readable."""

    reason = "NOTE_INVALID"


class KeyFormatError(NoteError):
    reason = "KEY_MALFORMED"


class MalformedNoteError(NoteError):
    reason = "NOTE_MALFORMED"


class InvalidSignatureError(NoteError):
    """A signature from a known key did not verify: the whole note is rejected."""

    reason = "SIGNATURE_INVALID"

    def __init__(self, name: str, key_id: bytes) -> None:
        super().__init__(f"invalid signature for key {name}+{key_id.hex()}")
        self.name = name
        self.key_id = key_id


class UnverifiedNoteError(NoteError):
    """The note parsed but no known key signed it."""

    reason = "NOTE_UNVERIFIED"


class CheckpointError(NoteError):
    """The note text is not a well-formed checkpoint, or not for the expected origin."""

    reason = "CHECKPOINT_INVALID"


class CheckpointOriginError(CheckpointError):
    """A valid checkpoint, but of another log."""

    reason = "CHECKPOINT_WRONG_ORIGIN"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode_strict(text: str) -> bytes:
    """Standard base64 with padding, and only its canonical form (no ignored trailing bits)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64 {text[:16]!r}") from exc
    if _b64(raw) != text:
        raise ValueError(f"non-canonical base64 {text[:16]!r}")
    return raw


def is_valid_key_name(name: str) -> bool:
    """Non-empty, no Unicode whitespace, no '+' (the separator of the key encodings)."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def compute_key_id(name: str, alg: int, public_key: bytes) -> bytes:
    """First 4 bytes of SHA-256(name || 0x0A || alg || public key)."""
    data = name.encode("utf-8") + b"\n" + bytes([alg]) + public_key
    return hashlib.sha256(data).digest()[:KEY_ID_SIZE]


def _check_name(name: str) -> None:
    if not is_valid_key_name(name):
        raise KeyFormatError(f"invalid key name {name!r}")


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """An Ed25519 verifier key: `<name>+<hex key id>+<base64(0x01 || public key)>`."""

    name: str
    public_key: bytes
    key_id: bytes = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.public_key) != 32:
            raise KeyFormatError("an Ed25519 public key is 32 bytes")
        try:
            key = Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError as exc:
            raise KeyFormatError("not an Ed25519 public key") from exc
        object.__setattr__(self, "key_id", compute_key_id(self.name, ALG_ED25519, self.public_key))
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Self:
        # maxsplit: the base64 key may itself contain '+'; name and id never do.
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise KeyFormatError("a verifier key has three '+'-separated parts")
        name, hex_id, key_b64 = parts
        if not _HEX_ID.fullmatch(hex_id):
            raise KeyFormatError("key id must be 8 lowercase hex digits")
        try:
            raw = _b64decode_strict(key_b64)
        except ValueError as exc:
            raise KeyFormatError(str(exc)) from exc
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise KeyFormatError("only Ed25519 verifier keys (type 0x01, 32 bytes) are supported")
        verifier = cls(name, raw[1:])
        if verifier.key_id.hex() != hex_id:
            raise KeyFormatError(
                f"key id {hex_id} does not match the key ({verifier.key_id.hex()})"
            )
        return verifier

    @property
    def vkey(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_ED25519]) + self.public_key)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class NoteSigner:
    """An Ed25519 signer; text form `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`."""

    __slots__ = ("_key", "verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.verifier = NoteVerifier(name, private_key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, name: str) -> Self:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> Self:
        if not skey.startswith(_PRIVATE_PREFIX):
            raise KeyFormatError("a signer key starts with PRIVATE+KEY+")
        parts = skey.removeprefix(_PRIVATE_PREFIX).split("+", 2)
        if len(parts) != 3:
            raise KeyFormatError("a signer key has name, key id and key after PRIVATE+KEY+")
        name, hex_id, key_b64 = parts
        if not _HEX_ID.fullmatch(hex_id):
            raise KeyFormatError("key id must be 8 lowercase hex digits")
        try:
            raw = _b64decode_strict(key_b64)
        except ValueError as exc:
            raise KeyFormatError(str(exc)) from exc
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise KeyFormatError("only Ed25519 signer keys (type 0x01, 32-byte seed) are supported")
        _check_name(name)
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.key_id.hex() != hex_id:
            raise KeyFormatError(f"key id {hex_id} does not match the key")
        return signer

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def key_id(self) -> bytes:
        return self.verifier.key_id

    @property
    def skey(self) -> str:
        seed = self._key.private_bytes_raw()
        return (
            f"{_PRIVATE_PREFIX}{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_ED25519]) + seed)}"
        )

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"NoteSigner({self.verifier.vkey!r})"  # never the private key


@dataclass(frozen=True, slots=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes

    @property
    def line(self) -> str:
        return f"{SIGNATURE_PREFIX}{self.name} {_b64(self.key_id + self.signature)}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """An opened note: its text and which signatures known keys verified."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]

    def verified_by(self, verifier: NoteVerifier) -> bool:
        return any(s.name == verifier.name and s.key_id == verifier.key_id for s in self.verified)


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedNoteError("note text must end with a newline")
    for ch in text:
        if ch < " " and ch != "\n":
            raise MalformedNoteError(f"control character U+{ord(ch):04X} in note")


def parse_note(msg: bytes) -> tuple[str, list[NoteSignature]]:
    """Split a note into text and signatures (structure only; nothing is verified)."""
    if len(msg) > MAX_NOTE_SIZE:
        raise MalformedNoteError(f"note larger than {MAX_NOTE_SIZE} bytes")
    try:
        decoded = msg.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedNoteError("note is not valid UTF-8") from exc
    _check_text(decoded)
    # The text may itself contain blank lines: the signatures start after the LAST one.
    split = decoded.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("no blank line before the signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block:
        raise MalformedNoteError("note has no signature lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"more than {MAX_SIGNATURES} signatures")
    sigs: list[NoteSignature] = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise MalformedNoteError("signature line does not start with an em dash and space")
        name, _, sig_b64 = line.removeprefix(SIGNATURE_PREFIX).partition(" ")
        if not is_valid_key_name(name) or not sig_b64:
            raise MalformedNoteError(f"malformed signature line for {name!r}")
        try:
            raw = _b64decode_strict(sig_b64)
        except ValueError as exc:
            raise MalformedNoteError(str(exc)) from exc
        if len(raw) <= KEY_ID_SIZE:
            raise MalformedNoteError("signature shorter than its key id")
        sigs.append(NoteSignature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:]))
    return text, sigs


def open_note(msg: bytes, verifiers: Iterable[NoteVerifier]) -> Note:
    """Parse and verify a note: unknown keys are ignored, a bad known signature rejects it all."""
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for v in verifiers:
        other = known.setdefault((v.name, v.key_id), v)
        if other.public_key != v.public_key:
            raise KeyFormatError(f"two verifiers share name and key id {v.name}+{v.key_id.hex()}")
    text, sigs = parse_note(msg)
    message = text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in sigs:
        ident = (sig.name, sig.key_id)
        verifier = known.get(ident)
        if verifier is None:
            if sig not in unverified:
                unverified.append(sig)
            continue
        if ident in seen:
            continue  # as the Go reference: repeated signatures by one key are dropped
        seen.add(ident)
        if not verifier.verify(message, sig.signature):
            raise InvalidSignatureError(sig.name, sig.key_id)
        verified.append(sig)
    if not verified:
        raise UnverifiedNoteError("no signature from a known key")
    return Note(text, tuple(verified), tuple(unverified))


def sign_note(text: str, signers: Sequence[NoteSigner]) -> bytes:
    """Sign `text` (which must end in a newline) with every signer, in order."""
    if not signers:
        raise ValueError("a note needs at least one signer")
    _check_text(text)
    message = text.encode("utf-8")
    lines = [NoteSignature(s.name, s.key_id, s.sign(message)).line for s in signers]
    return (text + "\n" + "".join(lines)).encode("utf-8")


def add_signatures(msg: bytes, signers: Sequence[NoteSigner]) -> bytes:
    """Append signatures to a signed note (dual-signing during key rotation, cosigning).

    Existing signatures are kept verbatim unless a new signer uses the same key, as in Go.
    """
    text, sigs = parse_note(msg)
    message = text.encode("utf-8")
    replaced = {(s.name, s.key_id) for s in signers}
    kept = [s.line for s in sigs if (s.name, s.key_id) not in replaced]
    new = [NoteSignature(s.name, s.key_id, s.sign(message)).line for s in signers]
    return (text + "\n" + "".join(kept + new)).encode("utf-8")


# ---- checkpoints ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: `<origin>\\n<size>\\n<base64 root>\\n` plus optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise CheckpointError("origin must be a non-empty single line")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"size {self.size} is not a uint64")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointError("root hash must be 32 bytes")
        if any(not line or "\n" in line for line in self.extensions):
            raise CheckpointError("extension lines must be non-empty single lines")

    @property
    def text(self) -> str:
        head = f"{self.origin}\n{self.size}\n{_b64(self.root_hash)}\n"
        return head + "".join(f"{line}\n" for line in self.extensions)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body strictly (canonical decimal size, canonical base64 root)."""
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint needs origin, size and root lines")
    origin, size_text, root_text, *extensions = lines
    if not _DECIMAL.fullmatch(size_text):
        raise CheckpointError(f"size {size_text[:24]!r} is not a canonical decimal")
    try:
        root = _b64decode_strict(root_text)
    except ValueError as exc:
        raise CheckpointError(f"root: {exc}") from exc
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[NoteSigner]) -> bytes:
    return sign_note(checkpoint.text, signers)


def open_checkpoint(
    msg: bytes, origin: str, verifiers: Iterable[NoteVerifier]
) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint note from the log `origin`; returns the parsed tree head."""
    note = open_note(msg, verifiers)
    checkpoint = parse_checkpoint(note.text)
    if checkpoint.origin != origin:
        raise CheckpointOriginError(f"checkpoint origin {checkpoint.origin!r}, not {origin!r}")
    return checkpoint, note
