"""``buildhook collect``: a release pipeline's patch set (docs/release-pipeline.md).

For each binary and each base release, ``collect_patches`` makes the
cumulative ``.po`` from that release to the current build (the same
``make_patch`` as ``buildhook diff``), writes it into the output folder,
signs it when a key is given, and writes ``index.json`` and
``report.html``.  A base release whose patch is refused, or that differs in
nothing, is listed with its outcome and reasons, never dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from buildhook.diff import NO_CHANGE, PATCH, REFUSED, DiffError, default_patch_path, find_links, make_patch
from buildhook.store import CorruptBlobError, MissingBlobError, Store
from buildhook.store.records import LinkRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from buildhook.report.disassembly import FunctionDiff
    from buildhook.sign import SigningKey

__all__ = ["CollectError", "CollectResult", "CollectedPatch", "collect_patches", "INDEX_FORMAT"]

INDEX_FORMAT = "buildhook-collect/1"
INDEX_NAME = "index.json"
REPORT_NAME = "report.html"
ERROR = "error"


class CollectError(Exception):
    """Nothing can be collected for a binary (never built, no release); the message says which."""


@dataclass
class CollectedPatch:
    """What collect made of one (binary, base release): a patch, a refusal, no change, or an error."""

    binary: str
    from_tag: str
    to: str
    outcome: str                   # patch | refused | no-change | error
    target_build_id: str | None
    to_build_id: str | None
    po: str | None = None          # file name inside the output folder
    sha256: str | None = None
    size: int | None = None
    patch_id: str | None = None
    signature: str | None = None   # file name of the detached signature
    key_id: str | None = None
    functions: list[dict[str, object]] = field(default_factory=list)
    new_functions: list[dict[str, object]] = field(default_factory=list)
    new_data: list[dict[str, object]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    refusals: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    # For the report only: the normalised disassembly diff of each replaced function.
    reviews: list[FunctionDiff] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "binary": self.binary, "from": self.from_tag, "to": self.to, "outcome": self.outcome,
            "target_build_id": self.target_build_id, "to_build_id": self.to_build_id,
            "po": self.po, "sha256": self.sha256, "size": self.size, "patch_id": self.patch_id,
            "signature": self.signature, "key_id": self.key_id,
            **self._contents(),
            "warnings": self.warnings, "refusals": self.refusals, "error": self.error,
        }

    def _contents(self) -> dict[str, object]:
        """What the patch carries; for a refused base, what it would have carried, under ``would_*`` (as diff --json)."""
        contents = {"functions": self.functions, "new_functions": self.new_functions, "new_data": self.new_data}
        if self.outcome != REFUSED:
            return dict(contents)
        return {**{key: [] for key in contents}, **{f"would_{key}": value for key, value in contents.items()}}

    def line(self) -> str:
        """One line for the terminal."""
        name = os.path.basename(self.binary)
        if self.outcome == PATCH:
            signed = f", signed by {self.key_id}" if self.key_id else ""
            return (f"{name} from {self.from_tag}: wrote {self.po} ({len(self.functions)} replaced, "
                    f"{len(self.new_functions)} new functions, {len(self.warnings)} warnings{signed})")
        if self.outcome == REFUSED:
            reasons = "; ".join(f"{r['file']}: {r['symbol']}: {r['reason']} [{r['rule']}]" for r in self.refusals)
            return f"{name} from {self.from_tag}: refused: {reasons}"
        if self.outcome == NO_CHANGE:
            return f"{name} from {self.from_tag}: no change"
        return f"{name} from {self.from_tag}: error: {self.error}"


@dataclass
class CollectResult:
    """Every entry collect made, and where it wrote the index and the report."""

    entries: list[CollectedPatch]
    index_path: Path
    report_path: Path

    @property
    def written(self) -> list[CollectedPatch]:
        return [entry for entry in self.entries if entry.outcome == PATCH]

    @property
    def exit_status(self) -> int:
        """0 a patch was written; else 2 some base refused, 3 no change from any base, 1 errors only."""
        outcomes = {entry.outcome for entry in self.entries}
        if PATCH in outcomes:
            return 0
        if REFUSED in outcomes:
            return 2
        return 3 if outcomes == {NO_CHANGE} else 1

    def why_nothing(self) -> str:
        """One line: each base release and what became of it."""
        outcomes = ", ".join(f"{os.path.basename(e.binary)} from {e.from_tag}: {e.outcome}" for e in self.entries)
        return f"no patch written ({outcomes}); see {self.report_path}"


def base_releases(store: Store, binary: str, new: LinkRecord, tags: list[str] | None) -> list[tuple[str, LinkRecord]]:
    """(tag, base link) to patch from: *tags* as given, else every release with a link of *binary*.

    Without *tags*, a release of the current build itself (same link or
    same build-id) is left out: there is nothing to patch.
    """
    if tags is not None:
        return [(tag, find_links(store, binary, tag, None)[0]) for tag in tags]
    bases = []
    for release in store.records.releases():
        try:
            base, _ = find_links(store, binary, release.tag, None)
        except DiffError:
            continue  # this release does not ship the binary
        if base.id == new.id or (base.build_id is not None and base.build_id == new.build_id):
            continue
        bases.append((release.tag, base))
    return bases


def _to_label(store: Store, new: LinkRecord) -> str:
    tags = store.records.release_tags_by_link().get(new.id or -1)
    return tags[-1] if tags else f"build {new.build_id}"


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def collect_patches(store: Store, binaries: list[str], out_dir: str | os.PathLike[str],
                    from_tags: list[str] | None = None, signing_key: SigningKey | None = None,
                    progress: Callable[[CollectedPatch], None] | None = None) -> CollectResult:
    """Make, sign and index the patch set of *binaries*; see the module docstring.

    *signing_key* is a ``buildhook.sign.SigningKey`` (or None: unsigned);
    *progress*, when given, is called with each entry as it is done.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries: list[CollectedPatch] = []
    names: dict[str, str] = {}
    for binary in binaries:
        path = os.path.realpath(binary)
        latest = store.records.latest_links([path]).get(path)
        if latest is None:
            raise CollectError(f"no recorded link of {path} in store {store.root}; build it with buildhook-cc first")
        try:
            bases = base_releases(store, path, latest, from_tags)
        except DiffError as exc:
            raise CollectError(str(exc)) from exc
        if not bases:
            raise CollectError(f"no release of {path} to patch from other than the current build itself "
                               "(make one with `buildhook release TAG` before the change)")
        to_label = _to_label(store, latest)
        for tag, base in bases:
            po_name = os.path.basename(default_patch_path(path, tag))
            if names.setdefault(po_name, path) != path:
                raise CollectError(f"{path} and {names[po_name]} would both write {po_name}; collect them "
                                   "into separate folders")
            entry = _collect_one(store, path, tag, base, latest, to_label, out / po_name, signing_key)
            entries.append(entry)
            if progress is not None:
                progress(entry)
    result = CollectResult(entries, out / INDEX_NAME, out / REPORT_NAME)
    write_index(result)
    from buildhook.report import render_collect_report

    _write_atomically(result.report_path, render_collect_report(result.entries).encode("utf-8"))
    return result


