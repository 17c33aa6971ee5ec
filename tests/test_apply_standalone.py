"""The applier stands alone: no build-side imports, and a one-file zipapp that runs on bare python3."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import run

ALLOWED_BUILDHOOK = {"buildhook", "buildhook.apply", "buildhook.po", "buildhook.po.format", "buildhook.po.names",
                     "buildhook.po.reader",
                     "buildhook.elf", "buildhook.elf.buildid", "buildhook.elf.dynsym"}


def test_applier_imports_only_stdlib_pyelftools_and_the_po_reader() -> None:
    code = (
        "import sys, pkgutil, importlib, buildhook.apply\n"
        "for m in pkgutil.iter_modules(buildhook.apply.__path__):\n"
        "    importlib.import_module('buildhook.apply.' + m.name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            check=True).stdout.split()
    foreign = []
    for name in loaded:
        top = name.split(".")[0]
        if name.startswith("buildhook.apply") or name in ALLOWED_BUILDHOOK:
            continue
        if top in sys.stdlib_module_names or top in ("elftools", "_distutils_hack", "__editable___buildhook_0_1_0_finder") \
                or top.startswith("__editable__") or name == "__main__":
            continue
        foreign.append(name)
    assert foreign == [], f"the applier pulls in {foreign}"


def test_zipapp_runs_on_python_with_no_site_packages(tmp_path: Path, env: dict[str, str], buildhook_cmd: str) -> None:
    archive = tmp_path / "buildhook-apply.pyz"
    run([buildhook_cmd, "applier-zipapp", str(archive)], env)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        # -I: isolated, no site-packages, no PYTHONPATH: only the archive's own contents.
        result = subprocess.run(["python3", "-I", str(archive), "status", "--pid", str(sleeper.pid)],
                                capture_output=True, text=True, timeout=60)
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    assert f"process {sleeper.pid}: no patches applied" in result.stdout
    bad = subprocess.run(["python3", "-I", str(archive), "apply", str(tmp_path / "missing.po"), "--pid", "1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"buildhook-apply: error: cannot read {tmp_path / 'missing.po'}: No such file or directory"


def test_the_applier_can_perform_every_relocation_a_po_may_hold() -> None:
    """One set of types for the format; the diff and reader check against it, the loader implements it."""
    from buildhook.apply.loader import RECIPES
    from buildhook.po.format import SUPPORTED_RELOCATIONS

    assert set(RECIPES) == set(SUPPORTED_RELOCATIONS)
