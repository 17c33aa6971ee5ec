"""buildhook: hot patches for running Linux programs, made by the normal build.

The package is split by pipeline stage (see docs and ../shared/DESIGN.md):
``wrap`` (compiler wrapper), ``store`` (content-addressed store and records),
``elf`` (reading objects, binaries and link maps).  Each stage imports only
what it needs, because ``buildhook-cc`` starts once per compile.
"""

__version__ = "0.1.0"
