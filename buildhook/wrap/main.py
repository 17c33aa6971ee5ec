"""``buildhook-cc`` / ``buildhook-c++``: the compiler wrapper's entry points.

The contract with the user's build: the same exit status, stdout, stderr and
outputs as the real compiler (plus the documented flags), and never a silent
change.  A problem inside buildhook either fails the build step with one
line saying what and why, or, with ``BUILDHOOK_ON_ERROR=plain``, warns in one
line and lets the build go on unrecorded.

Start-up matters (this runs once per compile): the store, the ELF readers
and the map parser are imported only on the paths that need them, and the
compiler is started with posix_spawn rather than through subprocess.
"""

from __future__ import annotations

import os
import sys

from buildhook.settings import Settings, SettingsError
from buildhook.wrap.cmdline import DriverCommand, Mode, ResponseFileError, implicit_object_name, parse_driver_command
from buildhook.wrap.flags import FlagConflict, check_conflicts, compile_flags, compiler_family, link_flags
from buildhook.wrap.invocation import CompilerNotFound, Invocation, resolve_invocation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from buildhook.store import Store
    from buildhook.wrap import recording


def glob_match(name: str, pattern: str) -> bool:
    """fnmatch for the ``*``-only globs of BUILDHOOK_SKIP_OUTPUTS, without importing re."""
    if any(char in pattern for char in "?[]"):
        import fnmatch

        return fnmatch.fnmatchcase(name, pattern)
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return name == pattern
    if not (name.startswith(pieces[0]) and name.endswith(pieces[-1])):
        return False
    position = len(pieces[0])
    end = len(name) - len(pieces[-1])
    for piece in pieces[1:-1]:
        found = name.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return position <= end


class WrapperProblem(Exception):
    """Something inside buildhook went wrong; the message is one line for the user."""


