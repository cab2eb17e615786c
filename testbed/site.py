"""A real edge site in Mininet: compute nodes, switches, rate-limited links, the URLLC
and eMBB chains as XDP programs on the nodes, traffic, the in-network monitor's readout.

The site is a :class:`mininet.net.Mininet` with ``LinuxBridge`` switches (this kernel has
no Open vSwitch module, and no controller is needed; or BMv2 switches running a
synthesised fabric, :mod:`mantra6g.testbed.fabric`) and ``TCLink`` links whose
switch-side end carries a **tbf** rate limit (there is no netem: delay is real queueing).
Topology (one /24): the core switch holds ``gen`` (senders), ``rx`` (receiver, the load
balancer's backend addresses) and every node without a rack; each rack is a switch of its
own behind one uplink from the core, rate-limited towards the rack, which its nodes share.

Every Mininet host's namespace is also given a name (``ip netns attach <prefix>-<host>``),
so the XDP deploy, ``setns`` and the crash clean-up by prefix (:class:`testbed.netns.Lab`)
reach it like any named namespace.
"""

from __future__ import annotations

import bisect
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mantra6g.errors import MantraError
from mantra6g.testbed.chain import (
    EGRESS, INGRESS, STAGES, ChainParams, PinnedMaps, StageBuild, chain_programs, compile_chain, compile_embb,
    state_bytes, state_maps,
)
from mantra6g.testbed.fabric import Bmv2Switch, build_fabric, kill_stale_switches, require_tools
from mantra6g.testbed.netns import Lab, pass_program
from mantra6g.testbed.traffic import GroundTruth, read_records

SUBNET = "10.0.0.0/24"
GEN_IP, RX_IP, VIP, EMBB_SINK = "10.0.0.1", "10.0.0.2", "10.0.0.100", "10.0.0.200"
URLLC_PORT, EMBB_PORT = 5000, 6000
PIN_ROOT = Path("/sys/fs/bpf/mantra/root")
ENDPOINTS = ("gen", "rx")  # the hosts that are not compute nodes
ALL_CPUS = frozenset(os.sched_getaffinity(0))
# The nodes' reserved (pinned) partition: the last core. On a 2-core machine every node's
# reserved partition is this one core, the other is everyone's shared partition.
RESERVED_CPU = max(ALL_CPUS)
NAPI_RT_PRIORITY = 50  # SCHED_FIFO priority of an isolated stage's NAPI thread


def mac(i: int) -> str:
    return f"02:00:00:00:00:{i:02x}"


@dataclass(frozen=True)
class NodeConfig:
    """A compute node: its role (orchestrator NodeRole value), the rate of its link from
    its switch, and its rack ("": on the core switch)."""

    name: str
    role: str
    link_mbit: float = 100.0
    rack: str = ""


@dataclass(frozen=True)
class RackConfig:
    """A rack: a switch behind one uplink from the core, shared by the rack's nodes."""

    name: str
    uplink_mbit: float = 40.0


