"""What a reviewer reads about a patch's replaced functions: their disassembly, old against new.

The base release's object and the new build's object both come from the
store (every release keeps its objects), paired as the diff pairs them.
"""

from __future__ import annotations

from buildhook.diff.model import FunctionEntry
from buildhook.diff.pairing import ObjectPair, pair_objects
from buildhook.elf.objfile import ObjectFormatError
from buildhook.report.disassembly import DisassemblyError, FunctionDiff, ObjectDisassembly, function_diff
from buildhook.store import CorruptBlobError, MissingBlobError, Store
from buildhook.store.records import LinkInput, LinkRecord


class _Disassemblies:
    """ObjectDisassembly per object hash: a changed object holds several replaced functions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, ObjectDisassembly] = {}

    def of(self, item: LinkInput | None) -> ObjectDisassembly | None:
        if item is None:
            return None
        if item.sha256 not in self._cache:
            self._cache[item.sha256] = ObjectDisassembly(self.store.blobs.read(item.sha256), item.display_path)
        return self._cache[item.sha256]


def review_functions(store: Store, base: LinkRecord, new: LinkRecord,
                     replaced: list[FunctionEntry]) -> list[FunctionDiff]:
    """One FunctionDiff per replaced function; one that cannot be shown says why instead."""
    pairs: dict[str, list[ObjectPair]] = {}
    for pair in pair_objects(base, new):
        if pair.changed:
            pairs.setdefault(pair.source_name, []).append(pair)
    disassemblies = _Disassemblies(store)
    reviews = []
    for function in replaced:
        review = FunctionDiff(function.name, function.file, [], [],
                              f"no changed object for {function.file} in the two links")
        for pair in pairs.get(function.file, []):
            try:
                review = function_diff(disassemblies.of(pair.old), disassemblies.of(pair.new),
                                       function.name, function.file)
            except (DisassemblyError, ObjectFormatError, MissingBlobError, CorruptBlobError) as exc:
                review = FunctionDiff(function.name, function.file, [], [], str(exc))
            if review.error is None:
                break
        reviews.append(review)
    return reviews
