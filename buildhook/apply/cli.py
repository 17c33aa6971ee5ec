"""The applier's command line: ``apply``, ``revert``, ``status``.

Shared by ``buildhook apply|revert|status`` and the standalone zipapp
(``python3 buildhook-apply.pyz apply X.po --pid N``), so it imports nothing
beyond the standard library, pyelftools and the applier.

Exit status: 0 done, 1 error (bad input, an untrusted patch under a trust
store, no such process, ptrace denied), 2 refused (unsafe or busy; the target
is as it was).  Every check of the patch file, its signature included, runs
before any process is looked at.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from buildhook.apply.applier import (
    ApplyRefused,
    ApplyReport,
    apply_patch_set,
    patch_status,
    revert_patch,
)
from buildhook.apply import native
from buildhook.apply.inject import InjectionError
from buildhook.apply.preflight import TargetUnsuitable
from buildhook.apply.process import ProcessError
from buildhook.apply.ptrace import PtraceError
from buildhook.apply.signature import (
    SignatureError,
    configured_trust_store,
    verify_patch,
)
from buildhook.apply.state import condition
from buildhook.apply.threads import TraceDenied
from buildhook.po.names import demangle, demangle_text
from buildhook.po.reader import (
    PatchFormatError,
    PatchObject,
    read_patch,
    read_patch_file,
)

EXIT_OK, EXIT_ERROR, EXIT_REFUSED = 0, 1, 2


def processes_mapping(build_ids: set[str], exe: str | None = None) -> dict[int, set[str]]:
    """PID → which of *build_ids* it maps, for every process that maps one (whose executable is *exe*, or
    was before an upgrade replaced it, when given): a library is patched in every process that loaded it."""
    from buildhook.apply.process import mapped_objects

    wanted = os.path.realpath(exe) if exe is not None else None
    found: dict[int, set[str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        if wanted is not None:
            try:
                if os.readlink(f"/proc/{name}/exe").removesuffix(" (deleted)") != wanted:
                    continue
            except OSError:
                continue
        try:
            mapped = {item.build_id for item in mapped_objects(int(name))} & build_ids
        except (ProcessError, OSError):
            continue
        if mapped:
            found[int(name)] = mapped  # type: ignore[assignment]
    return dict(sorted(found.items()))


def add_arguments(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    apply = sub.add_parser("apply", help="apply a .po to running processes",
                           description="Apply a .po to a running process (exit 0 applied, 2 refused, 1 error). "
                           "Under a trust store ($BUILDHOOK_TRUST, else /etc/buildhook/trust.d if it "
                           "exists) the .po must be signed (X.po.sig) by a key in it.")
    apply.add_argument("patches", nargs="+", metavar="X.po",
                       help="one patch, or a release's patch set (its program's and libraries'): each process gets "
                       "the ones for what it maps, all in one commit, or none")
    where = apply.add_mutually_exclusive_group(required=True)
    where.add_argument("--pid", type=int, help="this process (it must map the target of every patch given)")
    where.add_argument("--exe", metavar="PATH", help="every process running PATH that maps a patch's target")
    where.add_argument("--all", action="store_true", help="every process that maps a patch's target (a library's: "
                       "whatever program loaded it, at whatever address)")
    apply.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for busy functions (default 5)")
    apply.add_argument("--json", action="store_true")
    apply.set_defaults(func=run_apply)
    revert = sub.add_parser("revert", help="revert a patch applied to a process")
    revert.add_argument("--pid", type=int, required=True)
    revert.add_argument("patch_id", nargs="?", metavar="PATCH_ID", help="default: the newest")
    revert.add_argument("--timeout", type=float, default=5.0)
    revert.add_argument("--json", action="store_true")
    revert.set_defaults(func=run_revert)
    status = sub.add_parser("status", help="list the patches applied to a process")
    status.add_argument("--pid", type=int, required=True)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=run_status)


def _print_reports(reports: list[ApplyReport], as_json: bool) -> None:
    if as_json:
        print(json.dumps([report.to_json() for report in reports], indent=2))
        return
    for report in reports:
        print(f"process {report.pid}: {report.result} patch {report.patch_id[:16]} "
              f"({len(report.functions)} functions: {', '.join(demangle(name) for name in report.functions)}); "
              f"paused {report.pause_us:.0f} µs, {report.total_ms:.1f} ms in all")
        for hook in report.hooks:
            returned = f" returned {hook['returned']}" if hook["returned"] is not None else ""
            print(f"  {str(hook['kind']).replace('_', '-')} hook {hook['name']}{returned} ({hook['ms']} ms)")
        for migration in report.migrations:
            print(f"  {migration['file']}: {migration['name']} ({migration['kind']}): {migration['outcome']}")


def read_trusted_patch(path: str) -> PatchObject:
    """Read the .po at *path*; under a trust store, only if a trusted key signed these exact bytes.

    The bytes are read once, so what is verified is what gets applied.
    """
    store = configured_trust_store()
    if store is None:
        return read_patch_file(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise PatchFormatError(f"cannot read {path}: {exc.strerror}") from exc
    verify_patch(path, data, store)
    return read_patch(data, path)


def run_apply(args: argparse.Namespace) -> int:
    patches = [(read_trusted_patch(path), os.path.basename(path)) for path in args.patches]
    build_ids = {patch.target_build_id for patch, _ in patches}
    if args.pid is not None:
        targets = {args.pid: build_ids}
    else:
        targets = processes_mapping(build_ids, args.exe)
        if not targets:
            where = f"of {args.exe} " if args.exe else ""
            raise ProcessError(f"no running process {where}maps build-id {', '.join(sorted(build_ids))}")
    reports: list[ApplyReport] = []
    try:
        for pid, mapped in targets.items():
            members = [(patch, name) for patch, name in patches if patch.target_build_id in mapped]
            reports += apply_patch_set(members, pid, args.timeout)
    except (ApplyRefused, ProcessError, PtraceError, TraceDenied, InjectionError, TargetUnsuitable):
        for done in {report.pid: report for report in reports}.values():  # all processes or none
            try:
                revert_patch(done.pid, done.patch_id, args.timeout)  # the whole set: one commit byte
            except (ApplyRefused, ProcessError, PtraceError):
                pass
        raise
    _print_reports(reports, args.json)
    return EXIT_OK


def run_revert(args: argparse.Namespace) -> int:
    _print_reports(revert_patch(args.pid, args.patch_id, args.timeout), args.json)
    return EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    """What is applied, and every other region in the process: replaced, reverted or a leftover."""
    records = patch_status(args.pid)
    applied = [p for p in records if condition(p, records) == "applied"]
    others = [p for p in records if condition(p, records) != "applied"]
    if args.json:
        print(json.dumps({"pid": args.pid, "patches": [p.to_json() for p in applied],
                          "others": [{"patch_id": p.patch_id, "condition": condition(p, records),
                                      "region": [hex(p.region_start), hex(p.region_end)]} for p in others]},
                         indent=2))
        return EXIT_OK
    if not applied:
        print(f"process {args.pid}: no patches applied")
    for patch in applied:
        functions = patch.replaced_functions
        print(f"process {args.pid}: patch {patch.patch_id[:16]} ({patch.from_release} → {patch.to_release}), "
              f"{len(functions)} functions redirected: {', '.join(demangle(f.name) for f in functions)}")
    for patch in others:
        what = condition(patch, records)
        note = ("never committed: the next apply or revert removes it" if what == "leftover"
                else "its region stays mapped: the process may hold pointers into it")
        print(f"process {args.pid}: patch {patch.patch_id[:16]} {what} ({note})")
    return EXIT_OK


def dispatch(args: argparse.Namespace, program: str) -> int:
    """Run an applier command; every failure is one line on stderr and an exit status."""
    try:
        return int(args.func(args))
    except ApplyRefused as exc:
        print(f"{program}: refused: {demangle_text(str(exc))}", file=sys.stderr)
        return EXIT_REFUSED
    except (PatchFormatError, SignatureError, ProcessError, TraceDenied, PtraceError, InjectionError,
            TargetUnsuitable, native.SettingError) as exc:
        print(f"{program}: error: {demangle_text(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - a defect of ours is still one line, never a traceback
        print(f"{program}: internal error: {exc.__class__.__name__}: {exc} (please report it)", file=sys.stderr)
        return EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="buildhook-apply", description="Apply buildhook .po patches to "
                                     "running processes.")
    add_arguments(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return dispatch(args, "buildhook-apply")


if __name__ == "__main__":
    sys.exit(main())
