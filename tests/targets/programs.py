"""Small hand-written DP-IR programs that together use every DP-IR construct, so that
every emitter path of the P4 backends is exercised (and checked against the
interpreter where the tools exist)."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from mantra6g.synth import dpir
from mantra6g.synth.checksums import header_checksum
from mantra6g.synth.dpir import (
    Action,
    ActionCall,
    ActionParam,
    Apply,
    Assign,
    BinOp,
    Call,
    Const,
    CopyHeader,
    Count,
    Drop,
    Entry,
    Exact,
    Forward,
    Hash,
    HeaderInstance,
    If,
    IsValid,
    Lpm,
    MeterExec,
    Program,
    Range,
    ReadTimestamp,
    Ref,
    RegisterRead,
    RegisterWrite,
    SetInvalid,
    SetValid,
    Table,
    TableKey,
    Ternary,
    UnOp,

)
from tests.synth.test_dpir import HEADERS, parser, router


def tunnel() -> Program:
    """VXLAN-style encapsulation: push outer Ethernet/IPv4/UDP (SetValid, CopyHeader), the
    outer IPv4 checksum (``OnesSum``); a second table decapsulates (SetInvalid)."""
    headers = HEADERS + (
        HeaderInstance("outer_eth", "eth"),
        HeaderInstance("outer_ipv4", "ipv4"),
        HeaderInstance("outer_udp", "udp"),
        HeaderInstance("vxlan", "vxlan"),
    )
    encap = Action(
        "encap",
        (ActionParam("vni", 24), ActionParam("remote", 32)),
        (
            CopyHeader("outer_eth", "eth"),
            SetValid("outer_ipv4"),
            Assign("outer_ipv4.version", Const(4, 4)),
            Assign("outer_ipv4.ihl", Const(5, 4)),
            Assign("outer_ipv4.ttl", Const(64, 8)),
            Assign("outer_ipv4.proto", Const(17, 8)),
            Assign("outer_ipv4.src", Const(0x0A0000FE, 32)),
            Assign("outer_ipv4.dst", Ref("param.remote")),
            # total length: inner IPv4 + 14 (inner Ethernet) + 8 (VXLAN) + 8 (UDP) + 20
            Assign("outer_ipv4.len", BinOp("+", Ref("ipv4.len"), Const(50, 16))),
            SetValid("outer_udp"),
            Assign("outer_udp.sport", Const(49152, 16)),
            Assign("outer_udp.dport", Const(4789, 16)),
            Assign("outer_udp.len", BinOp("+", Ref("ipv4.len"), Const(30, 16))),
            SetValid("vxlan"),
            Assign("vxlan.flags", Const(0x08, 8)),
            Assign("vxlan.vni", Ref("param.vni")),
            Assign("outer_udp.checksum", Const(0, 16)),
            header_checksum("outer_ipv4"),
            Forward(Const(7, 9)),
        ),
    )
    strip_vlan_like = Action("pop_tcp", (), (SetInvalid("tcp"), Forward(Const(3, 9))))
    tunnels = Table(
        "tunnels",
        (TableKey("ipv4.dst", "exact"),),
        ("encap", "nop"),
        ActionCall("nop"),
        16,
        (Entry((Exact(0x0A020304),), ActionCall("encap", (42, 0xC0A80001))),),
    )
    return Program(
        name="tunnel",
        headers=headers,
        parser=parser(),
        deparse=("outer_eth", "outer_ipv4", "outer_udp", "vxlan", "eth", "ipv4", "udp", "tcp"),
        actions=(encap, strip_vlan_like, Action("nop")),
        tables=(tunnels,),
        control=(
            If(
                IsValid("tcp"),
                (Call("pop_tcp"),),
                (Apply("tunnels", on_miss=(Drop(),)),),
            ),
        ),
    )


def load_balancer() -> Program:
    """Hash of the 5-tuple into 7 buckets starting at 1, used as the egress port."""
    return router(
        name="lb",
        metadata=(dpir.MetaField("bucket", 9), dpir.MetaField("flag", 1)),
        actions=(Action("fwd", (), (Forward(Ref("meta.bucket")),)),),
        tables=(),
        control=(
            If(
                IsValid("udp"),
                (
                    Hash(
                        "meta.bucket",
                        (Ref("ipv4.src"), Ref("ipv4.dst"), Ref("ipv4.proto"), Ref("udp.sport"), Ref("udp.dport")),
                        size=7,
                        base=1,
                    ),
                    Assign("meta.flag", BinOp("==", Ref("udp.dport"), Const(5000, 16))),
                    If(BinOp("||", Ref("meta.flag"), UnOp("!", IsValid("tcp"))), (Call("fwd"),)),
                ),
            ),
        ),
    )


def stateful() -> Program:
    """Counters, registers (read and write), a meter and the ingress timestamp."""
    return router(
        name="stateful",
        metadata=(
            dpir.MetaField("colour", 2),
            dpir.MetaField("port", 9),
            dpir.MetaField("ts", 64),
            dpir.MetaField("slot", 9),
        ),
        registers=(dpir.Register("last_ttl", 8, 4), dpir.Register("port_of", 9, 2), dpir.Register("last_seen", 64, 1)),
        counters=(dpir.Counter("pkts", 4),),
        meters=(dpir.Meter("m", 1, rate_bps=8_000, burst_bytes=100),),
        actions=(Action("out", (ActionParam("port", 9),), (Forward(Ref("param.port")),)),),
        tables=(),
        control=(
            Count("pkts", Const(2, 2)),
            ReadTimestamp("meta.ts"),
            RegisterWrite("last_seen", Const(0, 1), Ref("meta.ts")),
            Assign("meta.slot", BinOp("&", Ref("std.ingress_port"), Const(3, 9))),
            If(
                IsValid("ipv4"),
                (
                    RegisterWrite("last_ttl", Ref("meta.slot"), Ref("ipv4.ttl")),
                    RegisterRead("meta.port", "port_of", Const(1, 1)),
                    MeterExec("m", Const(0, 1), "meta.colour"),
                    If(
                        BinOp("==", Ref("meta.colour"), Const(0, 2)),
                        (Call("out", (1,)),),
                        (Drop(),),
                    ),
                ),
            ),
        ),
    )


def acl() -> Program:
    """A const ternary/range ACL with a validity key, then a runtime LPM table whose
    hit/miss branches run statements; the ACL's allow sets metadata."""
    acl_table = Table(
        "acl",
        (
            TableKey("tcp.$valid", "exact"),
            TableKey("tcp.dport", "ternary"),
            TableKey("ipv4.src", "ternary"),
            TableKey("ipv4.ttl", "range"),
        ),
        ("allow", "deny"),
        ActionCall("deny"),
        16,
        (
            Entry((Exact(1), Ternary(22, 0xFFFF), Ternary(0, 0), Ternary(0, 0)), ActionCall("deny"), priority=20),
            Entry(
                (Exact(1), Ternary(0, 0), Ternary(0x0A090000, 0xFFFF0000), Range(2, 255)),
                ActionCall("allow", (1,)),
                priority=10,
            ),
            Entry((Exact(0), Ternary(0, 0), Ternary(0, 0), Range(0, 255)), ActionCall("allow", (0,)), priority=5),
        ),
        const=True,
    )
    fib = Table(
        "fib",
        (TableKey("ipv4.dst", "lpm"), TableKey("meta.class", "exact")),
        ("route", "drop"),
        ActionCall("drop"),
        64,
        (
            Entry((Lpm(0x0A000000, 8), Exact(1)), ActionCall("route", (5,))),
            Entry((Lpm(0x0A020000, 16), Exact(1)), ActionCall("route", (6,))),
            Entry((Lpm(0, 0), Exact(0)), ActionCall("route", (2,))),
        ),
    )
    return router(
        name="acl",
        metadata=(dpir.MetaField("class", 1), dpir.MetaField("hits", 8)),
        actions=(
            Action("allow", (ActionParam("cls", 1),), (Assign("meta.class", Ref("param.cls")),)),
            Action("deny", (), (Drop(),)),
            Action("route", (ActionParam("port", 9),), (Forward(Ref("param.port")),)),
            Action("drop", (), (Drop(),)),
        ),
        tables=(acl_table, fib),
        control=(
            Apply("acl"),
            Apply(
                "fib",
                on_hit=(Assign("meta.hits", BinOp("+", Ref("meta.hits"), Const(1, 8))),),
                on_miss=(Assign("ipv4.ttl", BinOp("-", Ref("ipv4.ttl"), Const(1, 8))),),
            ),
        ),
    )


