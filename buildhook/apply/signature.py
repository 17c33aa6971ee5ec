"""Detached patch signatures and the trust store, as the applier checks them (docs/signing.md).

A signature ``X.po.sig`` is a small JSON file naming the signing key by its
id and holding an Ed25519 signature over the exact bytes of ``X.po``.  A
trust store is a folder of public keys (``*.pub``, PEM).  When one is
configured (``BUILDHOOK_TRUST``, else ``/etc/buildhook/trust.d`` if it
exists), the applier refuses a patch that is unsigned, whose signature does
not verify, or whose key is not in the store, before it looks at any
process.

Standard library only (verification is ``buildhook.apply.ed25519``): the
zipapp applier runs this on hosts without ``cryptography``.  Key
generation and signing live on the build side, in ``buildhook.sign``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from buildhook.apply import ed25519

__all__ = [
    "SIGNATURE_FORMAT", "SIGNATURE_SUFFIX", "SYSTEM_TRUST_STORE", "TRUST_VARIABLE", "PatchSignature",
    "PublicKey", "SignatureError", "TrustStore", "TrustedSignature", "configured_trust_store", "key_id_of",
    "signature_path", "verify_patch",
]

SIGNATURE_FORMAT = "buildhook-sig/1"
SIGNATURE_SUFFIX = ".sig"
ALGORITHM = "ed25519"
TRUST_VARIABLE = "BUILDHOOK_TRUST"
SYSTEM_TRUST_STORE = "/etc/buildhook/trust.d"
PUBLIC_KEY_SUFFIXES = (".pub",)

# DER SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): this fixed header, then the 32-byte key.
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_PEM_BEGIN, _PEM_END = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"


class SignatureError(Exception):
    """A patch is not trusted: unsigned, a bad signature, an unknown key, or a broken trust store."""


def key_id_of(raw_public_key: bytes) -> str:
    """A key's short name: the first 16 hex digits of the SHA-256 of its 32 raw bytes."""
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def signature_path(patch_path: str) -> str:
    """Where the detached signature of *patch_path* lives: ``X.po.sig`` next to it."""
    return patch_path + SIGNATURE_SUFFIX


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key read from a PEM file (``-----BEGIN PUBLIC KEY-----``)."""

    raw: bytes
    path: str

    @property
    def key_id(self) -> str:
        return key_id_of(self.raw)

    @classmethod
    def from_pem(cls, text: str, path: str) -> PublicKey:
        """Parse a PEM SubjectPublicKeyInfo holding an Ed25519 key; SignatureError names the file."""
        begin, end = text.find(_PEM_BEGIN), text.find(_PEM_END)
        if begin < 0 or end < begin:
            raise SignatureError(f"{path} is not a PEM public key (no {_PEM_BEGIN} line)")
        body = "".join(text[begin + len(_PEM_BEGIN):end].split())
        try:
            der = base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise SignatureError(f"{path}: the PEM body is not base64 ({exc})") from exc
        if len(der) != len(_SPKI_PREFIX) + ed25519.PUBLIC_KEY_SIZE or not der.startswith(_SPKI_PREFIX):
            raise SignatureError(f"{path} is not an Ed25519 public key (buildhook signs with Ed25519 only)")
        return cls(der[len(_SPKI_PREFIX):], path)

    @classmethod
    def from_file(cls, path: str) -> PublicKey:
        try:
            with open(path, encoding="ascii", errors="replace") as handle:
                return cls.from_pem(handle.read(), path)
        except OSError as exc:
            raise SignatureError(f"cannot read public key {path}: {exc.strerror}") from exc

    def to_pem(self) -> str:
        der = base64.b64encode(_SPKI_PREFIX + self.raw).decode()
        return f"{_PEM_BEGIN}\n{der}\n{_PEM_END}\n"


@dataclass(frozen=True)
class PatchSignature:
    """The content of a ``.sig`` file: which key signed, and the signature over the .po bytes."""

    key_id: str
    signature: bytes
    patch_sha256: str

    def to_json(self) -> dict[str, str]:
        return {"format": SIGNATURE_FORMAT, "algorithm": ALGORITHM, "key_id": self.key_id,
                "patch_sha256": self.patch_sha256, "signature": base64.b64encode(self.signature).decode()}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1) + "\n"

    @classmethod
    def from_bytes(cls, data: bytes, path: str) -> PatchSignature:
        """Parse a ``.sig`` file; anything unexpected is a SignatureError naming the file."""
        try:
            fields = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SignatureError(f"{path} is not a buildhook signature (not JSON: {exc})") from exc
        if not isinstance(fields, dict) or fields.get("format") != SIGNATURE_FORMAT:
            found = fields.get("format") if isinstance(fields, dict) else None
            raise SignatureError(f"{path} is not a buildhook signature (format {found!r}, "
                                 f"expected {SIGNATURE_FORMAT!r})")
        if fields.get("algorithm") != ALGORITHM:
            raise SignatureError(f"{path}: unsupported signature algorithm {fields.get('algorithm')!r}")
        try:
            signature = base64.b64decode(str(fields["signature"]), validate=True)
            return cls(str(fields["key_id"]), signature, str(fields["patch_sha256"]))
        except KeyError as exc:
            raise SignatureError(f"{path}: the signature has no {exc.args[0]!r} field") from exc
        except binascii.Error as exc:
            raise SignatureError(f"{path}: the signature is not base64 ({exc})") from exc

    @classmethod
    def from_file(cls, path: str) -> PatchSignature:
        with open(path, "rb") as handle:
            return cls.from_bytes(handle.read(), path)


class TrustStore:
    """A folder of trusted public keys (every ``*.pub`` file in it, PEM Ed25519)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._keys: list[PublicKey] | None = None

    @property
    def keys(self) -> list[PublicKey]:
        """The trusted keys; a store that cannot be read is an error, never an empty store."""
        if self._keys is None:
            if os.path.isfile(self.folder) and self.folder.endswith(PUBLIC_KEY_SUFFIXES):
                self._keys = [PublicKey.from_file(self.folder)]  # one key file works as a store of one
                return self._keys
            try:
                names = sorted(os.listdir(self.folder))
            except OSError as exc:
                raise SignatureError(f"cannot read trust store {self.folder}: {exc.strerror}") from exc
            self._keys = [PublicKey.from_file(os.path.join(self.folder, name))
                          for name in names if name.endswith(PUBLIC_KEY_SUFFIXES)]
        return self._keys

    def keys_with_id(self, key_id: str) -> list[PublicKey]:
        return [key for key in self.keys if key.key_id == key_id]


