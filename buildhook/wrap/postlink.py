"""Patches as a by-product of the build: the step after every recorded link.

This is the wrapper's step (it runs inside ``buildhook-cc``, once per link),
so it stays light and imports the diff stage only when a patch is needed.
Once a binary has a release, each link of it writes ``BINARY.from-TAG.po``
next to it (from its latest release, or from the tags the user configured).
The step never fails the build unless strict mode is on: a refusal or an
error is one line on stderr; a written patch is silent (its file says it).
When no program object differs from the release's, nothing is parsed (a few
hash comparisons), and a stale patch for that release is removed, since it
would no longer describe this build.
"""

from __future__ import annotations

import os

from buildhook.po.format import default_patch_path
from buildhook.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from buildhook.store.records import LinkRecord


def base_tags(release_tags: list[str], setting: str) -> list[str]:
    """The release tags to patch from (of the binary's *release_tags*, oldest first), per ``patch_from``."""
    choice = setting.strip().lower()
    if choice == "off":
        return []
    if choice == "latest":
        return release_tags[-1:]
    wanted = [tag.strip() for tag in setting.split(",") if tag.strip()]
    return [tag for tag in wanted if tag in release_tags]


def patches_after_link(store: Store, link: LinkRecord, setting: str) -> tuple[bool, list[str]]:
    """Write the configured patches for a fresh link: (all succeeded, lines to print).

    Costs two small queries when there is nothing to do (no release, or no
    program object differs from the release's); the diff stage is imported
    only when a patch is really needed.
    """
    lines: list[str] = []
    ok = True
    if setting.strip().lower() == "off":
        return True, []
    releases = store.records.releases_of(link.binary)
    release_links = dict(releases)
    current = sorted(item.sha256 for item in link.objects)
    for tag in base_tags([tag for tag, _ in releases], setting):
        path = default_patch_path(link.binary, tag)
        if store.records.program_object_hashes(release_links[tag]) == current:
            if os.path.exists(path):
                os.unlink(path)
            continue
        from buildhook.diff import PATCH, REFUSED, DiffError, make_patch

        base = store.records.links("id = ?", (release_links[tag],))[0]
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
