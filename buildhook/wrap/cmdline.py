"""Understanding a gcc/clang driver command line well enough to wrap it.

The wrapper must know, without running anything, whether a command produces
objects (and which), links a binary (and where to), or does neither (``-E``,
``-M``, ``--version``…), and which operands are source files.  It must not
mistake an option's argument (``-o foo.c``, ``-MF x.d``, ``-include cfg.h``)
for an input.  Response files (``@file``) are expanded for this analysis
only: the compiler still receives the command line as written.

The option tables below are the driver's grammar that matters here; anything
else is passed through untouched.
"""

from __future__ import annotations

import os

# No enum or dataclasses here: this module is on every compile's path, and
# those imports alone cost more than the parsing (see bench/RESULTS.md).

# Options whose argument may be the *next* word (``-o out``).  Written joined
# (``-oout``, ``-MFx.d``) they are one word and need no entry.
SEPARATE_ARGUMENT_OPTIONS = frozenset({
    "-o", "-x", "-I", "-D", "-U", "-include", "-imacros", "-isystem", "-idirafter",
    "-iprefix", "-iwithprefix", "-iwithprefixbefore", "-isysroot", "-imultilib",
    "-iquote", "-MF", "-MT", "-MQ", "-Xlinker", "-Xassembler", "-Xpreprocessor",
    "-L", "-l", "-T", "-Tbss", "-Tdata", "-Ttext", "-u", "-z", "-e", "-aux-info",
    "--param", "-B", "-wrapper", "-G", "-A", "--sysroot", "-dumpbase",
    "-dumpbase-ext", "-dumpdir", "-Xclang", "-target", "-arch", "-include-pch",
    "-iframework", "-F", "--entry", "--include", "--output",
})

# Suffix → language of inputs the driver compiles (gcc's "Options Controlling
# the Kind of Output").  Everything else is handed to the linker.
SOURCE_LANGUAGES: dict[str, str] = {
    ".c": "c", ".i": "cpp-output",
    ".cc": "c++", ".cp": "c++", ".cxx": "c++", ".cpp": "c++", ".CPP": "c++",
    ".c++": "c++", ".C": "c++", ".ii": "c++-cpp-output",
    ".m": "objective-c", ".mi": "objective-c-cpp-output",
    ".mm": "objective-c++", ".M": "objective-c++",
    ".s": "assembler", ".S": "assembler-with-cpp", ".sx": "assembler-with-cpp",
    ".f": "f77", ".for": "f77", ".F": "f77-cpp-input", ".f90": "f95", ".F90": "f95-cpp-input",
}

# Words that make the driver print something and exit, compiling nothing.
INFO_OPTIONS = frozenset({
    "--version", "-dumpversion", "-dumpfullversion", "-dumpmachine", "-dumpspecs",
    "--help", "-###", "--target-help",
})
INFO_PREFIXES = ("-print-", "--print-", "--help=")

# Words that stop the driver before an object is written.
NO_OBJECT_OPTIONS = frozenset({"-E", "-M", "-MM", "-fsyntax-only"})

# Launchers that run the compiler named after them (CMake's COMPILER_LAUNCHER).
KNOWN_LAUNCHERS = frozenset({"ccache", "sccache", "distcc", "icecc", "buildcache"})


class Mode:
    """What a driver invocation produces, as far as recording is concerned."""

    INFO = "info"              # --version, -print-*, no inputs: nothing to add or record
    NO_OBJECT = "no-object"    # -E, -M, -MM, -fsyntax-only: preprocessing or checking only
    ASSEMBLY = "assembly"      # -S: compiles, writes .s, no object
    COMPILE = "compile"        # -c: one object per source
    LINK = "link"              # links (and maybe compiles sources first)
    PARTIAL_LINK = "partial-link"  # -r: relocatable link, passed through unrecorded


class ResponseFileError(Exception):
    """A response file could not be read or nests too deeply."""


