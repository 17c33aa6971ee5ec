"""A running process as the applier sees it through /proc.

The target is identified by the build-id of what is *mapped*
(``/proc/PID/map_files/…``), not by path: a package upgrade may already have
replaced the file on disk, and ``/proc/PID/exe`` then says "(deleted)".
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from buildhook.elf.buildid import NotAnELFFile, build_id_of_bytes

PAGE = 4096


class ProcessError(Exception):
    """The process cannot be examined (gone, not ours, not the target)."""


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str
    offset: int
    path: str

    @property
    def executable(self) -> bool:
        return "x" in self.perms

    @property
    def size(self) -> int:
        return self.end - self.start


def task_file(pid: int, tid: int, name: str) -> str | None:
    """``/proc/PID/task/TID/<name>`` as text, or None if the thread is gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/{name}", encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def thread_state(pid: int, tid: int) -> str | None:
    """The state letter of /proc/PID/task/TID/stat (R, S, D, Z, t…), or None if the thread is gone."""
    stat = task_file(pid, tid, "stat")
    if not stat or ")" not in stat:
        return None
    rest = stat[stat.rfind(")") + 1:].split()
    return rest[0] if rest else None


def memory_pid(pid: int) -> int:
    """The thread that shows the process's memory: the main one, or a live one once it has exited.

    After ``pthread_exit`` in ``main`` the leader is a zombie while the other
    threads run: ``/proc/PID/maps``, ``mem`` and ``fd`` are then empty or
    fail, and process_vm_readv(PID) fails; a live thread's do not.
    """
    if thread_state(pid, pid) not in ("Z", "X"):
        return pid
    try:
        tids = thread_ids(pid)
    except ProcessError:
        return pid
    return next((tid for tid in tids if tid != pid and thread_state(pid, tid) not in (None, "Z", "X")), pid)


def proc_dir(pid: int) -> str:
    """``/proc/PID``, or ``/proc/PID/task/TID`` of a live thread when the main one has exited (memory_pid)."""
    tid = memory_pid(pid)
    return f"/proc/{pid}" if tid == pid else f"/proc/{pid}/task/{tid}"


def read_maps(pid: int) -> list[Mapping]:
    try:
        # A mapped file's name is any bytes; surrogateescape keeps it usable as a path.
        with open(f"{proc_dir(pid)}/maps", encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError as exc:
        raise ProcessError(f"no process {pid}") from exc
    except PermissionError as exc:
        raise ProcessError(f"not allowed to read the memory map of process {pid} (run as its owner or root)") from exc
    mappings = []
    for line in lines:
        fields = line.split(None, 5)
        start, end = (int(part, 16) for part in fields[0].split("-"))
        mappings.append(Mapping(start, end, fields[1], int(fields[2], 16), fields[5] if len(fields) > 5 else ""))
    return mappings


def thread_ids(pid: int) -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError as exc:
        raise ProcessError(f"no process {pid}") from exc


def _mapped_file_bytes(pid: int, mapping: Mapping, limit: int) -> bytes:
    """The file a mapping maps: through map_files (the very file, even if replaced on disk since), or,
    where there is none (a live thread's task directory, see proc_dir), by its path in the process's root."""
    where = proc_dir(pid)
    path = (f"{where}/map_files/{mapping.start:x}-{mapping.end:x}" if "/task/" not in where
            else f"{where}/root{mapping.path}")
    with open(path, "rb") as handle:
        return handle.read(limit)


@dataclass
class MappedObject:
    """An ELF file mapped in the process: its mappings, build-id and load bias."""

    path: str
    build_id: str | None
    bias: int
    mappings: list[Mapping]
    file_bytes: bytes

    @property
    def text(self) -> tuple[int, int]:
        executable = [m for m in self.mappings if m.executable]
        return (min(m.start for m in executable), max(m.end for m in executable)) if executable else (0, 0)


def mapped_objects(pid: int, maps: list[Mapping] | None = None) -> list[MappedObject]:
    """Every ELF file mapped from offset 0, with its build-id and load bias (as *maps* show them, when
    given: /proc/PID/maps read by the caller)."""
    maps = read_maps(pid) if maps is None else maps
    objects = []
    by_path: dict[str, list[Mapping]] = {}
    for mapping in maps:
        if mapping.path.startswith("/"):
            by_path.setdefault(mapping.path, []).append(mapping)
    for path, mappings in by_path.items():
        first = min(mappings, key=lambda m: m.start)
        if first.offset != 0:
            continue
        try:
            data = _mapped_file_bytes(pid, first, 1 << 30)
        except PermissionError as exc:
            raise ProcessError(f"not allowed to read the mapped files of process {pid} (need root)") from exc
        except OSError:
            continue
        try:
            build_id = build_id_of_bytes(data)
        except NotAnELFFile:
            continue
        objects.append(MappedObject(path, build_id, first.start - _first_load_vaddr(data), mappings, data))
    return objects


def _first_load_vaddr(data: bytes) -> int:
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    vaddrs = []
    for index in range(phnum):
        p_type, _flags, _offset, vaddr = struct.unpack_from("<IIQQ", data, phoff + index * phentsize)
        if p_type == 1:  # PT_LOAD
            vaddrs.append(vaddr)
    return min(vaddrs) & ~(PAGE - 1) if vaddrs else 0


def find_target(pid: int, build_id: str) -> MappedObject:
    """The mapped object with *build_id*, or a one-line reason why the process is not a target."""
    objects = mapped_objects(pid)
    for item in objects:
        if item.build_id == build_id:
            return item
    main = objects[0] if objects else None
    running = f"{main.path} (build-id {main.build_id})" if main else "nothing buildhook can read"
    raise ProcessError(f"process {pid} does not map the patch's target (build-id {build_id}); it runs {running}")


def free_gap_near(pid: int, near: tuple[int, int], size: int, reach: int = 1 << 31) -> int:
    """A page-aligned free address range of *size* bytes within *reach* of the whole of *near*.

    Patch code must reach the target's code with 32-bit displacements both
    ways, so the gap is searched close below and close above the text.
    """
    maps = sorted(read_maps(pid), key=lambda m: m.start)
    size = (size + PAGE - 1) & ~(PAGE - 1)
    low_limit = max(near[1] - reach + PAGE, PAGE * 16)
    high_limit = near[0] + reach - size - PAGE
    candidates = []
    previous_end = 0
    for mapping in maps + [Mapping(1 << 47, 1 << 47, "", 0, "")]:
        gap_start, gap_end = previous_end + PAGE, mapping.start - PAGE  # a guard page either side
        if gap_end - gap_start >= size:
            # Prefer the end of a gap below the text, the start of a gap above it.
            below = min(gap_end - size, near[0] - size)
            if gap_start <= below and below >= low_limit:
                candidates.append(below)
            above = max(gap_start, near[1])
            if above + size <= gap_end and above <= high_limit:
                candidates.append(above)
        previous_end = max(previous_end, mapping.end)
    if not candidates:
        raise ProcessError(f"no free {size}-byte range within ±2 GiB of the target's code in process {pid}")
    best = min(candidates, key=lambda address: abs(address - near[0]))
    return best & ~(PAGE - 1)
