"""The native parts, both optional; everything else is in pyproject.toml.

* The native pause (buildhook/apply/pause.c) as an extension.  The library
  has no Python API (ctypes loads it), so one build serves any python3 and
  the zipapp carries it; it is named as a plain shared library
  (``libbuildhook-pause.so.1``), not as a Python module, so that no import
  system takes it for one.  Without it the applier uses its Python pause
  (buildhook/apply/native.py).
* The native compiler wrapper (buildhook/wrap/shim.c), installed as
  ``buildhook-cc`` and ``buildhook-c++`` in place of the Python scripts of
  those names, with ``buildhook-cc-python`` beside it for every command it
  hands over.  A CPython start per compile costs more than the 3 % a build
  may pay (bench/RESULTS.md).  Without a C compiler the Python scripts stay.
  buildhook.h goes to ``<prefix>/share/buildhook/include`` too, where the
  shim finds it from its own folder (``<prefix>/bin``); an editable install
  has no such copy, so the shim also knows the folder it was built from.

Without a compiler the package still installs and works, only slower.
"""

import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from distutils.command.build_scripts import build_scripts  # setuptools supplies distutils (its own copy)

LIBRARY = "libbuildhook-pause.so.1"
SHIM_SOURCE = "buildhook/wrap/shim.c"
SHIM_NAMES = ("buildhook-cc", "buildhook-c++")


class BuildLibrary(build_ext):
    def get_ext_filename(self, fullname: str) -> str:
        return os.path.join(*fullname.split(".")[:-1], LIBRARY)


class BuildScriptsWithShim(build_scripts):
    """The scripts as usual, then the native shim over buildhook-cc and buildhook-c++ when it compiles."""

    def run(self) -> None:
        super().run()
        compiler = os.environ.get("CC", "cc").split()
        built = os.path.join(self.build_dir, "buildhook-cc.native")
        source_header = os.path.abspath(os.path.join("buildhook", "include"))
        command = [*compiler, "-O2", "-Wall", "-Wextra", f'-DSOURCE_HEADER_FOLDER="{source_header}"', "-o", built,
                   SHIM_SOURCE]
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as exc:
            print(f"buildhook: native compiler wrapper not built ({exc}); the Python one is installed",
                  file=sys.stderr)
            return
        if result.returncode != 0:
            print(f"buildhook: native compiler wrapper not built:\n{result.stderr}the Python one is installed",
                  file=sys.stderr)
            return
        for name in SHIM_NAMES:
            shutil.copyfile(built, os.path.join(self.build_dir, name))
            os.chmod(os.path.join(self.build_dir, name), 0o755)
        os.unlink(built)


setup(ext_modules=[Extension("buildhook.apply.pause", ["buildhook/apply/pause.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra"])],
      cmdclass={"build_ext": BuildLibrary, "build_scripts": BuildScriptsWithShim},
      data_files=[("share/buildhook/include", ["buildhook/include/buildhook.h"])])