class SourceInput:
    """A source operand: its path as written and the language it is compiled as."""

    __slots__ = ("path", "language", "explicit_language", "position")

    def __init__(self, path: str, language: str, explicit_language: str | None, position: int) -> None:
        self.path = path
        self.language = language
        self.explicit_language = explicit_language  # the ``-x`` in force, if any
        self.position = position                    # index in the expanded argument list


class DriverCommand:
    """A parsed driver command line (arguments after the compiler itself)."""

    def __init__(self, args: list[str], expanded: list[str]) -> None:
        self.args = args                   # as written (may contain @file)
        self.expanded = expanded           # @file expanded
        self.mode = Mode.LINK
        self.sources: list[SourceInput] = []
        self.other_inputs: list[tuple[int, str]] = []   # (position, path)
        self.output: str | None = None
        self.output_span: tuple[int, int] | None = None  # [start, end) of the ``-o`` words
        self.language_spans: list[tuple[int, int]] = []  # every ``-x`` option
        self.linker_args: list[str] = []   # from -Wl, and -Xlinker
        self.lto = False
        self.options: list[str] = []       # every option word (for checks)

    def object_outputs(self) -> list[tuple[SourceInput, str]]:
        """The object each source of a ``-c`` command is written to.

        gcc names an implicit output after the source's base name with its
        last suffix replaced by ``.o``, in the current directory.
        """
        if self.mode != Mode.COMPILE:
            return []
        if self.output is not None and len(self.sources) == 1:
            return [(self.sources[0], self.output)]
        return [(source, implicit_object_name(source.path)) for source in self.sources]

    def link_output(self) -> str:
        """The file a link writes (``a.out`` unless ``-o`` says otherwise)."""
        return self.output if self.output is not None else "a.out"

    def split_for_separate_compiles(self, objects: dict[int, str]) -> tuple[list[str], list[str]]:
        """Turn a compile-and-link command into compile options and a link command.

        *objects* maps each source's position to the object compiled from it.
        Returns (the options every per-source compile shares, the link
        arguments with each source replaced by its object).  ``-x`` options
        are dropped from both: each compile names its own language, and the
        link sees only objects.
        """
        dropped: set[int] = set()
        for start, end in self.language_spans:
            dropped.update(range(start, end))
        inputs = {source.position for source in self.sources} | {pos for pos, _ in self.other_inputs}
        output = set(range(*self.output_span)) if self.output_span else set()
        shared = [word for pos, word in enumerate(self.expanded)
                  if pos not in dropped and pos not in inputs and pos not in output]
        link = [objects.get(pos, word) for pos, word in enumerate(self.expanded) if pos not in dropped]
        return shared, link

    def user_map_file(self) -> str | None:
        """The linker map the user asked for, if any (we then read theirs)."""
        args = self.linker_args
        for index, word in enumerate(args):
            for prefix in ("-Map=", "--Map="):
                if word.startswith(prefix):
                    return word[len(prefix):]
            if word in ("-Map", "--Map") and index + 1 < len(args):
                return args[index + 1]
        return None

    def user_prints_map(self) -> bool:
        """``-Wl,-M``: the map goes to stdout, which we must leave alone."""
        return any(word in ("-M", "--print-map") for word in self.linker_args)

    def user_build_id(self) -> str | None:
        """The ``--build-id`` option the user gave the linker, if any."""
        chosen = None
        for word in self.linker_args:
            if word == "--build-id" or word.startswith("--build-id="):
                chosen = word
        return chosen


def implicit_object_name(source: str) -> str:
    """The object file gcc writes for *source* under ``-c`` without ``-o``."""
    base = os.path.basename(source)
    stem, dot, _suffix = base.rpartition(".")
    return (stem if dot and stem else base) + ".o"


def read_response_file(path: str) -> list[str]:
    """Split a response file the way the GNU driver (libiberty) does.

    Whitespace separates words; single and double quotes group; a backslash
    escapes the next character anywhere, quotes included.
    """
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        text = handle.read()
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quote: str | None = None
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
            in_word = True
        elif char == "\\":
            escaped = True
            in_word = True
        elif quote:
            if char == quote:
                quote = None
            else:
                current.append(char)
        elif char in "'\"":
            quote = char
            in_word = True
        elif char.isspace():
            if in_word:
                words.append("".join(current))
                current = []
                in_word = False
        else:
            current.append(char)
            in_word = True
    if in_word:
        words.append("".join(current))
    return words


