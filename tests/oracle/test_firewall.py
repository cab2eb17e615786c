"""A firewall never allows what its rules deny, whatever Mantra's parser leaves unread.

The parser reads no transport header behind IPv4 options, in a fragment or behind an
IPv6 extension header (docs/dpir.md). The oracle here is scapy's own dissection, which
reads TCP and UDP in all of those places: each rule list is written twice, as the
``.sg`` text a user writes and as a Python predicate over scapy's layers, and every
frame that the predicates, applied first-match to the fully dissected packet, deny must
be dropped. The reference model (tests/oracle/model.py) is judged against that oracle
here, and every target against the reference model (the interpreter, XDP in the kernel,
BMv2 where it is installed), frame by frame.
"""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Ether

from mantra6g.synth.tables import with_tables
from mantra6g.targets.xdp import emit_c
from mantra6g.targets.xdp_emit import INLINE_SCAN
from tests.oracle import bmv2
from tests.oracle.cases import Case, Interp, Xdp, expected, graph_text, judge
from tests.oracle.traffic import MACS

# (rules as written, default, the same rules over scapy's dissection)
FIREWALLS = {
    "deny-smb": (
        ["deny tcp.dport == 445"], "allow",
        [("deny", lambda p: TCP in p and p[TCP].dport == 445)],
    ),
    "dns-only-udp": (
        ["allow udp.dport == 53", "deny udp.dport >= 0"], "allow",
        [("allow", lambda p: UDP in p and p[UDP].dport == 53), ("deny", lambda p: UDP in p)],
    ),
    "lan-ssh": (
        ["allow ipv4.src in 10.1.0.0/16 and tcp.dport == 22", "deny tcp.dport in 20..23 or udp.dport == 69"], "allow",
        [("allow", lambda p: IP in p and p[IP].src.startswith("10.1.") and TCP in p and p[TCP].dport == 22),
         ("deny", lambda p: (TCP in p and 20 <= p[TCP].dport <= 23) or (UDP in p and p[UDP].dport == 69))],
    ),
    "v6-telnet": (
        ["deny ipv6.hop_limit < 255 and tcp.dport == 23", "deny icmp.type == 8"], "allow",
        [("deny", lambda p: IPv6 in p and p[IPv6].hlim < 255 and TCP in p and p[TCP].dport == 23),
         ("deny", lambda p: ICMP in p and p[ICMP].type == 8)],
    ),
    "two-denies": (  # their fail-closed entries are shared
        ["deny tcp.dport == 22", "deny tcp.dport == 23"], "allow",
        [("deny", lambda p: TCP in p and p[TCP].dport == 22), ("deny", lambda p: TCP in p and p[TCP].dport == 23)],
    ),
    # 128-bit keys: on XDP a decision tree compares the address word by word.
    "v6-prefixes": (
        ["allow ipv6.src == 2001:db8::1 and udp.dport == 53", "deny ipv6.src in 2001:db8::/32 and udp.dport >= 0",
         "deny ipv6.dst in 2001:db8::/126 and tcp.dport > 79"], "allow",
        [("allow", lambda p: IPv6 in p and p[IPv6].src == SRC6 and UDP in p and p[UDP].dport == 53),
         ("deny", lambda p: IPv6 in p and IPv6Address(p[IPv6].src) in IPv6Network("2001:db8::/32") and UDP in p),
         ("deny", lambda p: IPv6 in p and IPv6Address(p[IPv6].dst) in IPv6Network("2001:db8::/126") and TCP in p
                  and p[TCP].dport > 79)],
    ),
}
# Enough /96 prefixes that the XDP decision tree cuts on the 128-bit source address,
# whose low word then decides (2001:db8::N:0:0/96, alternately denied and allowed).
_V6 = [f"2001:db8::{n}:0:0/96" for n in range(1, 9)]
FIREWALLS["v6-tree"] = (
    [f"{'deny' if n % 2 else 'allow'} ipv6.src in {p}" for n, p in enumerate(_V6, 1)]
    + ["deny ipv6.dst == 2001:db8::2 and tcp.dport >= 0"], "allow",
    [("deny" if n % 2 else "allow", lambda p, net=IPv6Network(net): IPv6 in p and IPv6Address(p[IPv6].src) in net)
     for n, net in enumerate(_V6, 1)]
    + [("deny", lambda p: IPv6 in p and p[IPv6].dst == DST6 and TCP in p)],
)

# 300 rules that no frame here matches before lan-ssh's: kept in a map (run-time
# updatable), XDP scans the entries in a bpf_loop.
FIREWALLS["long-scan"] = (
    [f"allow ipv4.src == 10.{1 + i // 200}.{1 + i % 200}.7 and tcp.dport == 22" for i in range(300)] + FIREWALLS["lan-ssh"][0],
    "allow", FIREWALLS["lan-ssh"][2],
)

SRC4, DST4 = "10.1.0.7", "10.2.0.11"
SRC6, DST6 = "2001:db8::1", "2001:db8::2"
# IPv6 sources inside, at the edges of and between the prefixes above.
SOURCES6 = (SRC6, "2001:db8::3:0:5", "2001:db8::3:ffff:ffff", "2001:db8::4:0:0", "2001:db8::9:0:0", "2001:db8:1::3:0:0",
            "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff")
ETH = Ether(src=MACS[0], dst=MACS[1])  # explicit: scapy would ARP for a missing dst