@dataclass(frozen=True)
class TrustedSignature:
    """A verified signature: the patch file and the trusted key that signed it."""

    patch_path: str
    key: PublicKey
    store: TrustStore


def configured_trust_store(environ: Mapping[str, str] | None = None) -> TrustStore | None:
    """The trust store in force: ``$BUILDHOOK_TRUST``, else ``/etc/buildhook/trust.d`` if it exists, else None.

    A ``BUILDHOOK_TRUST`` that names a missing folder is an error, not "no
    trust store": a typo must not switch signature checking off.
    """
    environ = os.environ if environ is None else environ
    folder = environ.get(TRUST_VARIABLE, "")
    if folder:
        if not os.path.exists(folder):
            raise SignatureError(f"trust store {folder} ({TRUST_VARIABLE}) does not exist")
        return TrustStore(folder)
    if os.path.isdir(SYSTEM_TRUST_STORE):
        return TrustStore(SYSTEM_TRUST_STORE)
    return None


def verify_patch(patch_path: str, data: bytes, store: TrustStore,
                 signature_file: str | None = None) -> TrustedSignature:
    """Check that *data* (the bytes of *patch_path*) carries a valid signature by a key in *store*.

    Raises SignatureError with one line saying what is wrong and what to do.
    """
    sig_path = signature_file or signature_path(patch_path)
    try:
        signature = PatchSignature.from_file(sig_path)
    except FileNotFoundError:
        raise SignatureError(f"{patch_path} is not signed (no {sig_path}); the trust store {store.folder} "
                             "admits only patches signed by its keys (`buildhook sign`)") from None
    except OSError as exc:
        raise SignatureError(f"cannot read signature {sig_path}: {exc.strerror}") from exc
    candidates = store.keys_with_id(signature.key_id)
    if not candidates:
        known = ", ".join(key.key_id for key in store.keys) or "none"
        raise SignatureError(f"{patch_path} is signed by key {signature.key_id}, which is not in the trust store "
                             f"{store.folder} (trusted keys: {known})")
    for key in candidates:
        if ed25519.verify(key.raw, data, signature.signature):
            return TrustedSignature(patch_path, key, store)
    if hashlib.sha256(data).hexdigest() != signature.patch_sha256:
        raise SignatureError(f"bad signature: {patch_path} was changed after it was signed "
                             f"(it does not match {sig_path})")
    raise SignatureError(f"bad signature: {sig_path} does not verify with key {signature.key_id} "
                         f"({candidates[0].path})")
