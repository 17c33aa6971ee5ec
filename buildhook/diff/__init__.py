"""Patch generation: diff a build against a release and write a ``.po``.

``make_patch`` is the whole stage: find the base link (the release) and the
new link, plan (pair → compare → include → check), and write the patch
object.  The CLI (``buildhook diff``) and the post-link step both call it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from buildhook.diff.model import NO_CHANGE, PATCH, REFUSED, DiffResult
from buildhook.store import Store
from buildhook.store.records import LinkRecord

__all__ = ["DiffError", "PatchOutcome", "default_patch_path", "find_links", "make_patch",
           "NO_CHANGE", "PATCH", "REFUSED"]


class DiffError(Exception):
    """A diff cannot be made (unknown release, no link of the binary, unreadable object)."""


@dataclass
class PatchOutcome:
    """What a diff produced: the decisions, and the .po bytes when it is a patch."""

    result: DiffResult
    base: LinkRecord
    new: LinkRecord
    patch: bytes | None
    metadata: dict[str, object] | None


from buildhook.po.format import default_patch_path  # noqa: E402  (the naming convention lives with the format)


def _release_link(store: Store, tag: str, binary: str) -> LinkRecord:
    releases = {release.tag: release for release in store.records.releases()}
    if tag not in releases:
        known = ", ".join(releases) or "none"
        raise DiffError(f"no release {tag} in store {store.root} (releases: {known})")
    links = releases[tag].links
    exact = [link for link in links if link.binary == binary]
    if exact:
        return exact[0]
    same_name = [link for link in links if os.path.basename(link.binary) == os.path.basename(binary)]
    if len(same_name) == 1:
        return same_name[0]
    raise DiffError(f"release {tag} has no link of {binary} (it has: {', '.join(l.binary for l in links)})")


def find_links(store: Store, binary: str, from_tag: str, to_tag: str | None) -> tuple[LinkRecord, LinkRecord]:
    """(base link of release *from_tag*, new link: release *to_tag* or the latest link of *binary*)."""
    path = os.path.realpath(binary)
    base = _release_link(store, from_tag, path)
    if to_tag is not None:
        return base, _release_link(store, to_tag, path)
    latest = store.records.latest_links([path]).get(path)
    if latest is None:
        raise DiffError(f"no recorded link of {path} in store {store.root}; build it with buildhook-cc first")
    return base, latest


def make_patch(store: Store, base: LinkRecord, new: LinkRecord, from_tag: str, to_label: str) -> PatchOutcome:
    """Plan the patch from *base* to *new* and, if it is one, write its bytes."""
    from buildhook.diff.engine import PatchPlanner
    from buildhook.po.writer import write_patch

    plan = PatchPlanner(store, base, new).plan()
    if plan.content is None:
        return PatchOutcome(plan.result, base, new, None, None)
    result = plan.result
    metadata: dict[str, object] = {
        "target": {"path": base.binary, "build_id": base.build_id},
        "from": from_tag,
        "to": to_label,
        "to_build_id": new.build_id,
        "functions": [
            {"name": f.name, "file": f.file, "old_address": f.old_address, "old_size": f.old_size,
             "old_sha256": f.old_sha256, "room": f.room, "new_size": f.new_size, "reached": f.reached,
             "old_parts": [list(part) for part in f.old_parts],
             "entry_copy": f.entry_copy, "entry_copy_refused": f.entry_copy_refused,
             "symbol": f.symbol}
            for f in result.replaced
        ],
        "new_functions": [
            {"name": f.name, "file": f.file, "new_size": f.new_size, "reached": f.reached,
             "symbol": f.symbol}
            for f in result.new_functions
        ],
        "new_data": [{"name": d.name, "file": d.file, "size": d.size, "section": d.section, "symbol": d.symbol}
                     for d in result.new_data],
        "warnings": [{"symbol": w.symbol, "file": w.file, "rule": w.rule, "message": w.message}
                     for w in result.warnings],
        "hooks": [{"kind": h.kind, "name": h.name, "file": h.file, "symbol": h.symbol} for h in result.hooks],
        "migrations": [
            {"name": m.name, "file": m.file, "kind": m.kind, "old_address": m.old_address, "old_size": m.old_size,
             "new_size": m.new_size, "symbol": m.symbol, "initial": m.initial.hex(), "relative": m.relative,
             "transform": m.transform, "transform_symbol": m.transform_symbol}
            for m in result.migrated
        ],
        "tls": plan.tls,
        "unwind": plan.unwind,
    }
    plan.content.metadata = metadata
    data = write_patch(plan.content)
    from buildhook.po.reader import read_patch

    return PatchOutcome(result, base, new, data, read_patch(data, "<new patch>").metadata)
