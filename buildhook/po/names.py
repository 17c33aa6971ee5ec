"""C++ names as people read them: ``_Z5parsei`` is ``parse(int)`` in what buildhook prints.

The demangler is the C++ runtime's own, ``__cxa_demangle`` in libstdc++
(through ctypes: exact, including clone suffixes such as ``.isra.0``, and no
process per name as ``c++filt`` would need).  Where libstdc++ cannot be
loaded (an applier machine without it) names stay mangled, which is still
exact.  JSON output keeps the mangled name: it is what the symbol tables
say, and what a pipeline matches on.
"""

from __future__ import annotations

import ctypes
import functools
import re

_MANGLED = re.compile(r"(?<![A-Za-z0-9_])_Z[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")


@functools.cache
def _demangler():  # type: ignore[no-untyped-def]
    try:
        runtime = ctypes.CDLL("libstdc++.so.6")
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    function = runtime.__cxa_demangle
    function.restype = ctypes.c_void_p
    function.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    libc.free.argtypes = [ctypes.c_void_p]
    return function, libc.free


@functools.cache
def demangle(name: str) -> str:
    """The readable form of a mangled C++ name; any other name as it is."""
    found = _demangler()
    if found is None or not name.startswith("_Z"):
        return name
    function, free = found
    status = ctypes.c_int(0)
    result = function(name.encode("ascii", "replace"), None, None, ctypes.byref(status))
    if status.value != 0 or not result:
        return name
    try:
        return ctypes.string_at(result).decode("utf-8", "replace")
    finally:
        free(result)


def demangle_text(text: str) -> str:
    """*text* with every mangled name in it demangled (refusals and warnings quote symbol names)."""
    return _MANGLED.sub(lambda match: demangle(match.group(0)), text)