def wrapped() -> Program:
    """Extern indices wider than their extern, whose size is no power of two, so each
    must wrap (``index % size``, as the interpreter does): the 7-cell register is written
    at ``ttl`` and read back at ``ttl + 7`` (the same cell only if both wrap) into
    ``ipv4.ident``; a 6-cell counter counts by UDP source port."""
    return router(
        name="wrapped",
        metadata=(dpir.MetaField("back", 8),),
        registers=(dpir.Register("ttl_of", 8, 7),),
        counters=(dpir.Counter("by_sport", 6),),
        actions=(),
        tables=(),
        control=(
            If(
                IsValid("ipv4"),
                (
                    RegisterWrite("ttl_of", Ref("ipv4.ttl"), Ref("ipv4.ttl")),
                    RegisterRead("meta.back", "ttl_of", BinOp("+", dpir.Cast(Ref("ipv4.ttl"), 16), Const(7, 16))),
                    Assign("ipv4.ident", dpir.Cast(Ref("meta.back"), 16)),
                    If(IsValid("udp"), (Count("by_sport", Ref("udp.sport")),)),
                    Forward(Const(1, 9)),
                ),
            ),
        ),
    )


PROGRAMS = {"router": router, "tunnel": tunnel, "lb": load_balancer, "stateful": stateful, "acl": acl,
            "wrapped": wrapped}