def _collect_one(store: Store, binary: str, tag: str, base: LinkRecord, new: LinkRecord, to_label: str,
                 po_path: Path, signing_key: SigningKey | None) -> CollectedPatch:
    from buildhook.apply.signature import signature_path

    entry = CollectedPatch(binary, tag, to_label, ERROR, base.build_id, new.build_id)
    # What an earlier run left here would be taken for this run's result: a stale patch or signature.
    for stale in (po_path, Path(signature_path(str(po_path)))):
        stale.unlink(missing_ok=True)
    try:
        outcome = make_patch(store, base, new, tag, to_label)
    except (DiffError, MissingBlobError, CorruptBlobError) as exc:
        entry.error = str(exc)
        return entry
    result = outcome.result
    entry.outcome = result.outcome
    entry.warnings = [{"symbol": w.symbol, "file": w.file, "rule": w.rule, "message": w.message}
                      for w in result.warnings]
    entry.refusals = [{"symbol": r.symbol, "file": r.file, "rule": r.rule, "reason": r.message}
                      for r in result.refusals]
    entry.functions = [{"name": f.name, "file": f.file, "old_size": f.old_size, "new_size": f.new_size,
                        "old_address": f.old_address} for f in result.replaced]
    entry.new_functions = [{"name": f.name, "file": f.file, "new_size": f.new_size, "reached": f.reached}
                           for f in result.new_functions]
    entry.new_data = [{"name": d.name, "file": d.file, "size": d.size} for d in result.new_data]
    if outcome.patch is None:
        return entry
    _write_atomically(po_path, outcome.patch)
    entry.po = po_path.name
    entry.sha256 = hashlib.sha256(outcome.patch).hexdigest()
    entry.size = len(outcome.patch)
    entry.patch_id = str(outcome.metadata["patch_id"]) if outcome.metadata else None
    if signing_key is not None:
        from buildhook.sign import sign_patch

        entry.signature = os.path.basename(sign_patch(str(po_path), signing_key))
        entry.key_id = signing_key.key_id
    from buildhook.report.review import review_functions

    entry.reviews = review_functions(store, base, new, result.replaced)
    return entry


def write_index(result: CollectResult) -> None:
    """``index.json``: the format tag and one object per entry (see docs/release-pipeline.md)."""
    document = {"format": INDEX_FORMAT, "patches": [entry.to_json() for entry in result.entries]}
    _write_atomically(result.index_path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))
