"""Signing patches: ``buildhook keygen``, ``buildhook sign``, ``buildhook verify`` (docs/signing.md).

Signing uses ``cryptography`` (Ed25519).  Verification is the applier's
own, standard-library code (``buildhook.apply.signature``), so ``verify``
accepts exactly what ``apply`` and the zipapp accept.
"""

from __future__ import annotations

import hashlib
import os

from buildhook.apply.signature import (
    PatchSignature,
    SignatureError,
    TrustedSignature,
    TrustStore,
    signature_path,
    verify_patch,
)
from buildhook.sign.keys import SigningKey, SigningKeyError

__all__ = ["SignatureError", "SigningKey", "SigningKeyError", "sign_patch", "verify_patch_file"]


def sign_patch(patch_path: str, key: SigningKey, output: str | None = None) -> str:
    """Write the detached signature of the .po at *patch_path* (default ``X.po.sig``); return its path.

    The .po is validated first: a file the applier would reject is not worth a signature.
    """
    from buildhook.po.reader import read_patch

    try:
        with open(patch_path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise SigningKeyError(f"cannot read {patch_path}: {exc.strerror}") from exc
    read_patch(data, patch_path)
    signature = PatchSignature(key.key_id, key.sign(data), hashlib.sha256(data).hexdigest())
    destination = output or signature_path(patch_path)
    temporary = f"{destination}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(signature.dumps())
    os.replace(temporary, destination)
    return destination


def verify_patch_file(patch_path: str, store: TrustStore, signature_file: str | None = None) -> TrustedSignature:
    """Verify the .po at *patch_path* against *store*, exactly as the applier will."""
    try:
        with open(patch_path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise SignatureError(f"cannot read {patch_path}: {exc.strerror}") from exc
    return verify_patch(patch_path, data, store, signature_file)
