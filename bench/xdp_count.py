"""How many instructions an XDP program executes on one packet: a small interpreter of
the program as the kernel translated it (``bpftool prog dump xlated``: map lookups
inlined, constants of read-only maps in place), reading the program's maps from the
kernel. Unlike a timing it does not move between runs, so it shows a difference of a
few instructions that the noise of a 2-core machine hides.

What it counts: BPF instructions (a 16-byte ``ld_imm64`` once), every instruction of a
BPF-to-BPF subprogram; a helper call counts one, and the calls are listed apart (the
work inside one, a hash or trie walk, is the kernel's, not counted). The JIT turns one
BPF instruction into one to a few machine instructions, so counts compare programs, not
nanoseconds.

Its oracle is the kernel: :func:`count` returns the verdict and the bytes the emulation
leaves, and the caller compares them with ``BPF_PROG_TEST_RUN``'s on the same packet
(bench/xdp.py prints no count where they differ).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass

M64 = (1 << 64) - 1
# offsetof(struct bpf_array, value): an inlined array lookup adds it to the map's address.
ARRAY_VALUE = 312
HEADROOM = 256
LINE = re.compile(r"^\s*(\d+): \(([0-9a-f]{2})\) (.*)$")
JUMP = re.compile(r"if ([rw]\d+) (\S+) (\S+) goto pc([+-]\d+)")
LOAD = re.compile(r"([rw])(\d+) = \*\(u(8|16|32|64) \*\)\((r\d+) ([+-]\d+)\)")
STORE = re.compile(r"\*\(u(8|16|32|64) \*\)\((r\d+) ([+-]\d+)\) = (\S+)")
MAP = re.compile(r"r(\d+) = map\[id:(\d+)\](?:\[0\]\+(\d+))?")
SWAP = re.compile(r"([rw])(\d+) = (be|le|bswap)(16|32|64) [rw]\d+")
ALU = re.compile(r"([rw])(\d+) (s>>=|>>=|<<=|\+=|-=|\*=|/=|%=|\|=|&=|\^=|=) (\S+)")
SIGN = re.compile(r"([rw])(\d+) = \(s(8|16|32)\)([rw]\d+)")


_PROGRAMS: dict[int, dict[int, tuple[str, str]]] = {}  # prog id -> its translated instructions
_MAPS: dict[int, dict] = {}  # map id -> bpftool's description


class Unmodelled(Exception):
    """The program does something this interpreter does not model (a helper, a map type)."""


@dataclass(frozen=True)
class Ptr:
    region: object
    off: int

    def __add__(self, n: int) -> Ptr:
        return Ptr(self.region, self.off + n)


@dataclass(frozen=True)
class Count:
    verdict: int
    packet: bytes
    instructions: int
    calls: dict[str, int]


def _bpftool(*args: str):
    r = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True)
    if r.returncode:
        raise Unmodelled(f"bpftool {' '.join(args[:3])}: {r.stderr.strip() or r.stdout.strip()}")
    return json.loads(r.stdout)


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


class Machine:
    def __init__(self, prog_id: int, packet: bytes):
        if prog_id not in _PROGRAMS:  # ids are not reused while the program is loaded
            text = subprocess.run(["bpftool", "prog", "dump", "xlated", "id", str(prog_id)],
                                  capture_output=True, text=True, check=True).stdout
            _PROGRAMS[prog_id] = {int(m.group(1)): (m.group(2), m.group(3))
                                  for m in map(LINE.match, text.splitlines()) if m}
        self.insns = _PROGRAMS[prog_id]
        self.maps = _MAPS
        self.mem: dict[object, bytearray] = {}
        self.spills: dict[tuple, Ptr] = {}
        self.mem["pkt"] = bytearray(HEADROOM) + bytearray(packet)
        self.head, self.end = HEADROOM, len(self.mem["pkt"])
        self.calls: Counter = Counter()

    # ------------------------------------------------------------ memory
    def info(self, mid: int) -> dict:
        if mid not in self.maps:
            self.maps[mid] = _bpftool("map", "show", "id", str(mid))
        return self.maps[mid]

    def _value(self, mid: int, key: bytes) -> bytearray | None:
        try:
            out = _bpftool("map", "lookup", "id", str(mid), "key", *map(str, key))
        except Unmodelled:
            return None  # no such key
        v = out.get("value")
        if v is None and "values" in out:  # per-CPU: CPU 0's
            v = out["values"][0]["value"]
        return bytearray(int(b, 16) for b in v)

    def bytes_at(self, p: Ptr) -> tuple[bytearray, int]:
        r = p.region
        if isinstance(r, tuple) and r[0] == "map":  # an inlined array lookup's address
            inf = self.info(r[1])
            elem = (inf["bytes_value"] + 7) // 8 * 8
            i, within = divmod(p.off - ARRAY_VALUE, elem)
            return self.bytes_at(Ptr(("value", r[1], i.to_bytes(4, "little")), within))
        if r not in self.mem:
            if isinstance(r, tuple) and r[0] == "stack":
                self.mem[r] = bytearray(512)
            elif isinstance(r, tuple) and r[0] == "value":
                v = self._value(r[1], r[2])
                self.mem[r] = v if v is not None else bytearray(self.info(r[1])["bytes_value"])
            else:
                raise Unmodelled(f"memory {r}")
        return self.mem[r], p.off

    def load(self, p, size: int):
        if not isinstance(p, Ptr):
            raise Unmodelled(f"a load from the scalar {p:#x}")
        if size == 8 and (p.region, p.off) in self.spills:
            return self.spills[(p.region, p.off)]
        if p.region == "ctx":  # struct xdp_buff: data, data_end; then the rxq's device
            return {0: Ptr("pkt", self.head), 8: Ptr("pkt", self.end)}.get(p.off, Ptr("rxq", 0))
        if p.region == "rxq":
            return Ptr("dev", 0)
        if p.region == "dev":
            return 1  # the ifindex BPF_PROG_TEST_RUN gives (loopback)
        r = p.region
        if isinstance(r, tuple) and r[0] == "map" and self.info(r[1])["type"] == "percpu_array":
            # the per-CPU pointer table: the value of CPU 0
            return Ptr(("value", r[1], ((p.off - ARRAY_VALUE) // 8).to_bytes(4, "little")), 0)
        buf, o = self.bytes_at(p)
        if o < 0 or o + size > len(buf):
            raise Unmodelled(f"a load outside {r} (+{o}, {size} bytes)")
        return int.from_bytes(buf[o:o + size], "little")

    def store(self, p: Ptr, size: int, v) -> None:
        key = (p.region, p.off)
        if isinstance(v, Ptr):  # a spilled pointer
            self.spills[key] = v
            return
        self.spills.pop(key, None)
        buf, o = self.bytes_at(p)
        buf[o:o + size] = (v & ((1 << 8 * size) - 1)).to_bytes(size, "little")

    # ------------------------------------------------------------ execution
    def run(self) -> Count:
        r: dict[str, object] = {f"r{i}": 0 for i in range(11)}
        r["r1"], r["r10"] = Ptr("ctx", 0), Ptr(("stack", 0), 512)
        pc, frames, n = 0, [], 0
        while True:
            op, text = self.insns[pc]
            n += 1
            nxt = pc + (2 if op == "18" else 1)
            sub = re.fullmatch(r"call pc([+-]\d+)#.*", text)
            if sub:  # a BPF-to-BPF call: its own stack frame, r6-r9 kept
                frames.append((nxt, {k: r[k] for k in ("r6", "r7", "r8", "r9", "r10")}))
                r["r10"] = Ptr(("stack", len(frames)), 512)
                self.mem.pop(("stack", len(frames)), None)
                pc = nxt + int(sub.group(1))
                continue
            if text == "exit":
                if not frames:
                    pkt = bytes(self.mem["pkt"][self.head:self.end])
                    return Count(r["r0"], pkt, n, dict(self.calls))
                pc, saved = frames.pop()
                r.update(saved)
                continue
            pc = self.step(r, text, nxt)

    def val(self, r, s: str):
        if s[0] in "rw":
            v = r["r" + s[1:]]
            return v if s[0] == "r" or isinstance(v, Ptr) else v & 0xFFFFFFFF
        return int(s, 0) & M64

    def step(self, r, text: str, nxt: int) -> int:
        if m := re.fullmatch(r"goto pc([+-]\d+)", text):
            return nxt + int(m.group(1))
        if m := JUMP.fullmatch(text):
            a, b = self.val(r, m.group(1)), self.val(r, m.group(3))
            if isinstance(a, Ptr) and isinstance(b, Ptr):  # a bounds check
                a, b = a.off, b.off
            elif isinstance(a, Ptr) or isinstance(b, Ptr):  # a null check
                a, b = (1 if isinstance(a, Ptr) else a), (1 if isinstance(b, Ptr) else b)
            bits = 32 if m.group(1)[0] == "w" else 64
            a, b = a & ((1 << bits) - 1), b & ((1 << bits) - 1)
            sa, sb = _signed(a, bits), _signed(b, bits)
            taken = {"==": a == b, "!=": a != b, ">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b,
                     "s>": sa > sb, "s>=": sa >= sb, "s<": sa < sb, "s<=": sa <= sb, "&": bool(a & b)}[m.group(2)]
            return nxt + int(m.group(4)) if taken else nxt
        if m := re.fullmatch(r"call (\S+?)#\d+", text):
            self.calls[m.group(1)] += 1
            r["r0"] = self.helper(m.group(1), r)
            for i in range(1, 6):
                r[f"r{i}"] = 0
            return nxt
        if m := STORE.fullmatch(text):
            self.store(r[m.group(2)] + int(m.group(3)), int(m.group(1)) // 8, self.val(r, m.group(4)))
        elif m := LOAD.fullmatch(text):
            r["r" + m.group(2)] = self.load(r[m.group(4)] + int(m.group(5)), int(m.group(3)) // 8)
        elif m := MAP.fullmatch(text):
            mid = int(m.group(2))
            r["r" + m.group(1)] = (Ptr(("map", mid), 0) if m.group(3) is None
                                   else Ptr(("value", mid, bytes(4)), int(m.group(3))))
        elif m := SWAP.fullmatch(text):
            d, n = "r" + m.group(2), int(m.group(4)) // 8
            v = r[d] & ((1 << 8 * n) - 1)
            r[d] = v if m.group(3) == "le" else int.from_bytes(v.to_bytes(n, "little"), "big")
        elif m := ALU.fullmatch(text):
            self.alu(r, m.group(1) == "w", "r" + m.group(2), m.group(3), self.val(r, m.group(4)))
        elif m := re.fullmatch(r"([rw])(\d+) = -[rw]\d+", text):
            d = "r" + m.group(2)
            r[d] = -r[d] & (0xFFFFFFFF if m.group(1) == "w" else M64)
        elif m := SIGN.fullmatch(text):
            v = _signed(self.val(r, m.group(4)) & ((1 << int(m.group(3))) - 1), int(m.group(3)))
            r["r" + m.group(2)] = v & (0xFFFFFFFF if m.group(1) == "w" else M64)
        else:
            raise Unmodelled(f"the instruction {text!r}")
        return nxt

    def alu(self, r, w32: bool, d: str, o: str, v) -> None:
        a = r[d]
        if o == "=":
            r[d] = v if not w32 or isinstance(v, Ptr) else v & 0xFFFFFFFF
            return
        if isinstance(a, Ptr) or isinstance(v, Ptr):
            if o == "-=" and isinstance(a, Ptr) and isinstance(v, Ptr):
                r[d] = (a.off - v.off) & M64
            elif o in ("+=", "-=") and isinstance(a, Ptr) and not isinstance(v, Ptr):
                r[d] = a + (_signed(v, 64) if o == "+=" else -_signed(v, 64))
            elif o == "+=" and isinstance(v, Ptr):
                r[d] = v + _signed(a, 64)
            else:
                raise Unmodelled(f"pointer arithmetic {o}")
            return
        mask, bits = (0xFFFFFFFF, 32) if w32 else (M64, 64)
        a, v = a & mask, v & mask
        x = {
            "+=": lambda: a + v, "-=": lambda: a - v, "*=": lambda: a * v,
            "/=": lambda: a // v if v else 0, "%=": lambda: a % v if v else a,
            "|=": lambda: a | v, "&=": lambda: a & v, "^=": lambda: a ^ v,
            "<<=": lambda: a << (v % bits), ">>=": lambda: a >> (v % bits),
            "s>>=": lambda: _signed(a, bits) >> (v % bits),
        }[o]()
        r[d] = x & mask

    def helper(self, name: str, r):
        if name in ("__htab_map_lookup_elem", "trie_lookup_elem", "bpf_map_lookup_elem"):
            mid = r["r1"].region[1]
            inf = self.info(mid)
            buf, o = self.bytes_at(r["r2"])
            key = bytes(buf[o:o + inf["bytes_key"]])
            region = ("value", mid, key)
            if region not in self.mem:
                v = self._value(mid, key)
                if v is None:
                    return 0
                self.mem[region] = v
            # A hash map's inlined lookup calls for the element, then adds
            # offsetof(struct htab_elem, key) + round_up(key_size, 8) to reach the value.
            shift = 48 + (inf["bytes_key"] + 7) // 8 * 8 if name == "__htab_map_lookup_elem" else 0
            return Ptr(region, -shift)
        if name == "bpf_ktime_get_ns":
            return time.monotonic_ns()  # CLOCK_MONOTONIC, as the helper
        if name == "bpf_xdp_adjust_head":
            delta = _signed(self.val(r, "r2") & 0xFFFFFFFF, 32)
            if not 0 <= self.head + delta <= self.end - 14:
                return -22 & M64
            self.head += delta
            return 0
        if name in ("bpf_redirect_map", "dev_map_redirect"):
            # XDP_REDIRECT where the device map has the slot, else the flags' fallback action
            mid, slot = r["r1"].region[1], self.val(r, "r2") & 0xFFFFFFFF
            present = self._value(mid, slot.to_bytes(4, "little")) is not None
            return 4 if present else self.val(r, "r3") & 3
        if name == "bpf_xdp_get_buff_len":
            return self.end - self.head
        raise Unmodelled(f"the helper {name}")


def count(prog_id: int, packet: bytes) -> Count:
    """Run the loaded program ``prog_id`` on ``packet``: its verdict, the bytes it leaves,
    the instructions it executed and the helpers it called."""
    return Machine(prog_id, packet).run()


def agrees(c: Count, verdict: int, before: bytes, after: bytes) -> bool:
    """Whether ``c`` ends as the kernel did: its verdict, and the bytes of the kernel's runs
    just before and just after it (``BPF_PROG_TEST_RUN``). Where those two differ a clock
    was read, and the interpretation, run between them, read a time in between: from the
    first byte where they differ, the 7 after it are not compared either (a stamp's lower
    bytes, equal in the two runs by chance)."""
    if c.verdict != verdict or not len(c.packet) == len(before) == len(after):
        return False
    moved = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    clock = {j for i in moved for j in range(i, i + 8)}
    return all(x == y for i, (x, y) in enumerate(zip(c.packet, before)) if i not in clock)


def prog_id(fd: int) -> int:
    """The kernel's id of the program behind ``fd``."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return int(next(line for line in f if line.startswith("prog_id")).split()[1])