# ---------------------------------------------------------------- packets


def udp_packet(src="10.9.0.1", dst="10.2.3.4", sport=1234, dport=5000, ttl=64, payload=b"hello") -> bytes:
    return bytes(
        Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:fe")
        / IP(src=src, dst=dst, ttl=ttl)
        / UDP(sport=sport, dport=dport)
        / payload
    )


def tcp_packet(src="10.9.0.1", dst="10.2.3.4", dport=80, ttl=64) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:fe") / IP(src=src, dst=dst, ttl=ttl) / TCP(dport=dport))


def packets() -> list[tuple[bytes, int]]:
    """(bytes, ingress port) pairs covering hits, misses, drops and parser errors."""
    arp = bytes(Ether(src="02:00:00:00:00:aa", dst="ff:ff:ff:ff:ff:ff", type=0x0806) / (b"\0" * 28))
    return [
        (udp_packet(), 1),
        (udp_packet(dst="10.7.0.1", sport=999), 2),
        (udp_packet(dst="192.168.1.1"), 0),
        (udp_packet(ttl=1), 1),
        (tcp_packet(dport=22), 1),
        (tcp_packet(src="10.9.1.1", dport=80), 3),
        (tcp_packet(src="10.8.0.1", dport=80, dst="10.2.0.9"), 3),
        (arp, 1),
        (udp_packet()[:20], 1),
    ]


def example_programs() -> list[tuple[str, Program]]:
    """Every device program compiled from ``examples/*.sg`` ("file:device", program)."""
    from mantra6g.synth import frontend
    from mantra6g.synth.compose import compile_specs
    from tests.conftest import EXAMPLES

    out = []
    for path in EXAMPLES:
        for dp in compile_specs(frontend.load([path])):
            out.append((f"{path.name}:{dp.name}", dp.program))
    return out