class _Wrapper:
    """One run of buildhook-cc: settings, the resolved command, its parse."""

    def __init__(self, invocation: Invocation, settings: Settings, program: str, header_folder: str) -> None:
        self.invocation = invocation
        self.settings = settings
        self.program = program
        self.header_folder = header_folder
        try:
            self.cwd = os.getcwd()
        except FileNotFoundError as exc:
            raise WrapperProblem("the current directory no longer exists") from exc
        self.family = compiler_family(invocation.compiler)
        self.post_link_status = 0  # non-zero when a strict post-link patch step failed

    # -- running the real compiler ----------------------------------------

    def run(self, words: list[str]) -> int:
        """Run the compiler with inherited stdio and wait; a signal death is passed on."""
        command = self.invocation.prefix + words
        try:
            pid = os.posix_spawnp(command[0], command, self.invocation.child_environment())
        except OSError as exc:
            raise CompilerNotFound(f"cannot run {command[0]}: {exc.strerror}") from exc
        while True:
            try:
                _, wait_status = os.waitpid(pid, 0)
                break
            except KeyboardInterrupt:  # the compiler got the same SIGINT: wait for it to go
                continue
        status = os.waitstatus_to_exitcode(wait_status)
        if status < 0:
            import signal  # only now: it imports enum

            signal.signal(-status, signal.SIG_DFL)
            os.kill(os.getpid(), -status)
        return status

    def exec_plain(self) -> int:
        """Replace this process by the real compiler, exactly as called."""
        command = self.invocation.prefix + self.invocation.args
        try:
            os.execvpe(command[0], command, self.invocation.child_environment())
        except OSError as exc:
            raise CompilerNotFound(f"cannot run {command[0]}: {exc.strerror}") from exc
        return 127  # not reached

    # -- the three interesting modes --------------------------------------

    def main(self) -> int:
        if self.settings.flag("disable") or self.invocation.depth > 0:
            return self.exec_plain()
        try:
            command = parse_driver_command(self.invocation.args)
        except ResponseFileError as exc:
            return self.problem(str(exc))
        if command.mode in (Mode.INFO, Mode.NO_OBJECT, Mode.PARTIAL_LINK):
            return self.exec_plain()
        if command.lto:
            return self.problem(
                "-flto is not supported: link-time optimisation merges code across objects, so no "
                "object-level patch can be made; build without -flto (or set BUILDHOOK_DISABLE=1)"
            )
        try:
            injected = compile_flags(self.settings, self.family, self.header_folder)
            check_conflicts(command.options, injected)
        except FlagConflict as exc:
            return self.problem(str(exc))
        if command.mode == Mode.ASSEMBLY:
            return self.run(injected + self.invocation.args)
        if command.mode == Mode.COMPILE:
            return self.compile(command, injected)
        return self.link(command, injected)

    def problem(self, message: str) -> int:
        """Fail loudly, or degrade to a plain compile when the user configured that."""
        if self.settings["on_error"] == "plain":
            print(f"{self.program}: warning: {message}; compiling without buildhook", file=sys.stderr)
            return self.exec_plain()
        print(f"{self.program}: error: {message}", file=sys.stderr)
        return 1

    def recording_wanted(self, output: str) -> bool:
        """Whether *output* is a file worth a record (not skipped, not a device such as /dev/null).

        haproxy's Makefile probes for its Lua library with ``$(CC) -o /dev/null``;
        such a probe has no program to record and nothing to remove.
        """
        if not self.settings.flag("record") or not _is_regular_or_new(os.path.join(self.cwd, output)):
            return False
        parts = os.path.normpath(output).split(os.sep)
        return not any(glob_match(part, glob) for part in parts for glob in self.settings.skip_output_globs)

    def link_recording_wanted(self, command: DriverCommand) -> bool:
        """A link is recorded unless its output, or one of its sources, is skipped.

        autoconf's first probe links ``conftest.c`` to ``a.out``.
        """
        return self.recording_wanted(command.link_output()) and all(
            self.recording_wanted(source.path) for source in command.sources)

    def compile(self, command: DriverCommand, injected: list[str]) -> int:
        status = self.run(injected + self.invocation.args)
        if status != 0:
            return status
        from buildhook.wrap import recording  # only now: keeps plain runs light

        objects = [
            recording.CompiledObject(recording.absolute(source.path, self.cwd),
                                     recording.absolute(output, self.cwd), source.language)
            for source, output in command.object_outputs()
            if self.recording_wanted(output)
        ]
        if objects:
            flags = injected + command.expanded
            self.record(lambda store: recording.record_compile(store, objects, self.invocation.prefix, flags, self.cwd),
                        [item.object for item in objects])
        return status

    def link(self, command: DriverCommand, injected_compile: list[str]) -> int:
        from buildhook.wrap import recording

        import tempfile

        output = command.link_output()
        wanted = self.link_recording_wanted(command)
        user_map = command.user_map_file()
        with tempfile.TemporaryDirectory(prefix="buildhook-") as scratch:
            map_path = user_map
            if map_path is None and wanted and self.settings.flag("link_map") and not command.user_prints_map():
                map_path = os.path.join(scratch, "link.map")
            injected = link_flags(self.settings, command.user_build_id(), None if user_map else map_path)
            link_words = list(self.invocation.args)
            renamed: dict[str, recording.CompiledObject] = {}
            if command.sources:
                status, link_words, renamed = self.compile_sources_first(command, injected_compile, scratch)
                if status != 0:
                    return status
            status = self.run(injected + link_words)
            if status != 0 or not wanted:
                return status
            self.record(
                lambda store: self._record_link_and_patch(store, output, map_path, injected + link_words, renamed),
                [recording.absolute(output, self.cwd)],
            )
        return self.post_link_status

    def _record_link_and_patch(self, store: Store, output: str, map_path: str | None, flags: list[str],
                               renamed: dict[str, recording.CompiledObject]) -> None:
        from buildhook.wrap import recording

        link = recording.record_link(store, output=output, map_path=map_path, compiler=self.invocation.prefix,
                                     flags=flags, cwd=self.cwd, renamed_objects=renamed)
        from buildhook.wrap.postlink import patches_after_link

        try:
            ok, lines = patches_after_link(store, link, str(self.settings["patch_from"]))
        except Exception as exc:  # noqa: BLE001 - the patch step must never break a build silently
            ok, lines = False, [f"buildhook: post-link patch failed: {exc.__class__.__name__}: {exc}"]
        for line in lines:
            print(line, file=sys.stderr)
        if not ok and self.settings.flag("patch_strict"):
            self.post_link_status = 1

    def compile_sources_first(self, command: DriverCommand, injected: list[str],
                              scratch: str) -> tuple[int, list[str], dict[str, recording.CompiledObject]]:
        """Compile each source of a compile-and-link command on its own.

        The driver would compile them to anonymous temporary objects that
        vanish; compiling them here gives each one a compile record under the
        name ``-c`` would have given it next to the output, and lets the link
        map name them.  Every source is compiled even after a failure, as the
        driver does, so the user sees every diagnostic.
        """
        from buildhook.wrap import recording

        objects: dict[int, str] = {}
        renamed: dict[str, recording.CompiledObject] = {}
        output_dir = os.path.dirname(recording.absolute(command.link_output(), self.cwd))
        for number, source in enumerate(command.sources):
            temporary = os.path.join(scratch, f"{number}-{implicit_object_name(source.path)}")
            objects[source.position] = temporary
            renamed[temporary] = recording.CompiledObject(
                recording.absolute(source.path, self.cwd), os.path.join(output_dir, implicit_object_name(source.path)),
                source.language, written_to=temporary,
            )
        shared, link_words = command.split_for_separate_compiles(objects)
        first_failure = 0
        for source in command.sources:
            language = ["-x", source.explicit_language] if source.explicit_language else []
            status = self.run(injected + shared + ["-c"] + language + [source.path, "-o", objects[source.position]])
            first_failure = first_failure or status
        if first_failure == 0 and self.link_recording_wanted(command):
            flags = injected + shared + ["-c"]
            compiled = list(renamed.values())
            self.record(lambda store: recording.record_compile(store, compiled, self.invocation.prefix, flags, self.cwd), [])
        return first_failure, link_words, renamed

    def record(self, action: Callable[[Store], object], outputs: list[str]) -> None:
        """Run a store action; on failure remove *outputs* so the build retries them."""
        from buildhook.store import Store

        store = Store(self.settings.store_path)
        try:
            action(store)
        except Exception as exc:  # noqa: BLE001 - every failure must become one clear line
            if self.settings["on_error"] == "plain":
                print(f"{self.program}: warning: not recorded in store {store.root}: {exc}", file=sys.stderr)
                return
            for output in outputs:
                if _is_regular_or_new(output):  # never a device, a pipe or a directory
                    try:
                        os.unlink(output)
                    except OSError:
                        pass
            raise WrapperProblem(f"could not record in store {store.root}: {exc}") from exc
        finally:
            store.close()


