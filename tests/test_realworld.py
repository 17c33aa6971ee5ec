"""Real servers through their Debian security series (issue 6): opt-in, `pytest -m realworld`.

Long (fetches and builds Debian sources, several rebuilds), so not part of
CI; the same harness is bench/realworld.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "realworld.py"

pytestmark = [pytest.mark.realworld,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (apt-get, ptrace)")]


def verdict(check: str) -> str:
    """A check's answer without its measured times ("200 n=inf, slow (260.1 ms)" -> "200 n=inf, slow")."""
    return re.sub(r" \([^)]*ms\)", "", check)


@pytest.mark.parametrize("package", ["memcached", "haproxy"])
def test_security_series_applies_live_without_client_errors(package: str) -> None:
    result = subprocess.run([sys.executable, str(BENCH), package, "--json"], capture_output=True,
                            text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["client_errors"] == [] and summary["requests"] > 0
    rows = summary["patches"]
    assert rows and all(row["outcome"] in ("applied", "no code change", "refused") for row in rows)
    for row in rows:
        if row["outcome"] == "applied":
            assert row["state_intact"] and row["client_errors"] == 0
            assert row["functions_replaced"] and set(row["functions_replaced"]) <= set(row["cumulative_replaced"])
            if row["check_before"] is not None:  # the fix's live regression check answers differently now
                assert verdict(row["check_after"]) != verdict(row["check_before"]), row
        if row["outcome"] == "refused":  # every refusal names its reason (e.g. the struct that changed)
            assert row["reasons"] and all(reason.strip() for reason in row["reasons"])
