"""User settings: one table, read from the environment and a config file.

Every behaviour of buildhook that a user may want to switch lives in
``SETTINGS`` below, with its environment variable, its config-file key, its
default and one line of documentation (``buildhook settings`` prints the
table; docs/wrapper.md documents it, and a test keeps the two in step).  The
environment wins over the config file, the config file over the default.

This module is imported by ``buildhook-cc`` on every compile, so it imports
nothing heavy: the TOML parser only when a config file exists.
"""

from __future__ import annotations

import os

TRUE_WORDS = frozenset({"1", "yes", "true", "on"})
FALSE_WORDS = frozenset({"0", "no", "false", "off", ""})


class SettingsError(Exception):
    """A setting has a value buildhook cannot use; the message names it."""


class Setting:
    """One user-visible switch (a plain class: this module loads on every compile)."""

    __slots__ = ("key", "env", "default", "doc", "choices")

    def __init__(self, key: str, env: str, default: str | bool | None, doc: str,
                 choices: tuple[str, ...] = ()) -> None:
        self.key = key
        self.env = env
        self.default = default
        self.doc = doc
        self.choices = choices

    @property
    def is_bool(self) -> bool:
        return isinstance(self.default, bool)


SETTINGS: tuple[Setting, ...] = (
    Setting("store", "BUILDHOOK_STORE", None,
            "Folder of the store (blobs + SQLite records). Default: "
            "$XDG_DATA_HOME/buildhook/store, else ~/.local/share/buildhook/store; "
            "one store serves any number of source and build trees."),
    Setting("cc", "BUILDHOOK_CC", None,
            "Real C compiler for `CC=buildhook-cc` (default: `cc` on PATH)."),
    Setting("cxx", "BUILDHOOK_CXX", None,
            "Real C++ compiler for `CXX=buildhook-c++` (default: `c++` on PATH)."),
    Setting("function_sections", "BUILDHOOK_FUNCTION_SECTIONS", True,
            "Add -ffunction-sections: one section per function, the unit of a patch."),
    Setting("data_sections", "BUILDHOOK_DATA_SECTIONS", True,
            "Add -fdata-sections: one section per variable, so new data is separable."),
    Setting("live_patching", "BUILDHOOK_LIVE_PATCHING", True,
            "Add -flive-patching=inline-clone (GCC only): no IPA optimisation lets an "
            "unchanged caller depend on a changed callee's body."),
    Setting("header", "BUILDHOOK_HEADER", True,
            "Add -idirafter with buildhook.h's folder: `#include <buildhook.h>` (hooks, transforms, "
            "shadow variables) works in a wrapped build; searched after every folder the build names."),
    Setting("build_id", "BUILDHOOK_BUILD_ID", True,
            "Add -Wl,--build-id to links that do not choose one: patches name their "
            "target by build-id."),
    Setting("link_map", "BUILDHOOK_LINK_MAP", True,
            "Add -Wl,-Map=… to links (kept in the store, not next to the binary): "
            "which address every input section got."),
    Setting("record", "BUILDHOOK_RECORD", True,
            "Record objects and links in the store (off: only add the flags)."),
    Setting("disable", "BUILDHOOK_DISABLE", False,
            "Run the real compiler exactly as called: no flags, no recording."),
    Setting("on_error", "BUILDHOOK_ON_ERROR", "fail",
            "What a failure inside buildhook does: `fail` (one-line reason, the build "
            "step fails) or `plain` (one-line warning, the build goes on unrecorded).",
            choices=("fail", "plain")),
    Setting("patch_from", "BUILDHOOK_PATCH_FROM", "latest",
            "After each recorded link of a released binary, write BINARY.from-TAG.po: from its "
            "`latest` release, from the listed tags (comma-separated), or `off`."),
    Setting("patch_strict", "BUILDHOOK_PATCH_STRICT", False,
            "Fail the link step when the post-link patch is refused or fails (default: one line, "
            "the build goes on)."),
    Setting("skip_outputs", "BUILDHOOK_SKIP_OUTPUTS", "conftest*,cmTC_*",
            "Comma-separated globs of output file names that are never recorded "
            "(configure probes, CMake try-compiles)."),
)

_BY_KEY = {setting.key: setting for setting in SETTINGS}


def config_path() -> str:
    """Where the config file is read from (it need not exist)."""
    explicit = os.environ.get("BUILDHOOK_CONFIG")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "buildhook", "config.toml")


def default_store_path() -> str:
    """The documented default store location (see ``store`` above)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "buildhook", "store")


def _read_config_file(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
    import tomllib  # only when there is a file: keeps buildhook-cc start-up small

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - set(_BY_KEY))
    if unknown:
        raise SettingsError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_BY_KEY))})"
        )
    return data


def _coerce(setting: Setting, value: object, origin: str) -> str | bool | None:
    if setting.is_bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise SettingsError(f"{origin}={value!r} is not a yes/no value (use 1/0, yes/no, on/off)")
    text = str(value)
    if setting.choices and text not in setting.choices:
        raise SettingsError(f"{origin}={text!r} is not one of {', '.join(setting.choices)}")
    return text


class Settings:
    """The effective value of every setting, resolved once per process."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._values: dict[str, str | bool | None] = {}
        file_values = _read_config_file(config_path())
        for setting in SETTINGS:
            if setting.env in env:
                value = _coerce(setting, env[setting.env], setting.env)
            elif setting.key in file_values:
                value = _coerce(setting, file_values[setting.key], f"{config_path()}: {setting.key}")
            else:
                value = setting.default
            self._values[setting.key] = value

    def __getitem__(self, key: str) -> str | bool | None:
        return self._values[key]

    def flag(self, key: str) -> bool:
        """A boolean setting."""
        return bool(self._values[key])

    @property
    def store_path(self) -> str:
        """The store folder, as an absolute path."""
        explicit = self._values["store"]
        path = os.path.expanduser(str(explicit)) if explicit else default_store_path()
        return os.path.abspath(path)

    @property
    def skip_output_globs(self) -> tuple[str, ...]:
        return tuple(g.strip() for g in str(self._values["skip_outputs"]).split(",") if g.strip())
