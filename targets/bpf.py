"""Loading XDP objects into the kernel: a thin ctypes binding over libbpf (``libbpf.so.1``
from Debian's libbpf1, the library iproute2 and bpftool use).

    obj = BpfObject.load("prog.o")          # verifier log in the error if rejected
    obj.update("tbl_fib", key, value)
    retval, data, ns = obj.test_run(packet)  # BPF_PROG_TEST_RUN
    obj.attach("veth0")                      # native XDP, replacing what was there

Needs root (CAP_BPF/CAP_NET_ADMIN).
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from pathlib import Path

from mantra6g.errors import MantraError

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_REPLACE = 1 << 4
BPF_ANY = 0
LOG_SIZE = 64 << 20  # a rejected program's full log can be tens of MiB


class BpfError(MantraError):
    """The kernel or libbpf refused an operation."""


class VerifierError(BpfError):
    """The verifier rejected the program; ``log`` is its log."""

    def __init__(self, message: str, log: str):
        self.log = log
        super().__init__(f"{message}\n--- verifier log (last lines) ---\n{_tail(log)}")


def _tail(log: str, lines: int = 40) -> str:
    return "\n".join(log.strip().splitlines()[-lines:])


class _TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class _XdpAttachOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("old_prog_fd", ctypes.c_int)]


def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError:
        raise MantraError("libbpf.so.1 not found: install libbpf1 (make setup does)") from None
    vp, cp, i, u32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32
    for name, res, args in [
        ("libbpf_set_print", vp, [vp]),
        ("bpf_object__open_file", vp, [cp, vp]),
        ("bpf_object__load", i, [vp]),
        ("bpf_object__close", None, [vp]),
        ("bpf_object__next_program", vp, [vp, vp]),
        ("bpf_object__find_map_by_name", vp, [vp, cp]),
        ("bpf_object__next_map", vp, [vp, vp]),
        ("bpf_map__name", cp, [vp]),
        ("bpf_map__type", i, [vp]),
        ("bpf_program__section_name", cp, [vp]),
        ("bpf_map__fd", i, [vp]),
        ("bpf_map__pin", i, [vp, cp]),
        ("bpf_program__fd", i, [vp]),
        ("bpf_program__name", cp, [vp]),
        ("bpf_program__set_log_buf", i, [vp, cp, ctypes.c_size_t]),
        ("bpf_program__set_log_level", i, [vp, u32]),
        ("bpf_map_update_elem", i, [i, vp, vp, ctypes.c_uint64]),
        ("bpf_map_lookup_elem", i, [i, vp, vp]),
        ("bpf_prog_test_run_opts", i, [i, ctypes.POINTER(_TestRunOpts)]),
        ("bpf_xdp_attach", i, [i, i, u32, ctypes.POINTER(_XdpAttachOpts)]),
        ("bpf_xdp_detach", i, [i, u32, ctypes.POINTER(_XdpAttachOpts)]),
        ("bpf_xdp_query_id", i, [i, i, ctypes.POINTER(u32)]),
        ("bpf_obj_pin", i, [i, cp]),
        ("bpf_obj_get", i, [cp]),
        ("bpf_prog_get_fd_by_id", i, [u32]),
    ]:
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    lib.libbpf_set_print(None)  # errors reach the user through our exceptions, with the log
    return lib


_LIB: ctypes.CDLL | None = None


def lib() -> ctypes.CDLL:
    global _LIB
    if _LIB is None:
        _LIB = _lib()
    return _LIB


def _errno(ret: int) -> int:
    """libbpf returns -errno (and sets errno)."""
    return -ret if ret < 0 else ctypes.get_errno()


@dataclass(frozen=True)
class VerifierStats:
    instructions: int  # processed by the verifier
    stack_depth: int  # bytes
    log: str


# enum bpf_map_type (include/uapi/linux/bpf.h) for the kinds our programs use.
MAP_TYPES = {1: "hash", 2: "array", 5: "percpu_hash", 6: "percpu_array", 9: "lru_hash", 11: "lpm_trie", 14: "devmap"}


@dataclass(frozen=True)
class ObjectContents:
    """What an ELF BPF object declares, read by libbpf without loading it (no root)."""

    programs: dict[str, str]  # function name -> ELF section ("xdp")
    maps: dict[str, str]  # map name -> kind ("hash", "lpm_trie", ...; else "type N")


def inspect(path: str | Path) -> ObjectContents:
    """The programs and maps of the object at ``path``; libbpf's internal maps
    (``.rodata``, ``.bss``: their names hold a dot) are left out."""
    L = lib()
    obj = L.bpf_object__open_file(str(path).encode(), None)
    if not obj:
        raise BpfError(f"cannot open BPF object {path}: {os.strerror(ctypes.get_errno() or errno.EINVAL)}")
    try:
        programs = {}
        prog = L.bpf_object__next_program(obj, None)
        while prog:
            programs[L.bpf_program__name(prog).decode()] = L.bpf_program__section_name(prog).decode()
            prog = L.bpf_object__next_program(obj, prog)
        maps = {}
        m = L.bpf_object__next_map(obj, None)
        while m:
            name = L.bpf_map__name(m).decode()
            if "." not in name:
                kind = L.bpf_map__type(m)
                maps[name] = MAP_TYPES.get(kind, f"type {kind}")
            m = L.bpf_object__next_map(obj, m)
        return ObjectContents(programs, maps)
    finally:
        L.bpf_object__close(obj)


class BpfObject:
    """A loaded BPF object with one XDP program."""

    def __init__(self, obj: int, prog: int, stats: VerifierStats, path: str):
        self._obj = obj
        self._prog = prog
        self.stats = stats
        self.path = path
        self.fd = lib().bpf_program__fd(prog)
        self._maps: dict[str, int] = {}
        m = lib().bpf_object__next_map(obj, None)
        while m:
            self._maps[lib().bpf_map__name(m).decode()] = m
            m = lib().bpf_object__next_map(obj, m)

    @classmethod
    def load(cls, path: str | Path) -> BpfObject:
        """Open and load ``path``; on verifier rejection raise :class:`VerifierError` with its log."""
        L = lib()
        obj = L.bpf_object__open_file(str(path).encode(), None)
        if not obj:
            raise BpfError(f"cannot open BPF object {path}: {os.strerror(ctypes.get_errno() or errno.EINVAL)}")
        prog = L.bpf_object__next_program(obj, None)
        if not prog:
            L.bpf_object__close(obj)
            raise BpfError(f"{path} holds no BPF program")
        buf = ctypes.create_string_buffer(LOG_SIZE)
        L.bpf_program__set_log_buf(prog, buf, LOG_SIZE)
        L.bpf_program__set_log_level(prog, 4)  # statistics: instructions, stack depth
        ret = L.bpf_object__load(obj)
        log = buf.value.decode(errors="replace")
        if ret != 0:
            # Reload with the full log to show where it failed.
            L.bpf_object__close(obj)
            obj = L.bpf_object__open_file(str(path).encode(), None)
            prog = L.bpf_object__next_program(obj, None)
            L.bpf_program__set_log_buf(prog, buf, LOG_SIZE)
            L.bpf_program__set_log_level(prog, 1)
            L.bpf_object__load(obj)
            full = buf.value.decode(errors="replace")
            L.bpf_object__close(obj)
            raise VerifierError(f"the kernel rejected {path} ({os.strerror(_errno(ret))})", full or log)
        return cls(obj, prog, _parse_stats(log), str(path))

    def close(self) -> None:
        if self._obj:
            lib().bpf_object__close(self._obj)
            self._obj = 0

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def program_fd(self, name: str) -> int:
        """The fd of the object's program ``name`` (an object may hold several)."""
        prog = lib().bpf_object__next_program(self._obj, None)
        while prog:
            if lib().bpf_program__name(prog).decode() == name:
                return lib().bpf_program__fd(prog)
            prog = lib().bpf_object__next_program(self._obj, prog)
        raise BpfError(f"{self.path} has no program '{name}'")

    def test_run_fd(self, fd: int, data: bytes, repeat: int = 1) -> tuple[int, bytes, int]:
        """:meth:`test_run` of another program of this object (see :meth:`program_fd`)."""
        return _test_run(fd, data, repeat)

    # -- maps
    def map_fd(self, name: str) -> int:
        m = self._maps.get(name)
        if m is None:
            raise BpfError(f"{self.path} has no map '{name}'")
        return lib().bpf_map__fd(m)

    def maps(self) -> list[str]:
        return list(self._maps)

    def update(self, name: str, key: bytes, value: bytes) -> None:
        k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value, len(value))
        ret = lib().bpf_map_update_elem(self.map_fd(name), k, v, BPF_ANY)
        if ret != 0:
            raise BpfError(f"map {name}: update failed: {os.strerror(_errno(ret))}")

    def lookup(self, name: str, key: bytes, value_size: int) -> bytes | None:
        k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value_size)
        ret = lib().bpf_map_lookup_elem(self.map_fd(name), k, v)
        return v.raw if ret == 0 else None

    def pin_maps(self, directory: str | Path) -> None:
        """Pin every map but libbpf's internal ones (``.rodata``: constant data, nothing
        to update; bpffs refuses names with a dot)."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        for name, m in self._maps.items():
            if "." in name:
                continue
            target = Path(directory) / name
            if target.exists():
                target.unlink()
            ret = lib().bpf_map__pin(m, str(target).encode())
            if ret != 0:
                raise BpfError(f"cannot pin map {name} at {target}: {os.strerror(_errno(ret))}")

    # -- running
    def test_run(self, data: bytes, repeat: int = 1) -> tuple[int, bytes, int]:
        """BPF_PROG_TEST_RUN: (XDP verdict, output bytes, mean ns per run)."""
        return _test_run(self.fd, data, repeat)

    def attach(self, ifindex: int, mode: str = "native", replacing: int | None = None) -> None:
        """Attach to ``ifindex``, atomically replacing any XDP program already there; with
        ``replacing`` (a program fd, or -1 for "none"), only if that is what is attached
        (``XDP_FLAGS_REPLACE``): a program someone else attached meanwhile is not lost."""
        attach_fd(ifindex, self.fd, mode, replacing)


def _test_run(prog_fd: int, data: bytes, repeat: int) -> tuple[int, bytes, int]:
    """BPF_PROG_TEST_RUN of ``prog_fd``: (verdict, output bytes, mean ns per run)."""
    din = ctypes.create_string_buffer(data, len(data))
    dout = ctypes.create_string_buffer(len(data) + 1024)
    opts = _TestRunOpts(
        sz=ctypes.sizeof(_TestRunOpts),
        data_in=ctypes.cast(din, ctypes.c_void_p),
        data_out=ctypes.cast(dout, ctypes.c_void_p),
        data_size_in=len(data),
        data_size_out=len(dout),
        repeat=repeat,
    )
    ret = lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
    if ret != 0:
        raise BpfError(f"BPF_PROG_TEST_RUN failed: {os.strerror(_errno(ret))}")
    return opts.retval, dout.raw[: opts.data_size_out], opts.duration


def attach_fd(ifindex: int, prog_fd: int, mode: str = "native", replacing: int | None = None) -> None:
    """Attach program ``prog_fd`` to ``ifindex`` (see :meth:`BpfObject.attach`)."""
    flags = XDP_FLAGS_DRV_MODE if mode == "native" else XDP_FLAGS_SKB_MODE
    opts = None
    if replacing is not None and replacing >= 0:
        flags |= XDP_FLAGS_REPLACE
        opts = ctypes.byref(_XdpAttachOpts(ctypes.sizeof(_XdpAttachOpts), replacing))
    elif replacing is not None:
        flags |= XDP_FLAGS_UPDATE_IF_NOEXIST
    ret = lib().bpf_xdp_attach(ifindex, prog_fd, flags, opts)
    if ret != 0:
        why = os.strerror(_errno(ret))
        if _errno(ret) in (errno.EEXIST, errno.EBUSY):
            why += " (another program was attached meanwhile; nothing was replaced)"
        raise BpfError(f"cannot attach XDP program to ifindex {ifindex}: {why}")


def program_fd(prog_id: int) -> int:
    """A new fd for the loaded program ``prog_id`` (close it with os.close)."""
    fd = lib().bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        raise BpfError(f"cannot open XDP program {prog_id}: {os.strerror(_errno(fd))}")
    return fd


def detach(ifindex: int, mode: str = "native") -> None:
    flags = XDP_FLAGS_DRV_MODE if mode == "native" else XDP_FLAGS_SKB_MODE
    ret = lib().bpf_xdp_detach(ifindex, flags, None)
    if ret != 0:
        raise BpfError(f"cannot detach the XDP program from ifindex {ifindex}: {os.strerror(_errno(ret))}")


def attached_id(ifindex: int) -> int:
    """The id of the XDP program on ``ifindex`` (0: none)."""
    out = ctypes.c_uint32(0)
    ret = lib().bpf_xdp_query_id(ifindex, 0, ctypes.byref(out))
    if ret != 0:
        raise BpfError(f"cannot query ifindex {ifindex}: {os.strerror(_errno(ret))}")
    return out.value


def _parse_stats(log: str) -> VerifierStats:
    insns = stack = 0
    for line in log.splitlines():
        if line.startswith("processed "):
            insns = int(line.split()[1])
        elif line.startswith("stack depth "):
            stack = sum(int(x) for x in line.split()[2].split("+"))
    return VerifierStats(insns, stack, log)
