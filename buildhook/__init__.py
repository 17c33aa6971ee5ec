"""buildhook: hot patches for running Linux programs, made by the normal build.

The package is split by pipeline stage (see docs and ../shared/DESIGN.md):
``wrap`` (compiler wrapper), ``store`` (content-addressed store and records),
``elf`` (reading objects, binaries and link maps).  Each stage imports only
what it needs, because ``buildhook-cc`` starts once per compile.
"""

import os as _os

__version__ = "0.1.0"
# buildhook.h (docs/data-changes.md); buildhook-cc puts it on the include path, so found without imports
INCLUDE_DIR = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "include")
APPLIER_COMMANDS = ("apply", "revert", "status")  # the commands buildhook.apply.cli runs


def step_aside_for(words: list[str]) -> None:
    """For an applier command (*words*: the arguments after the program), the short slice and the
    deferring (buildhook.apply.scheduling.step_aside) before anything else is imported: scripts/buildhook
    calls it on its first lines, cli.main for callers that come in through it."""
    if words[:1] and words[0] in APPLIER_COMMANDS:
        from buildhook.apply.scheduling import step_aside

        step_aside()
