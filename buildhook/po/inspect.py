"""``buildhook inspect``: what a patch does, for people and for pipelines."""

from __future__ import annotations

from buildhook.po.names import demangle, demangle_text
from buildhook.po.reader import PatchObject


def patch_summary(patch: PatchObject) -> dict[str, object]:
    """The JSON form: format, id, target, releases, functions, data, warnings."""
    meta = patch.metadata
    return {
        "format": meta["format"],
        "patch_id": meta["patch_id"],
        "target": meta["target"],
        "from": meta["from"],
        "to": meta["to"],
        "to_build_id": meta.get("to_build_id"),
        "functions": [
            {key: entry.get(key) for key in ("name", "file", "old_address", "old_size", "new_size", "room", "reached")}
            for entry in meta["functions"]
        ],
        "new_functions": [
            {key: entry.get(key) for key in ("name", "file", "new_size", "reached")} for entry in meta["new_functions"]
        ],
        "new_data": meta["new_data"],
        "imports": sorted(entry["name"] for entry in meta["symbols"] if entry.get("bind") == "dynamic"),
        "migrations": [{key: entry.get(key) for key in ("name", "file", "kind", "old_size", "new_size", "transform")}
                       for entry in meta.get("migrations", [])],
        "hooks": [{key: entry.get(key) for key in ("kind", "name", "file")} for entry in meta.get("hooks", [])],
        "warnings": meta["warnings"],
        "size": len(patch.data),
    }


def describe_patch(patch: PatchObject) -> str:
    """A few lines a reviewer reads before applying."""
    meta = patch.metadata
    lines = [
        f"patch {meta['patch_id'][:16]}  ({meta['format']}, {len(patch.data)} bytes)",
        f"  target {meta['target']['path']}  build-id {meta['target']['build_id']}",
        f"  from {meta['from']} to {meta['to']}",
    ]
    if meta["functions"]:
        lines.append("  replaces (a jump at each old entry):")
        for entry in meta["functions"]:
            lines.append(f"    {entry['file']}: {demangle(entry['name'])}  at {entry['old_address']:#x}, "
                         f"{entry['old_size']} → {entry['new_size']} bytes ({entry['reached']})")
    if meta["new_functions"]:
        lines.append("  adds functions:")
        for entry in meta["new_functions"]:
            lines.append(f"    {entry['file']}: {demangle(entry['name'])}  {entry['new_size']} bytes ({entry['reached']})")
    if meta["new_data"]:
        lines.append("  adds variables:")
        for entry in meta["new_data"]:
            lines.append(f"    {entry['file']}: {demangle(entry['name'])}  {entry['size']} bytes in {entry['section']}")
    for entry in meta.get("migrations", []):
        how = {"size": "if it still holds its initial value (checked in the target)",
               "value": "with its new initial value if the process never changed it, else its running value",
               "transform": f"filled by {demangle(entry['transform'])}, the world stopped"}[entry["kind"]]
        lines.append(f"  moves {entry['file']}: {demangle(entry['name'])} ({entry['old_size']} → "
                     f"{entry['new_size']} bytes) to new storage, {how}")
    for entry in meta.get("hooks", []):
        lines.append(f"  {entry['kind'].replace('_', '-')} hook: {entry['file']}: {demangle(entry['name'])}")
    imports = sorted(entry["name"] for entry in meta["symbols"] if entry.get("bind") == "dynamic")
    if imports:
        lines.append(f"  library symbols: {'; '.join(demangle(name) for name in imports)}")
    for warning in meta["warnings"]:
        lines.append(demangle_text(f"  warning: {warning['file']}: {warning['symbol']}: {warning['message']}"))
    return "\n".join(lines)
