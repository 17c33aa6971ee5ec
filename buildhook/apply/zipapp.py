"""``buildhook applier-zipapp OUT.pyz``: the applier as one file for production hosts.

The archive holds the applier, the .po reader, the build-id and
dynamic-symbol readers and pyelftools, and nothing of the build side, so a host with only ``python3``
can run ``python3 buildhook-apply.pyz apply X.po --pid N``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipapp
from pathlib import Path

import elftools

import buildhook

# The applier's modules, relative to the buildhook package (see the import test).
APPLIER_FILES = ("__init__.py", "apply", "po/__init__.py", "po/format.py", "po/names.py", "po/reader.py",
                 "elf/__init__.py", "elf/buildid.py", "elf/dynsym.py")
# The slice and the lowest weight are asked for before the applier's imports (scheduling.step_aside: they
# are much of its CPU).
MAIN = ("import sys\nfrom buildhook.apply.scheduling import step_aside\nstep_aside()\n"
        "from buildhook.apply.cli import main\nsys.exit(main())\n")


def write_zipapp(output: str) -> None:
    """Write the standalone applier to *output* (executable, ``#!/usr/bin/env python3``)."""
    package = Path(buildhook.__file__).parent
    with tempfile.TemporaryDirectory(prefix="buildhook-zipapp-") as scratch:
        root = Path(scratch)
        for name in APPLIER_FILES:
            source = package / name
            destination = root / "buildhook" / name
            if source.is_dir():
                shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", "zipapp.py"))
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination)
        shutil.copytree(Path(elftools.__file__).parent, root / "elftools",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (root / "__main__.py").write_text(MAIN)
        zipapp.create_archive(root, output, interpreter="/usr/bin/env python3")
    os.chmod(output, 0o755)
