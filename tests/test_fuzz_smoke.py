"""A smoke run of the differential fuzzer (bench/fuzz_diff.py): 20 generated change pairs.

Each seed is a small generated program and one mutation of it, built at the
optimisation level, PIE setting and -fdata-sections setting the seed picks;
the pair goes through the same oracle as tests/cases.  The long run (2,000
pairs and more) is a benchmark; its results are in bench/RESULTS.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import changepairs

SEEDS = range(1, 21)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the oracle attaches with ptrace as root")


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_pair_behaves_as_the_new_build(seed: int, tmp_path: Path) -> None:
    result = changepairs.run_seed(seed, tmp_path)
    assert not result.error, f"seed {seed} ({result.mutation}, {result.cflags}): {result.error}"
    assert not result.divergences, f"seed {seed} ({result.mutation}, {result.cflags}):\n" + "\n".join(result.divergences)
    assert result.outcome in ("patch", "no-change", "refused")


def test_the_smoke_seeds_cover_the_build_matrix_and_patch_for_real() -> None:
    """The 20 seeds are not a trivial sample: several configurations, and most pairs are real patches."""
    programs = [changepairs.pair(seed) for seed in SEEDS]
    configurations = {(old.optimisation, old.pie, old.data_sections) for old, _new, _ in programs}
    assert len({optimisation for optimisation, _, _ in configurations}) == 4
    assert {pie for _, pie, _ in configurations} == {True, False}
    assert {sections for _, _, sections in configurations} == {True, False}
    assert sum(changepairs.render(old) != changepairs.render(new) for old, new, _ in programs) >= 18
