"""Every case of tests/cases/: the diff's exact report, and the patched process against the new build.

Each folder of ``tests/cases/`` holds an ``old/`` and a ``new/`` version of a
small C program that answers lines on stdin (the format is in
``tests/cases/README.md``).  Per case: build old with ``buildhook-cc``,
release it, build new over it, run ``buildhook diff`` and, where the case has
an ``[expect]`` table, compare the report with it; then the differential
oracle (tests/support/oracle.py) runs the old program, applies the patch
live, and compares its answers with a fresh run of the new program on the
same inputs, and, after ``revert``, with the old program.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support import oracle

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the oracle attaches to the case programs with ptrace as root")


def check_patch_object(built: oracle.BuiltCase) -> None:
    """readelf reads the .po without a word on stderr; inspect lists exactly the replaced functions."""
    assert built.patch is not None
    readelf = oracle.run(["readelf", "-a", built.patch], built.env)
    assert readelf.returncode == 0 and not readelf.stderr.strip(), oracle.describe(readelf)
    inspect = oracle.run(["buildhook", "inspect", built.patch, "--json"], built.env)
    assert inspect.returncode == 0, oracle.describe(inspect)
    replaced = {f"{Path(item['file']).name}:{item['name']}" for item in json.loads(inspect.stdout)["functions"]
                if item.get("old_address") is not None}
    assert replaced == oracle._symbols(built.diff.report.get("replaced", []))


def check_text_warnings(built: oracle.BuiltCase) -> None:
    """`buildhook diff` without --json says every warning too, whatever the outcome."""
    text = oracle.run(["buildhook", "diff", "--from", oracle.RELEASE, built.new_binary, "-o", built.patch or
                       built.new_binary.parent / "text.po"], built.env, built.new_binary.parent)
    said = text.stdout + text.stderr
    for warning in built.diff.report["warnings"]:
        assert f"{warning['symbol']}: " in said and f"[{warning['rule']}]" in said, \
            f"warning {warning} missing from the text output:\n{oracle.describe(text)}"


@pytest.mark.parametrize("folder", oracle.case_folders(), ids=lambda folder: folder.name)
def test_case(folder: Path, tmp_path: Path) -> None:
    case = oracle.Case.load(folder)
    built = oracle.build_case(case, tmp_path)
    context = f"case {case.name}: {case.description}\n{built.diff.transcript}"
    mismatches = oracle.report_mismatches(built)
    assert not mismatches, "\n".join(mismatches) + "\n" + context
    if built.diff.outcome == "patch":
        check_patch_object(built)
    if case.expect is not None and case.expect.warnings:
        check_text_warnings(built)
    if case.unsupported is not None:  # a known limit of the oracle: it must say so, not pass
        with pytest.raises(oracle.OracleUnsupported):
            oracle.check_behaviour(built)
        return
    verdict = oracle.check_behaviour(built)
    assert verdict.holds, "\n".join(verdict.divergences + verdict.notes) + "\n" + context
