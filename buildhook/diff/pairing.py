"""Pairing the objects of the base link with those of the new link.

Objects are paired by the most specific key that is unique on both sides:
the absolute path, then the path relative to the folder the link ran in
(a tree built in another directory), then the source file, then the source
path relative to the link folder, then a unique base name.  Pairs whose
content hash is equal are never parsed: the cost of a diff grows with the
change, not with the program.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from buildhook.store.records import LinkInput, LinkRecord


@dataclass
class ObjectPair:
    """An object of the base link and its counterpart in the new link (either may be None)."""

    old: LinkInput | None
    new: LinkInput | None

    @property
    def changed(self) -> bool:
        return self.old is None or self.new is None or self.old.sha256 != self.new.sha256

    @property
    def source_name(self) -> str:
        """The source file's base name, as refusals and results name it."""
        item = self.new or self.old
        assert item is not None
        return item.source_name


def _keys(link: LinkRecord) -> list[Callable[[LinkInput], str | None]]:
    folder = link.cwd

    def relative(path: str | None) -> str | None:
        return os.path.relpath(path, folder) if path else None

    return [
        lambda item: item.display_path,
        lambda item: relative(item.path) + (f"({item.member})" if item.member else ""),
        lambda item: item.source,
        lambda item: relative(item.source),
        lambda item: os.path.basename(item.display_path),
    ]


def pair_objects(base: LinkRecord, new: LinkRecord) -> list[ObjectPair]:
    """Every program object of either link, paired where a counterpart exists."""
    old_left = list(base.objects)
    new_left = list(new.objects)
    pairs: list[ObjectPair] = []
    for old_key, new_key in zip(_keys(base), _keys(new)):
        old_index = _unique_index(old_left, old_key)
        new_index = _unique_index(new_left, new_key)
        matched = [(old_index[key], new_index[key]) for key in old_index if key in new_index]
        for old_item, new_item in matched:
            pairs.append(ObjectPair(old_item, new_item))
            old_left.remove(old_item)
            new_left.remove(new_item)
    pairs.extend(ObjectPair(item, None) for item in old_left)
    pairs.extend(ObjectPair(None, item) for item in new_left)
    return pairs


def _unique_index(items: list[LinkInput], key: Callable[[LinkInput], str | None]) -> dict[str, LinkInput]:
    index: dict[str, LinkInput] = {}
    seen_twice: set[str] = set()
    for item in items:
        value = key(item)
        if value is None:
            continue
        if value in index:
            seen_twice.add(value)
        index[value] = item
    return {value: item for value, item in index.items() if value not in seen_twice}