def _is_regular_or_new(path: str) -> bool:
    """True for a regular file or a path that does not exist yet (symbolic links followed)."""
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True
    except OSError:
        return False


def run_wrapper(argv: list[str], language: str, program: str | None = None, header_folder: str | None = None) -> int:
    """Run buildhook-cc (language "c") or buildhook-c++ ("c++") on *argv*."""
    if program is None:
        program = os.path.basename(argv[0]) if argv else "buildhook-cc"
    try:
        settings = Settings()
        configured = settings["cxx" if language == "c++" else "cc"]
        invocation = resolve_invocation(argv, language, str(configured) if configured else None)
        from buildhook import INCLUDE_DIR

        return _Wrapper(invocation, settings, program, header_folder or INCLUDE_DIR).main()
    except (SettingsError, CompilerNotFound, WrapperProblem) as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug in buildhook: one loud line, never a traceback in a build log
        print(f"{program}: internal error ({exc.__class__.__name__}: {exc}); please report it, or set "
              "BUILDHOOK_DISABLE=1 to build without buildhook", file=sys.stderr)
        return 1


def main_cc() -> None:
    sys.exit(run_wrapper(sys.argv, "c"))


def main_cxx() -> None:
    sys.exit(run_wrapper(sys.argv, "c++"))


def main_from_shim() -> None:
    """buildhook-cc-python: a command the native shim (shim.c) handed over, with its arguments.

    The shim passes its name, language and copy of buildhook.h in three
    variables, which are taken out of the environment the compiler will see.
    """
    program = os.environ.pop("BUILDHOOK_SHIM_PROGRAM", "buildhook-cc")
    language = os.environ.pop("BUILDHOOK_SHIM_LANGUAGE", "c")
    header_folder = os.environ.pop("BUILDHOOK_SHIM_HEADER", None)
    sys.exit(run_wrapper(sys.argv, language, program, header_folder))