@dataclass(frozen=True)
class SiteConfig:
    """What a testbed run builds and sends. Rates are sized for a 2-core machine."""

    nodes: tuple[NodeConfig, ...] = (
        NodeConfig("A", "urllc"),
        NodeConfig("B", "embb", rack="r1"),
        NodeConfig("C", "shared"),
        NodeConfig("D", "spare", rack="r1"),
        NodeConfig("E", "spare"),
    )
    racks: tuple[RackConfig, ...] = (RackConfig("r1"),)
    embb_node: str = "B"  # the eMBB chain's node: the bulk is policed there and routed on to rx
    embb_limit_mbit: float = 35.0  # the eMBB slice's rate (its chain's policer)
    urllc_sla_ms: float = 1.0  # the URLLC slice's latency SLA (its graph, the policies, the report)
    urllc_rate_pps: float = 300.0
    urllc_flows: int = 8
    embb_rate_pps: float = 5000.0  # 48 Mbit/s of 1200-byte packets while on: > r1's 40 Mbit/s uplink
    embb_on_s: float = 1.0
    embb_off_s: float = 1.5
    tbf_latency_ms: float = 10.0  # tbf queue bound: the worst queueing delay on a link
    noisy_neighbours: int = 0  # CPU-bound processes on the shared node (best-effort batch work)
    switch: str = "linuxbridge"  # every switch: linuxbridge | bmv2 | bmv2_grpc (testbed/fabric.py)
    backends: tuple[str, ...] = ("10.0.0.201", "10.0.0.202", "10.0.0.203")
    seed: int = 1

    def node(self, name: str) -> NodeConfig:
        for n in self.nodes:
            if n.name == name:
                return n
        raise MantraError(f"no node '{name}' in the scenario")

    def rack_of(self, host: str) -> str:
        """The rack of a host ("" for the core switch, where ``gen`` and ``rx`` are)."""
        return "" if host in ENDPOINTS else self.node(host).rack

    def inbound(self, host: str, source: str = "gen") -> list[str]:
        """The rate-limited links a packet from ``source`` crosses into ``host``: the host's
        own link, and its rack's uplink unless ``source`` is in the same rack. A link is
        named by its node, a rack uplink by ``^rack``."""
        links = [] if host in ENDPOINTS else [host]
        rack = self.rack_of(host)
        if rack and self.rack_of(source) != rack:
            links.append(f"^{rack}")
        return links

    def link_mbit(self, link: str) -> float:
        if link.startswith("^"):
            return next(r.uplink_mbit for r in self.racks if r.name == link[1:])
        return self.node(link).link_mbit


@dataclass(frozen=True)
class MonitorReading:
    """The sink's per-slice registers at one instant."""

    time: float
    delay_sum_ns: int
    delay_count: int
    delay_max_ns: int


@dataclass(frozen=True)
class IntervalStats:
    """One interval of URLLC latency: the in-network monitor and the receivers' truth."""

    time: float
    monitor_mean_ms: float | None
    monitor_packets: int
    truth_mean_ms: float | None
    truth_packets: int


@dataclass(frozen=True)
class MigrationReport:
    """One migration of a stage, as carried out and measured."""

    stage: str
    source: str
    target: str
    started: float  # CLOCK_REALTIME seconds
    switched: float
    finished: float
    state_entries_copied: int

    @property
    def duration_ms(self) -> float:
        return (self.finished - self.started) * 1e3


