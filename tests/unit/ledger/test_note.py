"""C2SP signed notes and checkpoints, pinned by the published example keys and notes."""

from __future__ import annotations

import base64

import pytest

from docaxis_client.ledger.note import (
    MAX_SIGNATURES,
    Checkpoint,
    CheckpointError,
    CheckpointOriginError,
    InvalidSignatureError,
    KeyFormatError,
    MalformedNoteError,
    NoteError,
    NoteSigner,
    NoteVerifier,
    UnverifiedNoteError,
    add_signatures,
    compute_key_id,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    sign_checkpoint,
    sign_note,
)
from tests.unit.ledger.synthetic import fixed_signer

# golang.org/x/mod/sumdb/note, the reference implementation the C2SP spec was written from.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
GO_NOTE = f"{GO_TEXT}\n\u2014 PeterNeumann {GO_SIG}\n".encode()

# The example in the C2SP signed-note spec ("Verifier keys" section).
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
).encode()


def test_the_go_reference_key_pair_parses_and_signs_its_note_byte_for_byte() -> None:
    """Key encodings round-trip, the key id matches, and Ed25519 reproduces the signature."""
    signer = NoteSigner.from_skey(GO_SKEY)
    verifier = NoteVerifier.from_vkey(GO_VKEY)
    assert signer.skey == GO_SKEY
    assert verifier.vkey == GO_VKEY
    assert signer.verifier == verifier
    assert verifier.key_id.hex() == "c74f20a3"
    assert compute_key_id("PeterNeumann", 1, verifier.public_key) == verifier.key_id
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE
    assert open_note(GO_NOTE, [verifier]).text == GO_TEXT


def test_the_c2sp_spec_example_note_verifies_with_its_key() -> None:
    """The signed-note spec's example vkey verifies the spec's example note."""
    note = open_note(SPEC_NOTE, [NoteVerifier.from_vkey(SPEC_VKEY)])
    assert note.text == "This is an example message.\n"
    assert [s.name for s in note.verified] == ["example.com/foo"]


def test_changing_any_one_byte_of_the_note_makes_it_fail() -> None:
    """Every single-byte change, in text, blank line, key name or signature, is refused."""
    verifier = NoteVerifier.from_vkey(GO_VKEY)
    for position in range(len(GO_NOTE)):
        tampered = bytearray(GO_NOTE)
        tampered[position] = ord("A") if tampered[position] != ord("A") else ord("B")
        with pytest.raises(NoteError):
            open_note(bytes(tampered), [verifier])


def test_a_changed_signature_from_a_known_key_rejects_the_whole_note() -> None:
    """A known key whose signature fails is an InvalidSignatureError even if another verifies."""
    other = fixed_signer("PeterNeumann", "other")
    sig_line = GO_NOTE.split(b"\n\n")[1]
    raw = bytearray(base64.b64decode(sig_line.split(b" ")[2]))
    raw[10] ^= 1
    bad_line = b"\xe2\x80\x94 PeterNeumann " + base64.b64encode(bytes(raw)) + b"\n"
    note = add_signatures(GO_TEXT.encode() + b"\n" + bad_line, [other])
    with pytest.raises(InvalidSignatureError):
        open_note(note, [NoteVerifier.from_vkey(GO_VKEY), other.verifier])


def test_signatures_from_unknown_keys_are_ignored() -> None:
    """Cosignatures by keys the verifier does not know neither help nor hurt."""
    strangers = [fixed_signer(f"witness{i}.example", f"w{i}") for i in range(15)]
    note = add_signatures(GO_NOTE, strangers)
    opened = open_note(note, [NoteVerifier.from_vkey(GO_VKEY)])
    assert [s.name for s in opened.verified] == ["PeterNeumann"]
    assert len(opened.unverified) == 15
    with pytest.raises(UnverifiedNoteError):
        open_note(note, [NoteVerifier.from_vkey(SPEC_VKEY)])


def test_a_key_sharing_only_the_name_or_only_the_id_is_unknown() -> None:
    """Same name with another key (different id) does not count as the known key."""
    impostor = fixed_signer("PeterNeumann", "impostor")
    note = sign_note(GO_TEXT, [impostor])
    with pytest.raises(UnverifiedNoteError):
        open_note(note, [NoteVerifier.from_vkey(GO_VKEY)])


