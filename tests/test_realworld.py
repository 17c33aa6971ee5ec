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


# What each security patch of the series must give, in series order (bench/RESULTS.md, "realworld").
# A patch that changes code must apply; one that changes no compiled code (tests, docs, QUIC,
# which is not built, helpers nothing calls yet) must say so; the only refusal is by design.
EXPECTED = {
    "memcached": [
        ("0008-CVE-2026-47783-CVE-2026-47784.patch", "applied", None),
        ("0009-CVE-2023-46852.patch", "applied", None),
        # a field inserted in the middle of struct mcp_parser_s: applied with its migration
        # (bench/memcached-CVE-2023-46853-migration.patch: BUILDHOOK_LAYOUT_CHANGE + a PRE_APPLY check)
        ("CVE-2023-46853.patch", "applied", None),
    ],
    # The fix adds CacheEntry::d_tooBig, in the tail padding of every record-cache entry: entries of
    # the running cache hold whatever the allocator left there, which the fixed code would read as
    # "too big" (SERVFAIL). The live patch (bench/pdns-recursor-CVE-2024-25590-live.patch) keeps it
    # as a shadow variable; MTasker's parked coroutines are unwound precisely (apply/fcontext.py).
    "pdns-recursor": [
        ("0001-Backport-4.9.8-patch-for-CVE-2024-25590.patch", "applied", None),
    ],
    "haproxy": [
        ("REORG-http-move-has_forbidden_char-from-h2.c-to-http.patch", "no code change", None),
        ("BUG-MAJOR-h3-reject-header-values-containing-invalid.patch", "no code change", None),
        ("BUG-MAJOR-http-reject-any-empty-content-length-heade.patch", "applied", None),
        ("MINOR-ist-add-new-function-ist_find_range-to-find-a-.patch", "no code change", None),
        ("MINOR-http-add-new-function-http_path_has_forbidden_.patch", "no code change", None),
        ("MINOR-h2-pass-accept-invalid-http-request-down-the-r.patch", "applied", None),
        ("REGTESTS-http-rules-add-accept-invalid-http-request-.patch", "no code change", None),
        ("BUG-MINOR-h1-do-not-accept-as-part-of-the-URI-compon.patch", "applied", None),
        ("BUG-MINOR-h2-reject-more-chars-from-the-path-pseudo-.patch", "applied", None),
        ("BUG-MINOR-h3-reject-more-chars-from-the-path-pseudo-.patch", "no code change", None),
        ("REGTESTS-http-rules-verify-that-we-block-by-default-.patch", "no code change", None),
        ("DOC-clarify-the-handling-of-URL-fragments-in-request.patch", "no code change", None),
        ("0001-BUG-MEDIUM-sample-fix-risk-of-overflow-when-replacin.patch", "applied", None),
        ("0001-BUG-CRITICAL-mjson-fix-possible-DoS-when-parsing-num.patch", "applied", None),
    ],
    # libprotobuf.so in a C++ host (bench/protobuf_host.cpp). Debian's series changes no C++ code:
    # CVE-2024-7254 is protobuf-java's (the C++ parser already stops at the recursion limit of 100),
    # the rest is Python, JSON and PHP. Our own hardening of the same code path is what goes live.
    "protobuf": [
        *[(f"CVE-2024-7254-{n}.patch", "no code change", None) for n in range(1, 6)],
        *[(f"CVE-2025-4565-{n}.patch", "no code change", None) for n in range(1, 4)],
        ("0001-Fix-Any-recursion-depth-bypass-in-Python-json_format.patch", "no code change", None),
        ("0002-Check-that-readRaw-does-not-accept-negative-length-v.patch", "no code change", None),
        ("0003-php-Fix-that-recursion-limit-is-not-enforced.patch", "no code change", None),
        ("local-protobuf-unknown-group-depth.patch", "applied", None),
    ],
}

# Arguments of bench/realworld.py beyond the package's name.
EXTRA_ARGS = {"protobuf": ["--local-patch", str(BENCH.parent / "protobuf-unknown-group-depth.patch")]}

# A check's exact verdicts (before, after), where a row must show what the live code does.
UNKNOWN_GROUPS = "unknown groups nested 64/65/100/101/100000 deep: "
BIG = "300 A records for big{n}.state.test: NOERROR, 300 A records; from the record cache: "
EXPECTED_CHECKS = {
    "pdns-recursor": {
        "0001-Backport-4.9.8-patch-for-CVE-2024-25590.patch": (BIG.format(n=1) + "NOERROR, 300 A records",
                                                              BIG.format(n=2) + "SERVFAIL, 0 A records"),
    },
    "protobuf": {
        **{f"CVE-2024-7254-{n}.patch": (UNKNOWN_GROUPS + "OK/OK/OK/ERR/ERR",) * 2 for n in range(1, 6)},
        "local-protobuf-unknown-group-depth.patch": (UNKNOWN_GROUPS + "OK/OK/OK/ERR/ERR",
                                                     UNKNOWN_GROUPS + "OK/ERR/ERR/ERR/ERR"),
    },
}


def verdict(check: str) -> str:
    """A check's answer without its measured times ("200 n=inf, slow (260.1 ms)" -> "200 n=inf, slow")."""
    return re.sub(r" \([^)]*ms\)", "", check)


@pytest.mark.parametrize("package", ["memcached", "haproxy", "protobuf", "pdns-recursor"])
def test_security_series_applies_live_without_client_errors(package: str) -> None:
    result = subprocess.run([sys.executable, str(BENCH), package, *EXTRA_ARGS.get(package, []), "--json"],
                            capture_output=True,
                            text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["client_errors"] == [] and summary["requests"] > 0
    rows = summary["patches"]
    found = [(Path(row["patch"]).name, row["outcome"]) for row in rows]
    assert found == [(name, outcome) for name, outcome, _ in EXPECTED[package]], found
    for row, (_name, _outcome, reason) in zip(rows, EXPECTED[package]):
        if reason is not None:
            assert any(reason in line for line in row["reasons"]), row["reasons"]
    for row in rows:
        if row["outcome"] == "applied":
            assert row["state_intact"] and row["client_errors"] == 0
            assert row["functions_replaced"] and set(row["functions_replaced"]) <= set(row["cumulative_replaced"])
            if row["check_before"] is not None:  # the fix's live regression check answers differently now
                assert verdict(row["check_after"]) != verdict(row["check_before"]), row
        if row["outcome"] == "refused":  # every refusal names its reason (e.g. the struct that changed)
            assert row["reasons"] and all(reason.strip() for reason in row["reasons"])
        expected_checks = EXPECTED_CHECKS.get(package, {}).get(row["patch"])
        if expected_checks is not None:
            assert (verdict(row["check_before"]), verdict(row["check_after"])) == expected_checks, row