class Site:
    """The running site. Use as a context manager: everything is torn down on exit,
    and whatever a crashed run with the same prefix left is removed on entry. The chain
    is deployed by :meth:`deploy_chain` once a placement is chosen."""

    def __init__(self, config: SiteConfig, workdir: Path, prefix: str = "mtb"):
        if len(prefix) > 8:
            raise MantraError("site prefix: at most 8 characters (interface names)")
        self.config, self.workdir, self.prefix = config, workdir, prefix
        self.lab = Lab(prefix)
        self.net = None  # mininet.net.Mininet, while the site runs
        self.procs: list[subprocess.Popen] = []
        self.placement: dict[str, str] = {}
        self.builds: dict[str, StageBuild] = {}
        self.embb_build: StageBuild | None = None
        self._urllc = self._embb = self._embb_sink = None  # traffic processes (start_traffic)
        self.slice_id = 1
        self.truth_file = workdir / "truth.bin"
        self._truth_offset = 0
        self.truth: list[GroundTruth] = []
        self._last: MonitorReading | None = None
        self.readings: list[MonitorReading] = []
        self.migrations: list[MigrationReport] = []
        self.isolated: set[str] = set()  # stages on the reserved core (see isolate())
        self.noise: list[subprocess.Popen] = []
        self._prebuilt: dict[tuple[tuple[str, str], ...], dict[str, StageBuild]] = {}
        self._napi: dict[str, list[int]] = {}  # node -> its interface's NAPI kernel threads

    # -------------------------------------------------------------- names
    def iface(self, host: str) -> str:
        """The host's interface (inside its namespace)."""
        return f"{self.prefix}-{host}"

    def switch(self, rack: str) -> str:
        """The bridge of a rack ("" = the core switch). LinuxBridge enslaves the ports whose
        names contain the bridge's, so every port is named after its bridge."""
        return f"{self.prefix}-r{rack}" if rack else f"{self.prefix}-s"

    def port(self, link: str) -> str:
        """The switch-side device of a link (a host, or ``^rack`` for a rack's uplink):
        where its tbf queue is."""
        if link.startswith("^"):
            return self.switch("") + link[1:]
        return self.switch(self.config.rack_of(link)) + link

    # -------------------------------------------------------------- the forwarding plan
    def ports(self, rack: str) -> list[tuple[str, str]]:
        """The ports of a rack's switch ("" = the core) in port-number order (1, 2, ...):
        (switch-side device, what is behind it). Behind a port is a host, ``^rack`` (the
        core's port down to a rack) or ``^`` (a rack's port up to the core)."""
        c = self.config
        if rack:
            return [(self.switch(rack) + "-up", "^")] + [(self.port(n.name), n.name) for n in c.nodes if n.rack == rack]
        hosts = list(ENDPOINTS) + [n.name for n in c.nodes if not n.rack]
        return [(self.port(h), h) for h in hosts] + [(self.port(f"^{r.name}"), f"^{r.name}") for r in c.racks]

    def stations(self, rack: str) -> dict[str, int]:
        """Where a rack's switch sends each host: host -> port number. A host behind
        another switch is reached up to the core (from a rack) or down its rack's uplink
        (from the core). The Linux bridges' static fdb and the BMv2 fabric both come from
        this one plan."""
        peers = [peer for _, peer in self.ports(rack)]
        out = {}
        for h in list(ENDPOINTS) + [n.name for n in self.config.nodes]:
            via = h if h in peers else "^" if rack else f"^{self.config.rack_of(h)}"
            out[h] = self.port_number(rack, via)
        return out

    def port_number(self, rack: str, peer: str) -> int:
        """The number of the port of a rack's switch behind which ``peer`` is (see
        :meth:`ports`)."""
        return 1 + [p for _, p in self.ports(rack)].index(peer)

    def fabric_stations(self, rack: str) -> dict[str, int]:
        """:meth:`stations` by MAC address: the BMv2 fabric's ``l2_forward`` rules."""
        return {self.host_mac(h): p for h, p in self.stations(rack).items()}

    def node_mac(self, node: str) -> str:
        return mac(0x10 + [n.name for n in self.config.nodes].index(node))

    def host_mac(self, host: str) -> str:
        return {"gen": mac(1), "rx": mac(2)}.get(host) or self.node_mac(host)

    def pins(self, node: str) -> Path:
        return PIN_ROOT / self.iface(node)

    # -------------------------------------------------------------- life cycle
    def __enter__(self) -> Site:
        require_tools(self.config.switch)  # a missing BMv2/p4c: said now, nothing built
        self._clean()  # what a crashed run with this prefix left behind
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.truth_file.unlink(missing_ok=True)
            self._build()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.net is not None:
            self.net.stop()
            self.net = None
        self._clean()

    def _clean(self) -> None:
        """Namespaces (and their processes), BMv2 switches, root-namespace bridges and
        ports, pinned maps."""
        self.lab.__exit__(None, None, None)
        kill_stale_switches(self.prefix)
        r = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if name.startswith(self.prefix + "-"):
                subprocess.run(["ip", "link", "delete", name], capture_output=True)
        remove_pins(self.prefix)

    def _build(self) -> None:
        from mininet.link import TCLink
        from mininet.log import setLogLevel
        from mininet.net import Mininet
        from mininet.nodelib import LinuxBridge

        from mantra6g.targets.bpf import BpfObject
        import socket as _s

        c = self.config
        setLogLevel("error")
        net = self.net = Mininet(topo=None, switch=LinuxBridge, controller=None, link=TCLink, build=False,
                                 autoSetMacs=False, autoStaticArp=False, waitConnected=False)

        def tbf(mbit: float) -> dict:
            return {"bw": mbit, "use_tbf": True, "latency_ms": c.tbf_latency_ms}

        racks = [""] + [r.name for r in c.racks]
        switches = {}
        for i, rack in enumerate(racks):
            name = self.switch(rack)
            if c.switch == "linuxbridge":
                switches[rack] = net.addSwitch(name, dpid=str(i + 1))
            else:  # the site's forwarding plan as a P4 program (compiled before anything starts)
                build = build_fabric(name.replace("-", "_"), self.fabric_stations(rack), self.workdir)
                switches[rack] = net.addSwitch(name, cls=Bmv2Switch, dpid=str(i + 1), build=build,
                                               grpc=c.switch == "bmv2_grpc", device_id=i)
        ips = {"gen": f"{GEN_IP}/24", "rx": f"{RX_IP}/24"}
        hosts = list(ENDPOINTS) + [n.name for n in c.nodes]
        for h in hosts:
            net.addHost(h, ip=ips.get(h), mac=self.host_mac(h))
        # Links with the plan's port numbers; a rack uplink is added from the core's side.
        for rack in racks:
            for number, (dev, peer) in enumerate(self.ports(rack), start=1):
                if peer == "^":
                    continue
                if peer.startswith("^"):
                    r = peer[1:]
                    net.addLink(switches[r], switches[rack], port1=self.port_number(r, "^"), port2=number,
                                intfName1=self.switch(r) + "-up", intfName2=dev,
                                params2=tbf(c.link_mbit(peer)))
                else:
                    net.addLink(net.get(peer), switches[rack], port2=number, intfName1=self.iface(peer),
                                intfName2=dev, params2=tbf(c.node(peer).link_mbit) if peer not in ENDPOINTS else {})
        net.build()
        for h in hosts:
            self.lab.attach(h, net.get(h).pid)
            self.lab.run(h, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
            if c.switch != "linuxbridge":
                # BMv2 reads frames as bytes: a checksum left to offload would stay unfinished.
                self.lab.run(h, "ethtool", "-K", self.iface(h), "tx", "off")
        net.start()
        pass_obj = pass_program(self.workdir)
        for rack, sw in switches.items():
            for dev, _ in self.ports(rack):
                subprocess.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.disable_ipv6=1"], capture_output=True)
            if c.switch == "linuxbridge":
                # A static forwarding entry per host on every bridge: a node that has not
                # sent yet (a migration's target) would otherwise be unknown, and the bridge
                # floods the first packets to every port - the old egress stage would
                # forward copies.
                devices = [dev for dev, _ in self.ports(rack)]
                for h, number in self.stations(rack).items():
                    _run("bridge", "fdb", "replace", self.host_mac(h), "dev", devices[number - 1], "master", "static")
        for n in c.nodes:
            # XDP_TX from the node into its veth needs an XDP program on the far end.
            o = BpfObject.load(pass_obj)
            o.attach(_s.if_nametoindex(self.port(n.name)))
            o.close()  # the attachment holds the program
        for b in (*c.backends, EMBB_SINK):
            self.lab.run("rx", "ip", "addr", "add", f"{b}/24", "dev", self.iface("rx"))
        self.lab.run("rx", "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0")
        self.lab.run("gen", "ip", "neigh", "replace", EMBB_SINK, "lladdr", self.node_mac(c.embb_node),
                     "dev", self.iface("gen"))

    def chain_params(self) -> ChainParams:
        c = self.config
        return ChainParams(SUBNET, VIP, c.backends, URLLC_PORT, mac(2), c.urllc_sla_ms, EMBB_SINK, EMBB_PORT,
                           c.embb_limit_mbit)

    def _nodes_arg(self, placement: dict[str, str]) -> dict[str, tuple[str, str]]:
        return {s: (placement[s], self.node_mac(placement[s])) for s in STAGES}

    def state_bytes(self) -> dict[str, int]:
        """The NF state of each stage (the same wherever it runs)."""
        nodes = [n.name for n in self.config.nodes]
        programs = chain_programs(self.chain_params(), self._nodes_arg(dict(zip(STAGES, nodes))))
        return {stage: state_bytes(program) for stage, program in programs.items()}

    def _attach(self, build: StageBuild) -> None:
        """Attach a stage's program and run its interface's NAPI in a kernel thread of its
        own (threaded NAPI): the VNF's process, which the scheduler shares with whatever
        else runs on its cores, and which :meth:`isolate` can pin."""
        from mantra6g.targets import xdp

        iface = self.iface(build.node)
        with self.lab.in_ns(build.node):
            xdp.deploy(build.program, build.obj_file, iface, None, {0: iface})
        before = _napi_threads()
        self.lab.run(build.node, "sh", "-c", f"echo 1 > /sys/class/net/{iface}/threaded")
        self._napi[build.node] = sorted(set(_napi_threads()) - set(before))
        if not self._napi[build.node]:
            raise MantraError(f"no NAPI thread appeared for {iface} (threaded NAPI)")
        self._schedule(build.stage, build.node)

    # -------------------------------------------------------------- CPU isolation
    def isolate(self, stage: str, on: bool) -> None:
        """Pin ``stage`` to the reserved core (:data:`RESERVED_CPU`) with real-time
        priority, and fence the noisy neighbours off that core (``on``); or release it."""
        (self.isolated.add if on else self.isolated.discard)(stage)
        if self.placement:
            self._schedule(stage, self.placement[stage])
        self._fence_noise()

    def _schedule(self, stage: str, node: str) -> None:
        cpus, policy, prio = ({RESERVED_CPU}, os.SCHED_FIFO, NAPI_RT_PRIORITY) if stage in self.isolated \
            else (ALL_CPUS, os.SCHED_OTHER, 0)
        for pid in self._napi.get(node, []):
            os.sched_setaffinity(pid, cpus)
            os.sched_setscheduler(pid, policy, os.sched_param(prio))

    def start_noise(self) -> None:
        """The scenario's noisy neighbours: CPU-bound processes on the shared node."""
        shared = next((n.name for n in self.config.nodes if n.role == "shared"), self.config.nodes[0].name)
        for _ in range(self.config.noisy_neighbours):
            self.noise.append(self.net.get(shared).popen(["sh", "-c", "while :; do :; done"]))
        self.procs += self.noise
        self._fence_noise()

    def _fence_noise(self) -> None:
        cpus = ALL_CPUS - {RESERVED_CPU} if self.isolated and len(ALL_CPUS) > 1 else ALL_CPUS
        for p in self.noise:
            if p.poll() is None:
                os.sched_setaffinity(p.pid, cpus)

    def deploy_chain(self, placement: dict[str, str]) -> None:
        """Compile the chain for ``placement`` (stage -> node), attach both stages and
        point the sender at the ingress stage."""
        if len(set(placement.values())) != len(STAGES):
            raise MantraError(f"the chain's stages need two different nodes (one XDP program per interface): {placement}")
        self.placement = dict(placement)
        self.builds = compile_chain(self.chain_params(), self._nodes_arg(self.placement), self.workdir / "build0")
        for s in STAGES:
            self._attach(self.builds[s])
        self.lab.run("gen", "ip", "neigh", "replace", VIP, "lladdr", self.node_mac(placement[INGRESS]),
                     "dev", self.iface("gen"))

    def deploy_embb(self) -> None:
        """Compile the eMBB chain for the eMBB node and attach it there: from then on the
        bulk is policed to the slice's rate and delivered to the receiver's sink."""
        node = self.config.embb_node
        if node in self.placement.values():
            raise MantraError(f"node {node} runs a URLLC stage; the eMBB chain needs a node of its own")
        self.embb_build = compile_embb(self.chain_params(), (node, self.node_mac(node)), self.workdir / "embb")
        self._attach(self.embb_build)

    def prebuild(self, stage: str, targets: list[str]) -> None:
        """Compile the chain now for ``stage`` on each of ``targets`` (the rest as placed),
        so a later :meth:`migrate` there skips clang (~1 s): the control loop then acts
        within its interval instead of leaving the chain congested while it compiles."""
        for t in targets:
            placement = dict(self.placement, **{stage: t})
            if t != self.placement[stage] and len(set(placement.values())) == len(placement):
                key = tuple(sorted(placement.items()))
                self._prebuilt[key] = compile_chain(self.chain_params(), self._nodes_arg(placement),
                                                    self.workdir / f"pre-{stage}-{t}")

    # -------------------------------------------------------------- traffic
    def _spawn(self, host: str, *args: str) -> subprocess.Popen:
        p = self.net.get(host).popen([sys.executable, "-m", "mantra6g.testbed.traffic", *args], text=True)
        self.procs.append(p)
        return p

    def start_traffic(self, duration: float, embb: bool = True) -> None:
        """Start the receiver, the URLLC probes and (optionally) the eMBB bulk, seeded."""
        c = self.config
        self._spawn("rx", "rx", "--port", str(URLLC_PORT), "--out", str(self.truth_file), "--duration", str(duration + 1.0))
        time.sleep(0.3)  # the receiver's socket is bound before the first probe
        self._urllc = self._spawn("gen", "urllc", "--dst", VIP, "--port", str(URLLC_PORT),
                                  "--rate", str(c.urllc_rate_pps), "--flows", str(c.urllc_flows),
                                  "--duration", str(duration), "--seed", str(c.seed))
        if embb:
            self._embb_sink = self._spawn("rx", "sink", "--port", str(EMBB_PORT), "--duration", str(duration + 1.0))
            self._embb = self._spawn("gen", "embb", "--dst", EMBB_SINK, "--port", str(EMBB_PORT),
                                     "--rate", str(c.embb_rate_pps), "--on", str(c.embb_on_s), "--off", str(c.embb_off_s),
                                     "--duration", str(duration), "--seed", str(c.seed + 1000))

    def sent_urllc(self) -> int | None:
        """Packets the URLLC sender sent (after it exited)."""
        p = self._urllc
        if p.poll() is None:
            return None
        return int(p.stdout.read().strip() or 0)

    def embb_delivery(self) -> tuple[int, int, int] | None:
        """(bulk packets sent, packets and bytes the sink received), once both exited."""
        if self._embb is None or self._embb.poll() is None or self._embb_sink.poll() is None:
            return None
        packets, octets = map(int, self._embb_sink.stdout.read().split())
        return int(self._embb.stdout.read().strip() or 0), packets, octets

    def link_stats(self) -> dict[str, tuple[int, int]]:
        """(bytes sent so far, bytes queued now) of every rate-limited link (see
        :meth:`SiteConfig.inbound` for the names), from one ``tc -j`` call: cheap enough
        to poll several times per interval."""
        r = _run("tc", "-s", "-j", "qdisc", "show")
        by_dev = {q.get("dev"): q for q in json.loads(r.stdout or "[]") if q.get("kind") == "tbf"}
        out = {}
        for link in [n.name for n in self.config.nodes] + [f"^{r.name}" for r in self.config.racks]:
            q = by_dev.get(self.port(link), {})
            out[link] = (int(q.get("bytes", 0)), int(q.get("backlog", 0)))
        return out

    # -------------------------------------------------------------- monitor
    def read_monitor(self) -> MonitorReading:
        """The sink's registers for the URLLC slice, summed over the nodes it ran on
        (the state a migration copied is not counted twice: see :meth:`migrate`)."""
        node = self.placement[EGRESS]
        with PinnedMaps(self.pins(node)) as m:
            s = m.register(m.name_ending("delay_sum"), self.slice_id)
            n = m.register(m.name_ending("delay_count"), self.slice_id)
            x = m.register(m.name_ending("delay_max"), self.slice_id)
        return MonitorReading(time.time(), s, n, x)

    def interval(self) -> IntervalStats:
        """Monitor and ground truth since the previous call."""
        now = self.read_monitor()
        prev, self._last = self._last, now
        self.readings.append(now)
        records, self._truth_offset = read_records(self.truth_file, self._truth_offset)
        self.truth += records
        mon_mean, mon_n = None, 0
        if prev is not None and now.delay_count > prev.delay_count:
            mon_n = now.delay_count - prev.delay_count
            mon_mean = (now.delay_sum_ns - prev.delay_sum_ns) / mon_n / 1e6
        tru_mean = sum(r.delay_ms for r in records) / len(records) if records else None
        return IntervalStats(now.time, mon_mean, mon_n, tru_mean, len(records))

    def accuracy(self, min_packets: int = 20) -> list[IntervalStats]:
        """Monitor vs ground truth over the same intervals, after the run: the receivers'
        records binned by their kernel receive time between consecutive monitor readings
        (the live :meth:`interval` sees records only when the receiver flushes them)."""
        out = []
        truth = sorted(self.truth, key=lambda r: r.received_ns)
        j = 0
        for prev, now in zip(self.readings, self.readings[1:]):
            lo, hi = int(prev.time * 1e9), int(now.time * 1e9)
            while j < len(truth) and truth[j].received_ns <= lo:
                j += 1
            k = j
            while k < len(truth) and truth[k].received_ns <= hi:
                k += 1
            n = now.delay_count - prev.delay_count
            if n >= min_packets and k - j >= min_packets:
                mon = (now.delay_sum_ns - prev.delay_sum_ns) / n / 1e6
                out.append(IntervalStats(now.time, mon, n, sum(r.delay_ms for r in truth[j:k]) / (k - j), k - j))
        return out

    # -------------------------------------------------------------- migration
    def migrate(self, stage: str, target: str, drain_s: float = 0.05) -> MigrationReport:
        """Move ``stage`` to node ``target`` while traffic flows: start it there, copy its
        registers and counters while the old one keeps forwarding, switch traffic to the
        new node (egress: one route entry in the ingress stage's pinned map; ingress: the
        sender's next-hop MAC), let the old one drain, fold in what it counted
        meanwhile, remove it."""
        from mantra6g.targets import xdp

        source = self.placement[stage]
        if target == source:
            raise MantraError(f"the {stage} stage already runs on {target}")
        started = time.time()
        new_placement = dict(self.placement, **{stage: target})
        builds = self._prebuilt.pop(tuple(sorted(new_placement.items())), None) or compile_chain(
            self.chain_params(), self._nodes_arg(new_placement), self.workdir / f"build{len(self.migrations) + 1}")
        new = builds[stage]
        self._attach(new)
        with PinnedMaps(self.pins(source)) as old_maps, PinnedMaps(self.pins(target)) as new_maps:
            snapshot = _copy_state(new.program, old_maps, new_maps)
            if stage == EGRESS:
                ing = builds[INGRESS]
                table = next(t for t in ing.program.tables if t.name.endswith("to_egress_fib"))
                with PinnedMaps(self.pins(self.placement[INGRESS])) as ing_maps:
                    for k, v in xdp.table_entries(ing.program, table):
                        ing_maps.update(f"tbl_{table.name}", k, v)
            else:
                self.lab.run("gen", "ip", "neigh", "replace", VIP, "lladdr", self.node_mac(target), "dev", self.iface("gen"))
            switched = time.time()
            time.sleep(drain_s)  # packets already queued towards the old node still arrive there
            _merge_tail(new.program, old_maps, new_maps, snapshot)
        self.placement = new_placement
        self.builds = builds
        with self.lab.in_ns(source):
            xdp.undeploy(self.iface(source), None)
        self._napi.pop(source, None)  # its NAPI thread ends with the program
        report = MigrationReport(stage, source, target, started, switched, time.time(), len(snapshot))
        self.migrations.append(report)
        return report

    def migration_loss(self, report: MigrationReport, margin_s: float = 0.1) -> MigrationLoss:
        """The URLLC probes of a migration's window (start .. finish + ``margin_s``): sent,
        lost, lost after the switch, longest delivery gap. Call after traffic ended."""
        lo, hi = int(report.started * 1e9), int((report.finished + margin_s) * 1e9)
        got = sorted((r.seq, r.sent_ns, r.received_ns) for r in self.truth)
        if not got:
            return MigrationLoss(0, 0, 0, 0.0)
        # seqs are dense: the sent ones in the window run from the first received before it
        # to the first received after it
        before = [g[0] for g in got if g[1] < lo]
        after = [g[0] for g in got if g[1] > hi]
        first = before[-1] + 1 if before else 0
        last = after[0] - 1 if after else got[-1][0]
        sent = max(0, last - first + 1)
        inside = [g for g in got if lo <= g[1] <= hi]
        recv = sorted(g[2] for g in got if first <= g[0] <= last or lo <= g[1] <= hi)
        gaps = [(b - a) / 1e6 for a, b in zip(recv, recv[1:])]
        # A lost probe's send time is between its received neighbours' (Poisson pacing):
        # after the switch means it took the new path, so the move itself lost it.
        received = {g[0]: g[1] for g in got}
        seqs = sorted(received)
        switched = int(report.switched * 1e9)
        after_switch = 0
        for seq in range(first, last + 1):
            if seq in received:
                continue
            i = bisect.bisect_left(seqs, seq)
            if i < len(seqs) and received[seqs[i]] >= switched and (i == 0 or received[seqs[i - 1]] >= switched):
                after_switch += 1
        return MigrationLoss(sent, sent - len(inside), after_switch, max(gaps, default=0.0))


@dataclass(frozen=True)
class MigrationLoss:
    """URLLC probes in a migration's window. ``lost_after_switch`` counts the lost probes
    sent after traffic was switched to the new instance (both received neighbours were sent
    after the switch): loss the move caused, as opposed to drops on the old, congested path
    while the migration was under way."""

    sent: int
    lost: int
    lost_after_switch: int
    gap_ms: float


# Registers whose value only grows are merged by adding what the old instance counted
# after the snapshot; a maximum by taking the larger; anything else (LB flow affinity)
# keeps the old value where the new instance has not written one. One place for this.
def _merge_rule(map_name: str) -> str:
    if map_name.startswith("ctr_") or map_name.endswith(("_sum", "_count", "_seq")):
        return "add"
    if map_name.endswith("_max"):
        return "max"
    return "fill"


def _copy_state(program, old: PinnedMaps, new: PinnedMaps) -> dict[tuple[str, int], bytes | int]:
    """Copy every non-zero register and counter entry; returns the snapshot copied."""
    snap: dict[tuple[str, int], bytes | int] = {}
    for kind, name, size in state_maps(program):
        for i in range(size):
            if kind == "reg":
                v = old.register(name, i)
                if v:
                    new.set_register(name, i, v)
                    snap[(name, i)] = v
            else:
                raw = old.counter_raw(name, i)
                if any(raw):
                    new.set_counter_raw(name, i, raw)
                    snap[(name, i)] = raw
    return snap


def _merge_tail(program, old: PinnedMaps, new: PinnedMaps, snap: dict) -> None:
    """Fold in what the old instance recorded between the snapshot and the switch."""
    for kind, name, size in state_maps(program):
        rule = _merge_rule(name)
        for i in range(size):
            if kind == "reg":
                o, before, cur = old.register(name, i), snap.get((name, i), 0), new.register(name, i)
                if o == before:
                    continue
                value = cur + (o - before) if rule == "add" else max(cur, o) if rule == "max" else (cur or o)
                new.set_register(name, i, value)
            else:
                raw = old.counter_raw(name, i)
                before = snap.get((name, i), bytes(len(raw)))
                if raw == before:
                    continue
                cur = new.counter_raw(name, i)
                words = [
                    int.from_bytes(cur[j : j + 8], "little") + int.from_bytes(raw[j : j + 8], "little") - int.from_bytes(before[j : j + 8], "little")
                    for j in range(0, len(raw), 8)
                ]
                new.set_counter_raw(name, i, b"".join(w.to_bytes(8, "little") for w in words))


def _napi_threads() -> list[int]:
    """PIDs of the kernel's NAPI threads (``napi/<device>-<id>``)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().startswith("napi/"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def _run(*cmd: str) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise MantraError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def remove_pins(prefix: str) -> None:
    """Remove the pinned maps of a site's programs (namespaces going away detach the
    programs, but pins live on in the BPF filesystem)."""
    if not PIN_ROOT.is_dir():
        return
    for d in PIN_ROOT.iterdir():
        if d.name.startswith(prefix + "-") and d.is_dir():
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
