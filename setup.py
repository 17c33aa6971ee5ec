"""The native pause (buildhook/apply/pause.c) as an optional extension; everything else is in pyproject.toml.

Optional: without a compiler the package still installs, and the applier
uses its Python pause (buildhook/apply/native.py).  The library has no
Python API (ctypes loads it), so one build serves any python3 and the
zipapp carries it; it is named as a plain shared library
(``libbuildhook-pause.so.1``), not as a Python module, so that no import
system takes it for one.
"""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

LIBRARY = "libbuildhook-pause.so.1"


class BuildLibrary(build_ext):
    def get_ext_filename(self, fullname: str) -> str:
        return os.path.join(*fullname.split(".")[:-1], LIBRARY)


setup(ext_modules=[Extension("buildhook.apply.pause", ["buildhook/apply/pause.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra"])],
      cmdclass={"build_ext": BuildLibrary})
