"""Content-addressed blobs: ``objects/ab/cdef…`` named by SHA-256.

Many wrappers write at once under ``make -j``, so a blob is written to a
private temporary file and renamed into place (atomic on one filesystem);
two writers of the same content race harmlessly.  Reads verify the hash: a
patch built from a silently corrupted object would be worse than none.

Paths are plain strings and no tempfile/pathlib is imported: every compile
writes a blob, and those imports cost more than the write.
"""

from __future__ import annotations

import hashlib
import os

CHUNK = 1 << 20


class CorruptBlobError(Exception):
    """A blob's content no longer matches its name."""


class MissingBlobError(Exception):
    """The store has no blob with that hash."""


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class BlobStore:
    """The blob half of the store, rooted at ``<store>/objects``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self.tmp_dir = os.path.join(self.root, "tmp")

    def path_for(self, sha256: str) -> str:
        """Where the blob with this hash lives (whether or not it exists)."""
        return os.path.join(self.root, sha256[:2], sha256[2:])

    def has(self, sha256: str) -> bool:
        return os.path.isfile(self.path_for(sha256))

    def put_bytes(self, data: bytes) -> str:
        """Store *data*; return its hash."""
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.has(sha256):
            self._write_atomically(sha256, data)
        return sha256

    def put_file(self, path: str | os.PathLike[str]) -> str:
        """Store the content of the file at *path*; return its hash."""
        with open(path, "rb") as handle:
            data = handle.read()
        return self.put_bytes(data)

    def read(self, sha256: str) -> bytes:
        """The blob's bytes, verified against its name."""
        path = self.path_for(sha256)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError as exc:
            raise MissingBlobError(f"blob {sha256} is not in the store {os.path.dirname(self.root)}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise CorruptBlobError(
                f"blob {sha256} in {path} is corrupt (its content hashes to {actual}); "
                "rebuild the object or restore the store from a backup"
            )
        return data

    def iter_hashes(self) -> list[str]:
        """Every blob hash present on disk."""
        if not os.path.isdir(self.root):
            return []
        hashes = []
        for prefix in sorted(os.listdir(self.root)):
            folder = os.path.join(self.root, prefix)
            if len(prefix) == 2 and os.path.isdir(folder):
                hashes.extend(prefix + rest for rest in sorted(os.listdir(folder)))
        return hashes

    def remove(self, sha256: str) -> int:
        """Delete a blob; return the bytes freed."""
        path = self.path_for(sha256)
        try:
            size = os.stat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            return 0
        return size

    def _write_atomically(self, sha256: str, data: bytes) -> None:
        final = self.path_for(sha256)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.makedirs(self.tmp_dir, exist_ok=True)
        temporary = os.path.join(self.tmp_dir, f"{sha256[:16]}.{os.getpid()}.{os.urandom(6).hex()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.rename(temporary, final)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise
