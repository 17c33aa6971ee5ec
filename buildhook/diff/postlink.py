"""Patches as a by-product of the build: the step after every recorded link.

Once a binary has a release, each link of it writes ``BINARY.from-TAG.po``
next to it (from its latest release, or from the tags the user configured).
The step never fails the build unless strict mode is on: a refusal or an
error is one line on stderr; a written patch is silent (its file says it).  When no program object differs from the
release's, nothing is parsed (a few hash comparisons), and a stale patch
for that release is removed, since it would no longer describe this build.
"""

from __future__ import annotations

import os

from buildhook.diff import PATCH, REFUSED, DiffError, default_patch_path, make_patch
from buildhook.store import Store
from buildhook.store.records import LinkRecord


def base_tags(store: Store, link: LinkRecord, setting: str) -> list[str]:
    """The release tags to patch from, per the ``patch_from`` setting."""
    if setting.strip().lower() == "off":
        return []
    releases = [release for release in store.records.releases()
                if any(item.binary == link.binary for item in release.links)]
    if setting.strip().lower() == "latest":
        return [releases[-1].tag] if releases else []
    wanted = [tag.strip() for tag in setting.split(",") if tag.strip()]
    have = {release.tag for release in releases}
    return [tag for tag in wanted if tag in have]


def patches_after_link(store: Store, link: LinkRecord, setting: str) -> tuple[bool, list[str]]:
    """Write the configured patches for a fresh link: (all succeeded, lines to print)."""
    lines: list[str] = []
    ok = True
    releases = {release.tag: release for release in store.records.releases()}
    for tag in base_tags(store, link, setting):
        base = next(item for item in releases[tag].links if item.binary == link.binary)
        path = default_patch_path(link.binary, tag)
        if sorted(i.sha256 for i in base.objects) == sorted(i.sha256 for i in link.objects):
            if os.path.exists(path):
                os.unlink(path)
            continue
        try:
            outcome = make_patch(store, base, link, tag, f"build {link.build_id}")
        except (DiffError, OSError, ValueError) as exc:
            ok = False
            lines.append(f"buildhook: no patch from {tag} for {link.binary}: {exc}")
            continue
        result = outcome.result
        if result.outcome == PATCH and outcome.patch is not None:
            with open(path, "wb") as handle:  # silent: the build's output stays the compiler's
                handle.write(outcome.patch)
        elif result.outcome == REFUSED:
            ok = False
            if os.path.exists(path):
                os.unlink(path)
            reasons = "; ".join(refusal.line() for refusal in result.refusals)
            lines.append(f"buildhook: patch from {tag} for {os.path.basename(link.binary)} refused: {reasons}")
        elif os.path.exists(path):
            os.unlink(path)
    return ok, lines