def _frames() -> list[tuple[str, bytes]]:
    """TCP, UDP and ICMP to the ports the rules name and others, in every place Mantra's
    parser leaves the transport unread, and plainly."""
    out = []
    for dport in (22, 23, 53, 69, 80, 445):
        for name, l4 in (("tcp", TCP(sport=40000, dport=dport, flags="S")), ("udp", UDP(sport=40000, dport=dport))):
            for src in (SRC4, "198.51.100.4"):
                v4 = {
                    "plain": IP(src=src, dst=DST4),
                    "options": IP(src=src, dst=DST4, options=[IPOption_Router_Alert()]),
                    "first-fragment": IP(src=src, dst=DST4, flags="MF", frag=0),
                }
                out += [(f"ipv4-{k}+{name}:{dport}", bytes(ETH / ip / l4 / b"payload!")) for k, ip in v4.items()]
            for k, ext in (("plain", None), ("hbh", IPv6ExtHdrHopByHop()), ("routing", IPv6ExtHdrRouting()),
                           ("destopt", IPv6ExtHdrDestOpt()), ("fragment", IPv6ExtHdrFragment(m=1, offset=0))):
                for hlim, src in [(64, SRC6), (255, SRC6)] + [(64, a) for a in SOURCES6[1:]] * (dport in (23, 53)):
                    pkt = ETH / IPv6(src=src, dst=DST6, hlim=hlim) / (ext / l4 if ext else l4) / b"payload!"
                    out.append((f"ipv6-{k}-hl{hlim}-{src}+{name}:{dport}", bytes(pkt)))
    for k, ip in (("plain", IP(src=SRC4, dst=DST4)), ("options", IP(src=SRC4, dst=DST4, options=[IPOption_Router_Alert()]))):
        for t in (0, 8):
            out.append((f"ipv4-{k}+icmp:{t}", bytes(ETH / ip / ICMP(type=t) / b"payload!")))
    return out


FRAMES = _frames()


def _case(name: str) -> Case:
    rules, default, _ = FIREWALLS[name]
    body = "\n".join(["nf fw = firewall(default: " + default + ") {", *("    " + r for r in rules), "}"])
    return Case(f"firewall-{name}", graph_text([body], "cls -> fw", "eth.type == ipv4 or eth.type == ipv6"), FRAMES)


CASES = [_case(n) for n in FIREWALLS]


def _oracle(name: str, data: bytes) -> str:
    """The first-match verdict of the rules on scapy's full dissection of the frame."""
    _, default, predicates = FIREWALLS[name]
    pkt = Ether(data)
    return next((verdict for verdict, holds in predicates if holds(pkt)), default)


def test_the_frames_carry_transports_where_mantra_does_not_read_them():
    """The oracle sees what the parser does not: scapy dissects TCP/UDP behind options,
    in first fragments and behind every IPv6 extension header used here."""
    for label, data in FRAMES:
        if "icmp" not in label:
            pkt = Ether(data)
            assert (TCP in pkt) or (UDP in pkt), label


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_reference_model_never_allows_what_the_rules_deny(case):
    name = case.name.removeprefix("firewall-")
    denied = allowed_plain = 0
    for (label, data), (outputs, _) in zip(case.frames, expected(case)):
        want = _oracle(name, data)
        if want == "deny":
            denied += 1
            assert outputs == [], f"{name}: {label} is denied by the rules but leaves"
        elif "plain" in label:
            allowed_plain += 1  # read in full by Mantra's parser: the verdicts agree
            assert outputs, f"{name}: {label} is allowed by the rules but dropped"
    assert denied and allowed_plain


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_interpreter_agrees_with_the_reference_on_unread_transports(case):
    judge([case], Interp)


@pytest.mark.root
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_xdp_agrees_with_the_reference_on_unread_transports(case, tmp_path):
    judge([case], lambda c: Xdp(c, tmp_path))


@pytest.mark.root
def test_xdp_scans_a_long_table_in_a_map_as_the_reference_says(tmp_path):
    (case,) = [c for c in CASES if c.name == "firewall-long-scan"]
    scanned = case.running(with_tables(case.program, "runtime"))
    assert len(scanned.program.table("g_fw_acl").entries) > INLINE_SCAN
    assert "bpf_loop(" in emit_c(scanned.program)
    judge([scanned], lambda c: Xdp(c, tmp_path))


NO_BMV2 = bmv2.missing()


@pytest.mark.skipif(NO_BMV2 is not None, reason=NO_BMV2 or "")
def test_bmv2_agrees_with_the_reference_on_unread_transports(tmp_path):
    found = bmv2.judge(CASES, tmp_path)
    assert not found, "\n".join(found[:5])


def test_fail_closed_entries_are_the_ones_the_docs_count():
    """Consistency (docs/nf/firewall.md): a deny alternative on TCP/UDP gains one IPv4
    and seven IPv6 entries, on ICMP one, on TCP with an IPv6 test only the IPv6 ones;
    allow rules gain none; alike fail-closed entries are shared."""
    sizes = {c.name.removeprefix("firewall-"): len(c.program.table("g_fw_acl").entries) for c in CASES}
    assert sizes == {"deny-smb": 9, "dns-only-udp": 1 + 9, "lan-ssh": 1 + 9 + 9, "v6-telnet": 8 + 2, "two-denies": 2 + 8, "v6-prefixes": 1 + 8 + 8, "v6-tree": 8 + 8,
                     "long-scan": 300 + 1 + 9 + 9}
