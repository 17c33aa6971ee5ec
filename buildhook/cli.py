"""``buildhook``: the command line.  Thin: parse arguments, call a stage, print.

Exit status: 0 success, 1 error (one line on stderr saying what and why),
2 bad usage (argparse).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable

from buildhook import APPLIER_COMMANDS, __version__, step_aside_for
from buildhook.settings import SETTINGS, Settings, SettingsError


class CommandError(Exception):
    """A command failed in a way the user can act on; the message says how."""


def _open_store(settings: Settings, must_exist: bool = True):  # type: ignore[no-untyped-def]
    from buildhook.store import Store

    store = Store(settings.store_path)
    if must_exist and not store.exists():
        raise CommandError(
            f"no store at {store.root}: nothing was recorded yet (build with CC=buildhook-cc, "
            "or point BUILDHOOK_STORE at the store the build used)"
        )
    return store


def cmd_builds(args: argparse.Namespace, settings: Settings) -> int:
    store = _open_store(settings)
    links = store.records.links()
    tags = store.records.release_tags_by_link()
    if args.json:
        print(json.dumps([link.to_json(tags.get(link.id or -1)) for link in links], indent=2))
        return 0
    if not links:
        print(f"no links recorded in {store.root}")
    for link in links:
        from buildhook.store.records import iso_time

        released = f"  releases: {', '.join(tags[link.id])}" if link.id in tags else ""
        print(f"#{link.id}  {iso_time(link.time)}  {link.binary}")
        print(f"     build-id {link.build_id or '(none)'}  {len(link.objects)} objects{released}")
        if args.verbose:
            for item in link.objects:
                print(f"       {item.sha256[:12]}  {item.display_path}")
    return 0


def cmd_release(args: argparse.Namespace, settings: Settings) -> int:
    from buildhook.store import ReleaseError

    store = _open_store(settings)
    try:
        release = store.release(args.tag, args.binaries or None)
    except ReleaseError as exc:
        raise CommandError(str(exc)) from exc
    for link in release.links:
        print(f"released {link.binary} (build-id {link.build_id}) as {release.tag}")
    return 0


def cmd_releases(args: argparse.Namespace, settings: Settings) -> int:
    store = _open_store(settings)
    releases = store.records.releases()
    if args.json:
        print(json.dumps([release.to_json() for release in releases], indent=2))
        return 0
    if not releases:
        print(f"no releases in {store.root} (make one with `buildhook release TAG`)")
    for release in releases:
        from buildhook.store.records import iso_time

        print(f"{release.tag}  {iso_time(release.time)}")
        for link in release.links:
            print(f"    {link.binary}  build-id {link.build_id}")
    return 0


def cmd_store_gc(args: argparse.Namespace, settings: Settings) -> int:
    store = _open_store(settings)
    report = store.gc(keep_days=args.keep_days)
    print(f"removed {report.links_removed} links, {report.compiles_removed} compile records, "
          f"{report.blobs_removed} blobs ({report.bytes_freed / 1e6:.1f} MB)")
    return 0


def cmd_store_path(args: argparse.Namespace, settings: Settings) -> int:
    print(settings.store_path)
    return 0


def cmd_cmake_dir(args: argparse.Namespace, settings: Settings) -> int:
    from buildhook.bundled import cmake_dir

    print(cmake_dir())
    return 0


def cmd_include_dir(args: argparse.Namespace, settings: Settings) -> int:
    from buildhook.bundled import include_dir

    print(include_dir())
    return 0


def cmd_scons_dir(args: argparse.Namespace, settings: Settings) -> int:
    from buildhook.bundled import scons_site_dir

    print(scons_site_dir())
    return 0


def cmd_flags(args: argparse.Namespace, settings: Settings) -> int:
    from buildhook.wrap.flags import GCC, compile_flags, link_flags

    if args.link is not None:
        words = link_flags(settings, None, args.link)
    else:
        words = compile_flags(settings, GCC)
    print(shlex.join(words))
    return 0


def cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    from buildhook.settings import config_path

    print(f"config file: {config_path()}")
    for setting in SETTINGS:
        value = settings.store_path if setting.key == "store" else settings[setting.key]
        print(f"{setting.env:30} {setting.key:18} = {value!s:12}  {setting.doc}")
    return 0


EXIT_PATCH, EXIT_ERROR, EXIT_REFUSED, EXIT_NO_CHANGE = 0, 1, 2, 3


def cmd_diff(args: argparse.Namespace, settings: Settings) -> int:
    from buildhook.diff import (
        PATCH,
        REFUSED,
        DiffError,
        default_patch_path,
        find_links,
        make_patch,
    )
    from buildhook.diff.base import BaseProgramError

    store = _open_store(settings)
    try:
        base, new = find_links(store, args.binary, args.from_tag, args.to_tag)
        outcome = make_patch(store, base, new, args.from_tag, args.to_tag or f"build {new.build_id}")
    except (DiffError, BaseProgramError) as exc:
        raise CommandError(str(exc)) from exc
    result = outcome.result
    output = args.output or default_patch_path(new.binary, args.from_tag)
    if outcome.patch is not None:
        with open(output, "wb") as handle:
            handle.write(outcome.patch)
    if args.json:
        report = result.to_json()
        report["po"] = output if outcome.patch is not None else None
        print(json.dumps(report, indent=2))
    elif result.outcome == PATCH:
        print(f"wrote {output}: {len(result.replaced)} replaced, {len(result.new_functions)} new functions, "
              f"{len(result.new_data)} new variables, {len(result.warnings)} warnings "
              f"(patch {outcome.metadata['patch_id'][:16]})")  # type: ignore[index]
        for warning in result.warnings:
            print(f"warning: {warning.line()}")
    elif result.outcome == REFUSED:
        for refusal in result.refusals:
            print(f"refused: {refusal.line()}", file=sys.stderr)
        for warning in result.warnings:
            print(f"warning: {warning.line()}", file=sys.stderr)
    else:
        print(f"no change between release {args.from_tag} and {new.binary} ({result.objects_compared} objects compared)")
        for warning in result.warnings:  # a running value kept is worth saying even with no code to patch
            print(f"warning: {warning.line()}")
    return {PATCH: EXIT_PATCH, REFUSED: EXIT_REFUSED}.get(result.outcome, EXIT_NO_CHANGE)


def cmd_inspect(args: argparse.Namespace, settings: Settings) -> int:
    from buildhook.po.inspect import describe_patch, patch_summary
    from buildhook.po.reader import PatchFormatError, read_patch_file

    try:
        patch = read_patch_file(args.patch)
    except PatchFormatError as exc:
        raise CommandError(str(exc)) from exc
    if args.json:
        print(json.dumps(patch_summary(patch), indent=2))
    else:
        print(describe_patch(patch))
    return 0


def cmd_keygen(args: argparse.Namespace, settings: Settings) -> int:
    from buildhook.sign import SigningKey, SigningKeyError
    from buildhook.sign.keys import default_key_folder

    try:
        files = SigningKey.generate().write(args.out or default_key_folder(), args.name)
    except SigningKeyError as exc:
        raise CommandError(str(exc)) from exc
    print(f"wrote key {files.key_id}: private {files.private} (mode 0600, keep it secret), public {files.public}")
    print(f"trust it on a host: copy {files.public} into /etc/buildhook/trust.d/ (or the folder $BUILDHOOK_TRUST names)")
    return 0


def _signing_key(path: str | None):  # type: ignore[no-untyped-def]
    from buildhook.sign import SigningKey, SigningKeyError
    from buildhook.sign.keys import default_signing_key

    try:
        return SigningKey.load(path or default_signing_key())
    except SigningKeyError as exc:
        raise CommandError(str(exc)) from exc


def cmd_sign(args: argparse.Namespace, settings: Settings) -> int:
    from buildhook.po.reader import PatchFormatError
    from buildhook.sign import SigningKeyError, sign_patch

    key = _signing_key(args.key)
    for patch in args.patches:
        try:
            written = sign_patch(patch, key)
        except (PatchFormatError, SigningKeyError) as exc:
            raise CommandError(str(exc)) from exc
        print(f"signed {patch} with key {key.key_id}: {written}")
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from buildhook.apply.signature import (
        SignatureError,
        TrustStore,
        configured_trust_store,
    )
    from buildhook.po.reader import PatchFormatError, read_patch_file
    from buildhook.sign import verify_patch_file

    try:
        store = TrustStore(args.trust) if args.trust else configured_trust_store()
        if store is None:
            raise CommandError("no trust store: pass --trust DIR, set BUILDHOOK_TRUST, or create "
                               "/etc/buildhook/trust.d")
        if args.signature and len(args.patches) > 1:
            raise CommandError("--signature names the signature of one patch; give one X.po with it")
        for patch in args.patches:
            trusted = verify_patch_file(patch, store, args.signature)
            summary = read_patch_file(patch)
            print(f"{patch}: good signature by key {trusted.key.key_id} ({trusted.key.path}); "
                  f"patch {summary.patch_id[:16]} from {summary.metadata['from']} to {summary.metadata['to']}")
    except (SignatureError, PatchFormatError) as exc:
        raise CommandError(str(exc)) from exc
    return 0


def cmd_collect(args: argparse.Namespace, settings: Settings) -> int:
    import os

    from buildhook.collect import CollectError, collect_patches
    from buildhook.sign.keys import SIGNING_KEY_VARIABLE

    store = _open_store(settings)
    key_path = args.key or os.environ.get(SIGNING_KEY_VARIABLE)
    key = _signing_key(key_path) if key_path else None
    try:
        tags = [tag for value in args.from_tags for tag in value.split(",") if tag] if args.from_tags else None
        result = collect_patches(store, args.binaries, args.out, tags,
                                 key, progress=lambda entry: print(entry.line(), flush=True))
    except CollectError as exc:
        raise CommandError(str(exc)) from exc
    print(f"wrote {result.index_path} and {result.report_path}: {len(result.written)} of "
          f"{len(result.entries)} base releases patched")
    if not result.written:
        print(f"buildhook: error: {result.why_nothing()}", file=sys.stderr)
    return result.exit_status


def cmd_applier_zipapp(args: argparse.Namespace, settings: Settings) -> int:
    from buildhook.apply.zipapp import write_zipapp

    write_zipapp(args.output)
    print(f"wrote {args.output}: run it with python3 {args.output} apply X.po --pid PID")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from buildhook.demo import run_demo

    return run_demo(keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="buildhook", description="Hot patches as a by-product of the build.")
    parser.add_argument("--version", action="version", version=f"buildhook {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace, Settings], int], help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(func=func)
        return command

    builds = add("builds", cmd_builds, "list recorded links (one entry per link)")
    builds.add_argument("--json", action="store_true", help="machine-readable list")
    builds.add_argument("-v", "--verbose", action="store_true", help="list each link's objects")
    release = add("release", cmd_release, "mark the latest link of each binary (or the named ones) as release TAG")
    release.add_argument("tag")
    release.add_argument("binaries", nargs="*", metavar="BINARY")
    releases = add("releases", cmd_releases, "list releases")
    releases.add_argument("--json", action="store_true")
    store = add("store", lambda a, s: 0, "store maintenance: `store gc`, `store path`")
    store_sub = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    gc = store_sub.add_parser("gc", help="drop what no release and no recent build needs")
    gc.add_argument("--keep-days", type=float, default=14.0, help="keep builds newer than this (default 14)")
    gc.set_defaults(func=cmd_store_gc)
    store_sub.add_parser("path", help="print the store folder in use").set_defaults(func=cmd_store_path)
    add("cmake-dir", cmd_cmake_dir, "print the folder to put on CMAKE_MODULE_PATH for include(BuildHook)")
    add("include-dir", cmd_include_dir, "print the folder holding buildhook.h, for cc -I\"$(buildhook include-dir)\"")
    add("scons-dir", cmd_scons_dir, "print the folder to pass to `scons --site-dir` for env.Tool('buildhook')")
    flags = add("flags", cmd_flags, "print the flags buildhook-cc adds (compile, or link with --link MAPFILE)")
    flags.add_argument("--compile", action="store_true", help="compile flags (the default)")
    flags.add_argument("--link", metavar="MAPFILE", help="link flags, writing the map to MAPFILE")
    add("settings", cmd_settings, "print every setting, its variable and its effective value")
    diff = add("diff", cmd_diff, "write the .po that turns a running release into the current build "
               "(exit 0 patch, 3 no change, 2 refused, 1 error)")
    diff.add_argument("--from", dest="from_tag", required=True, metavar="TAG", help="the deployed release")
    diff.add_argument("--to", dest="to_tag", metavar="TAG", help="a later release (default: the latest build)")
    diff.add_argument("binary", metavar="BINARY")
    diff.add_argument("-o", "--output", metavar="OUT.po", help="default: BINARY.from-TAG.po next to the binary")
    diff.add_argument("--json", action="store_true", help="print the decisions as JSON")
    inspect = add("inspect", cmd_inspect, "show what a .po replaces and adds, and how each function is reached")
    inspect.add_argument("patch", metavar="X.po")
    inspect.add_argument("--json", action="store_true")
    zipapp_command = add("applier-zipapp", cmd_applier_zipapp,
                         "write the standalone applier (one file, needs only python3) to OUT.pyz")
    zipapp_command.add_argument("output", metavar="OUT.pyz")
    keygen = add("keygen", cmd_keygen, "make an Ed25519 signing key pair (NAME.key, mode 0600, and NAME.pub)")
    keygen.add_argument("--out", metavar="DIR", help="default: $XDG_CONFIG_HOME/buildhook/keys (~/.config/…)")
    keygen.add_argument("--name", default="signing", help="file names NAME.key and NAME.pub (default: signing)")
    sign = add("sign", cmd_sign, "write X.po.sig, the detached Ed25519 signature of X.po")
    sign.add_argument("patches", nargs="+", metavar="X.po")
    sign.add_argument("--key", metavar="KEY", help="private key (default: $BUILDHOOK_SIGNING_KEY, else "
                      "signing.key in the keygen folder)")
    verify = add("verify", cmd_verify, "check X.po.sig against a trust store, exactly as `apply` will")
    verify.add_argument("patches", nargs="+", metavar="X.po")
    verify.add_argument("--trust", metavar="DIR", help="folder of trusted *.pub keys (or one .pub file); "
                        "default: $BUILDHOOK_TRUST, else /etc/buildhook/trust.d")
    verify.add_argument("--signature", metavar="SIG", help="signature file (default: X.po.sig; one patch only)")
    collect = add("collect", cmd_collect, "write one signed .po per base release, index.json and report.html "
                  "into DIR (exit 0 if a patch was written, 2 all refused, 3 no change, 1 error)")
    collect.add_argument("--out", required=True, metavar="DIR")
    bases = collect.add_mutually_exclusive_group()
    bases.add_argument("--from", dest="from_tags", action="append", metavar="TAG",
                       help="a base release; repeat it or list several as v1.0,v1.1 (default: every release "
                       "of the binary but the current build)")
    bases.add_argument("--all-releases", action="store_true", help="every release of the binary (the default)")
    collect.add_argument("--key", metavar="KEY", help="sign each .po (default: $BUILDHOOK_SIGNING_KEY if set, "
                         "else unsigned)")
    collect.add_argument("binaries", nargs="+", metavar="BINARY")
    from buildhook.apply.cli import add_arguments as add_applier_arguments

    add_applier_arguments(sub)
    demo = add("demo", cmd_demo, "build the sample server with the wrapper and show what was recorded")
    demo.add_argument("--keep", action="store_true", help="keep the demo folder instead of deleting it")
    return parser


def main(argv: list[str] | None = None) -> int:
    step_aside_for(sys.argv[1:] if argv is None else argv)  # before the applier's imports, most of its CPU
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in APPLIER_COMMANDS:
        from buildhook.apply.cli import dispatch

        return dispatch(args, "buildhook")
    try:
        settings = Settings()
        return args.func(args, settings)
    except (CommandError, SettingsError) as exc:
        print(f"buildhook: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `buildhook builds --json | head`: the reader left, not an error
        sys.stderr.close()
        return 0
    except Exception as exc:
        from buildhook.store import CorruptBlobError, MissingBlobError, StoreSchemaError

        if isinstance(exc, (CorruptBlobError, MissingBlobError, StoreSchemaError)):
            print(f"buildhook: error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
