"""The applier's pure-Python Ed25519 verifier against signatures made by ``cryptography``."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from buildhook.apply import ed25519
from buildhook.apply.ed25519 import L, verify


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_rfc8032_test_vector_1() -> None:
    """RFC 8032 §7.1, TEST 1: the empty message."""
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = bytes.fromhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
                              "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    assert verify(public, b"", signature)
    assert not verify(public, b"\x00", signature)


@pytest.mark.parametrize("size", [0, 1, 63, 64, 1000, 70_000])
def test_accepts_what_cryptography_signs(size: int) -> None:
    key = Ed25519PrivateKey.generate()
    message = os.urandom(size)
    assert verify(raw_public(key), message, key.sign(message))


def test_rejects_a_signature_by_another_key() -> None:
    signer, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    message = b"a patch"
    assert not verify(raw_public(other), message, signer.sign(message))


@pytest.mark.parametrize("position", [0, 17, 31, 32, 45, 63])
def test_rejects_a_flipped_signature_byte(position: int) -> None:
    key = Ed25519PrivateKey.generate()
    message = os.urandom(200)
    signature = bytearray(key.sign(message))
    signature[position] ^= 0x01
    assert not verify(raw_public(key), message, bytes(signature))


@pytest.mark.parametrize("position", [0, 99, 199])
def test_rejects_a_flipped_message_byte(position: int) -> None:
    key = Ed25519PrivateKey.generate()
    message = bytearray(os.urandom(200))
    signature = key.sign(bytes(message))
    message[position] ^= 0x80
    assert not verify(raw_public(key), bytes(message), signature)


def test_rejects_a_non_canonical_s() -> None:
    """S + L verifies the same group equation; RFC 8032 requires S < L so signatures cannot be altered."""
    key = Ed25519PrivateKey.generate()
    signature = key.sign(b"m")
    s = int.from_bytes(signature[32:], "little") + L
    assert s < 2**256
    assert not verify(raw_public(key), b"m", signature[:32] + s.to_bytes(32, "little"))


def test_malformed_keys_and_signatures_are_not_valid() -> None:
    key = Ed25519PrivateKey.generate()
    public, signature = raw_public(key), key.sign(b"m")
    assert not verify(public[:31], b"m", signature)
    assert not verify(public, b"m", signature[:63])
    # y = p - 1 + 2 (not reduced modulo p) is not a valid encoding.
    unreduced = (ed25519.P + 1).to_bytes(32, "little")
    assert not verify(unreduced, b"m", signature)
    with pytest.raises(ed25519.InvalidPoint):
        ed25519.decode_point(unreduced)
    # Find a y for which no x exists: not a point of the curve.
    y = next(y for y in range(2, 100) if _no_point(y))
    assert not verify(y.to_bytes(32, "little"), b"m", signature)


def _no_point(y: int) -> bool:
    try:
        ed25519.decode_point(y.to_bytes(32, "little"))
    except ed25519.InvalidPoint:
        return True
    return False


def test_many_random_keys_agree_with_cryptography() -> None:
    for _ in range(20):
        key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        message = os.urandom(int.from_bytes(os.urandom(1), "little"))
        signature = key.sign(message)
        assert verify(raw_public(key), message, signature)
        assert not verify(raw_public(other), message, signature)