def test_up_to_100_signatures_are_accepted_and_more_are_refused() -> None:
    """At least 16 must be accepted (spec); like Go we stop at 100."""
    signers = [fixed_signer(f"k{i}.example", str(i)) for i in range(MAX_SIGNATURES)]
    note = sign_note(GO_TEXT, signers)
    assert len(open_note(note, [signers[-1].verifier]).unverified) == MAX_SIGNATURES - 1
    with pytest.raises(MalformedNoteError, match="more than"):
        open_note(add_signatures(note, [fixed_signer("one.more", "x")]), [signers[0].verifier])


@pytest.mark.parametrize(
    "note",
    [
        GO_NOTE.replace(b"\n\n", b"\n"),  # no blank line before the signatures
        GO_NOTE[:-1],  # last signature line not terminated
        GO_NOTE.replace(b"problem,", b"problem,\r"),  # control character
        GO_NOTE.replace(b"If", b"\xff\xfe"),  # not UTF-8
        GO_NOTE.replace(b"\xe2\x80\x94 ", b"-- "),  # not an em dash
        GO_NOTE.replace(b"AM=\n", b"AM\n"),  # base64 without its padding
        GO_TEXT.encode() + b"\n\xe2\x80\x94 PeterNeumann AAAA\n",  # too short for id + sig
        GO_TEXT.encode() + b"\n",  # no signatures at all
    ],
)
def test_malformed_notes_are_refused_before_any_signature_check(note: bytes) -> None:
    """Strict parsing: UTF-8, no control characters, exact signature line grammar."""
    with pytest.raises(MalformedNoteError):
        open_note(note, [NoteVerifier.from_vkey(GO_VKEY)])


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper-case hex
        "PeterNeumann+c74f20a3+AhpcZ2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # not type 0x01
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # space in name
        "PeterNeumann+c74f20a3",  # no key
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",  # short key
    ],
)
def test_malformed_verifier_keys_are_refused(vkey: str) -> None:
    """Verifier keys must be exact: valid name, lowercase matching id, Ed25519 type and size."""
    with pytest.raises(KeyFormatError):
        NoteVerifier.from_vkey(vkey)


def test_generated_keys_round_trip_through_their_text_forms() -> None:
    """A fresh signer's skey and vkey parse back to the same key and sign verifiably."""
    signer = NoteSigner.generate("ledger.docaxis.example/v1")
    again = NoteSigner.from_skey(signer.skey)
    assert again.verifier == NoteVerifier.from_vkey(signer.verifier.vkey)
    assert "PRIVATE" not in repr(signer)
    open_note(sign_note("hello\n", [again]), [signer.verifier])


def test_a_checkpoint_is_three_lines_and_opens_for_its_origin_only() -> None:
    """Body `<origin>\\n<size>\\n<base64 root>\\n`; a wrong origin is its own error."""
    signer = fixed_signer("log.example/v1")
    checkpoint = Checkpoint("log.example/v1", 20852163, bytes(range(32)))
    assert checkpoint.text == (
        "log.example/v1\n20852163\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    )
    note = sign_checkpoint(checkpoint, [signer])
    opened, _ = open_checkpoint(note, "log.example/v1", [signer.verifier])
    assert opened == checkpoint
    with pytest.raises(CheckpointOriginError):
        open_checkpoint(note, "other.example/v1", [signer.verifier])


@pytest.mark.parametrize(
    "text",
    [
        "log\n012\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",  # leading zero
        "log\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "log\n18446744073709551616\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "log\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n",  # 31-byte root
        "\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",  # empty origin
        "log\n12\n",
        "log\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",  # no final newline
    ],
)
def test_malformed_checkpoint_bodies_are_refused(text: str) -> None:
    """Canonical decimal uint64 size, 32-byte base64 root, non-empty origin."""
    with pytest.raises(CheckpointError):
        parse_checkpoint(text)


def test_checkpoint_extension_lines_survive_parsing() -> None:
    """Extension lines are kept (and signed), though our log never writes any."""
    text = "log\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\nextra one\n"
    assert parse_checkpoint(text).extensions == ("extra one",)
    assert parse_checkpoint(text).text == text
