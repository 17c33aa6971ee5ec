"""Human reports, rendered with jinja2 from the templates in ``templates/``.

``render_collect_report`` is ``report.html`` of ``buildhook collect``: per
patch what it replaces and adds (with sizes), its warnings, the reasons of
a refused base release, and the disassembly diff of every replaced function.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from buildhook.po.names import demangle_text

if TYPE_CHECKING:
    from buildhook.collect import CollectedPatch

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _environment():  # type: ignore[no-untyped-def]
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def diff_line_class(line: str) -> str:
    """CSS class of a unified-diff line."""
    if line.startswith(("---", "+++")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    return {"+": "added", "-": "removed"}.get(line[:1], "context")


def short_label(label: str) -> str:
    """``build 4707827a3870…`` instead of a 40-digit build-id, where space is short."""
    return label[:18] + "…" if label.startswith("build ") and len(label) > 18 else label


def render_collect_report(entries: list[CollectedPatch]) -> str:
    """The HTML review page of a collected patch set (self-contained: no scripts, no external files)."""
    import os

    environment = _environment()
    environment.filters["basename"] = os.path.basename
    environment.filters["demangle"] = demangle_text
    environment.filters["diff_class"] = diff_line_class
    environment.filters["short_label"] = short_label
    binaries = sorted({entry.binary for entry in entries})
    return environment.get_template("collect.html.j2").render(entries=entries, binaries=binaries)