def expand_response_files(args: list[str], depth: int = 0) -> list[str]:
    """Replace every readable ``@file`` by its words, recursively.

    Like the driver, an ``@file`` that cannot be opened stays a literal word.
    """
    if depth > 10:
        raise ResponseFileError("response files nest more than 10 deep")
    expanded: list[str] = []
    for word in args:
        if word.startswith("@") and len(word) > 1 and os.path.isfile(word[1:]):
            try:
                inner = read_response_file(word[1:])
            except OSError as exc:
                raise ResponseFileError(f"cannot read response file {word[1:]}: {exc.strerror}") from exc
            expanded.extend(expand_response_files(inner, depth + 1))
        else:
            expanded.append(word)
    return expanded


def _source_language(path: str, explicit: str | None) -> str | None:
    if explicit is not None:
        return explicit
    if path == "-":
        return None  # stdin needs -x; the driver refuses it otherwise
    _stem, dot, suffix = os.path.basename(path).rpartition(".")
    if not dot:
        return None
    return SOURCE_LANGUAGES.get("." + suffix)


def _linker_words(word: str, next_word: str | None) -> list[str]:
    if word.startswith("-Wl,"):
        return [part for part in word[4:].split(",") if part]
    if word == "-Xlinker" and next_word is not None:
        return [next_word]
    return []


def parse_driver_command(args: list[str]) -> DriverCommand:
    """Classify a driver command line (everything after the compiler)."""
    expanded = expand_response_files(args)
    command = DriverCommand(list(args), expanded)
    language: str | None = None
    stop_words: set[str] = set()
    index = 0
    while index < len(expanded):
        word = expanded[index]
        next_word = expanded[index + 1] if index + 1 < len(expanded) else None
        if word == "-" or not word.startswith("-"):
            source_language = _source_language(word, language)
            if source_language is not None:
                command.sources.append(SourceInput(word, source_language, language, index))
            else:
                command.other_inputs.append((index, word))
            index += 1
            continue
        command.options.append(word)
        command.linker_args.extend(_linker_words(word, next_word))
        if word == "-x" and next_word is not None:
            language = None if next_word == "none" else next_word
            command.language_spans.append((index, index + 2))
        elif word.startswith("-x") and len(word) > 2:
            language = None if word[2:] == "none" else word[2:]
            command.language_spans.append((index, index + 1))
        elif word == "-o" and next_word is not None:
            command.output, command.output_span = next_word, (index, index + 2)
        elif word.startswith("-o") and len(word) > 2:
            command.output, command.output_span = word[2:], (index, index + 1)
        elif word == "-flto" or word.startswith("-flto="):
            command.lto = True
        elif word == "-fno-lto":
            command.lto = False
        elif word in ("-c", "-S", "-r") or word in NO_OBJECT_OPTIONS:
            stop_words.add(word)
        elif word in INFO_OPTIONS or word.startswith(INFO_PREFIXES):
            stop_words.add("info")
        if word in SEPARATE_ARGUMENT_OPTIONS and next_word is not None:
            index += 2
        else:
            index += 1
    command.mode = _mode(command, stop_words)
    return command


def _mode(command: DriverCommand, stop_words: set[str]) -> Mode:
    has_inputs = bool(command.sources or command.other_inputs)
    if "info" in stop_words or not has_inputs:
        return Mode.INFO
    if stop_words & NO_OBJECT_OPTIONS:
        return Mode.NO_OBJECT
    if "-S" in stop_words:
        return Mode.ASSEMBLY
    if "-c" in stop_words:
        return Mode.COMPILE if command.sources else Mode.INFO
    if "-r" in stop_words:
        return Mode.PARTIAL_LINK
    return Mode.LINK
