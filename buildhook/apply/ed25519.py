"""Ed25519 signature verification in pure Python (RFC 8032 §5.1, verification only).

The applier must check a patch's signature on a host that has nothing but
``python3`` (the zipapp), so it cannot use ``cryptography``.  Verification
needs no secret and no constant-time arithmetic, only the curve's group law,
which is short.  Signing stays with ``cryptography`` on the build side
(``buildhook.sign``); the tests check this module against its signatures.

Points are kept in extended homogeneous coordinates (X, Y, Z, T) with
x = X/Z, y = Y/Z and x·y = T/Z (RFC 8032 §5.1.4).
"""

from __future__ import annotations

import hashlib

__all__ = ["PUBLIC_KEY_SIZE", "SIGNATURE_SIZE", "InvalidPoint", "verify"]

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

P = 2**255 - 19                                                    # the field prime
L = 2**252 + 27742317777372353535851937790883648493                # order of the base point
D = (-121665 * pow(121666, P - 2, P)) % P                          # curve constant d
SQRT_M1 = pow(2, (P - 1) // 4, P)                                  # a square root of -1 mod p

Point = tuple[int, int, int, int]
IDENTITY: Point = (0, 1, 1, 0)


class InvalidPoint(ValueError):
    """32 bytes that do not encode a point of the curve (§5.1.3 decoding failed)."""


def _point_add(a: Point, b: Point) -> Point:
    """a + b; the formula is complete for a = -1, so it doubles too (§5.1.4)."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    pa = (y1 - x1) * (y2 - x2) % P
    pb = (y1 + x1) * (y2 + x2) % P
    pc = 2 * D * t1 * t2 % P
    pd = 2 * z1 * z2 % P
    e, f, g, h = pb - pa, pd - pc, pd + pc, pb + pa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _scalar_multiply(scalar: int, point: Point) -> Point:
    """[scalar]point by double-and-add (verification handles public values only)."""
    result = IDENTITY
    addend = point
    while scalar:
        if scalar & 1:
            result = _point_add(result, addend)
        addend = _point_add(addend, addend)
        scalar >>= 1
    return result


def _points_equal(a: Point, b: Point) -> bool:
    """Projective equality: x1/z1 == x2/z2 and y1/z1 == y2/z2."""
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def _recover_x(y: int, sign: int) -> int:
    """The x with x² = (y² − 1) / (d·y² + 1) whose low bit is *sign* (§5.1.3 steps 2–4)."""
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    # Candidate root x = u·v³·(u·v⁷)^((p−5)/8), which avoids a separate inversion of v.
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    check = v * x * x % P
    if check == (-u) % P:
        x = x * SQRT_M1 % P
    elif check != u:
        raise InvalidPoint("no square root: not a curve point")
    if x == 0 and sign:
        raise InvalidPoint("x is 0 but its sign bit is set")
    if x & 1 != sign:
        x = P - x
    return x


def decode_point(encoded: bytes) -> Point:
    """The point a 32-byte little-endian encoding stands for (y, with x's low bit in bit 255)."""
    if len(encoded) != 32:
        raise InvalidPoint(f"a point is 32 bytes, not {len(encoded)}")
    value = int.from_bytes(encoded, "little")
    sign = value >> 255
    y = value & ((1 << 255) - 1)
    if y >= P:
        raise InvalidPoint("y is not reduced modulo p")
    x = _recover_x(y, sign)
    return (x, y, 1, x * y % P)


_BASE_Y = 4 * pow(5, P - 2, P) % P
BASE: Point = (_recover_x(_BASE_Y, 0), _BASE_Y, 1, _recover_x(_BASE_Y, 0) * _BASE_Y % P)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when *signature* is a valid Ed25519 signature of *message* by *public_key* (§5.1.7).

    Malformed keys and signatures are simply not valid: this returns False
    rather than raising, so a caller has one outcome to handle.
    """
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    encoded_r, encoded_s = signature[:32], signature[32:]
    try:
        a = decode_point(public_key)
        r = decode_point(encoded_r)
    except InvalidPoint:
        return False
    s = int.from_bytes(encoded_s, "little")
    if s >= L:  # a non-canonical S would make signatures malleable
        return False
    k = int.from_bytes(hashlib.sha512(encoded_r + public_key + message).digest(), "little") % L
    # The group equation [8][S]B = [8]R + [8][k]A: multiplying by the cofactor
    # makes the check independent of small-order components (§5.1.7 step 3).
    left = _scalar_multiply(8 * s, BASE)
    right = _scalar_multiply(8, _point_add(r, _scalar_multiply(k, a)))
    return _points_equal(left, right)
