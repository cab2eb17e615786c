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

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mantra6g.errors import MantraError
from mantra6g.synth.nf.latency_monitor import delay_sum
from mantra6g.testbed.chain import (
    EGRESS, INGRESS, STAGES, ChainParams, StageBuild, chain_programs, compile_chain, compile_embb, state_bytes,
)
from mantra6g.testbed.fabric import Bmv2Switch, build_fabric, kill_stale_switches, require_tools
from mantra6g.testbed.migration import MigrationReport, Migrator
from mantra6g.testbed.netns import EthtoolStats, Lab, pass_program
from mantra6g.testbed.traffic import GroundTruth, read_records

SUBNET = "10.0.0.0/24"
GEN_IP, RX_IP, VIP, EMBB_SINK = "10.0.0.1", "10.0.0.2", "10.0.0.100", "10.0.0.200"
URLLC_PORT, EMBB_PORT = 5000, 6000
ONSETS = ("abrupt", "ramp", "flash")
START_DELAY_S = 1.0  # traffic processes are started this long before they all begin sending
GRACE_S = 1.0  # receivers listen this long after the senders stop
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
    # Nodes running an eMBB chain (policer, router on to rx), each with its own sink
    # address and its own traffic; every one must have role embb.
    embb_nodes: tuple[str, ...] = ("B",)
    embb_limit_mbit: float = 35.0  # the eMBB slice's rate (its chains' policers)
    urllc_sla_ms: float = 1.0  # the URLLC slice's latency SLA (its graph, the policies, the report)
    urllc_rate_pps: float = 300.0
    urllc_flows: int = 8
    gap_probe_pps: float = 2000.0  # constant-rate probes the switch's delivery gap is measured on (0: none)
    # How eMBB traffic sets in (see testbed/traffic.py): abrupt on/off bulk, ramp (UDP
    # sessions with ramps, Poisson arrivals on a diurnal curve) or flash (TCP flash crowds).
    onset: str = "abrupt"
    embb_rate_pps: float = 5000.0  # abrupt: 48 Mbit/s of 1200-byte packets while on: > r1's 40 Mbit/s uplink
    embb_on_s: float = 1.0
    embb_off_s: float = 1.5
    session_mbit: float = 2.0  # ramp: one session's rate
    session_rate_per_s: float = 0.6  # ramp: mean session arrivals per second per eMBB node
    session_hold_s: float = 8.0  # ramp: mean stay (exponential)
    session_ramp_s: float = 2.0  # ramp: a session's rate ramps up (and down) over this
    day_s: float = 40.0  # ramp, flash: the diurnal period (eMBB node i of n peaks i/n of a day later)
    diurnal_amplitude: float = 0.8  # ramp: relative swing of the arrival rate
    crowd_rate_per_s: float = 0.05  # flash: crowds per second per eMBB node (Poisson)
    crowd_clients: int = 12  # flash: TCP clients per crowd
    crowd_ramp_s: float = 3.0  # flash: the clients join over this
    crowd_hold_s: float = 8.0  # flash: mean stay of a client
    client_mbit: float = 2.0  # flash: each client's (app-limited) rate
    tbf_latency_ms: float = 10.0  # tbf queue bound: the worst queueing delay on a link
    noisy_neighbours: int = 0  # CPU-bound processes on the shared node (best-effort batch work)
    switch: str = "linuxbridge"  # every switch: linuxbridge | bmv2 | bmv2_grpc (testbed/fabric.py)
    backends: tuple[str, ...] = ("10.0.0.201", "10.0.0.202", "10.0.0.203")
    interval_s: float = 0.2  # the control interval
    standby: bool = True  # warm standbys on the spare nodes (False: the slow migration path)
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

    def links(self) -> list[str]:
        """Every rate-limited link: the nodes' links, then the racks' uplinks."""
        return [n.name for n in self.nodes] + [f"^{r.name}" for r in self.racks]

    def embb_sink(self, node: str) -> str:
        """The receiver's address for the eMBB traffic through ``node``'s chain."""
        return f"10.0.0.{200 - self.embb_nodes.index(node)}"

    def embb_port(self, node: str) -> int:
        """The UDP/TCP port of ``node``'s eMBB traffic (one sink each on the receiver)."""
        return EMBB_PORT + self.embb_nodes.index(node)

    def embb_phase(self, node: str) -> float:
        """Where in the day ``node``'s eMBB demand is (the nodes peak in turn)."""
        return 2 * math.pi * self.embb_nodes.index(node) / len(self.embb_nodes)

    def embb_peak_mbit(self) -> float:
        """What one eMBB node's traffic peaks at, from the scenario (not a measurement):
        the bulk's on-rate; the sessions at the diurnal peak (mean sessions x rate); a
        flash crowd with all its clients."""
        if self.onset == "abrupt":
            return self.embb_rate_pps * 1200 * 8 / 1e6
        if self.onset == "ramp":
            return self.session_rate_per_s * (1 + self.diurnal_amplitude) * (self.session_hold_s + self.session_ramp_s) \
                * self.session_mbit
        return self.crowd_clients * self.client_mbit


@dataclass(frozen=True)
class MonitorReading:
    """The sink's per-slice registers at one instant, read consistently (no packet was
    counted between the first and last register read); ``time`` is the middle of the
    read and ``spread_s`` half its length, the reading's timing uncertainty."""

    time: float
    delay_sum_ns: int
    delay_count: int
    delay_max_ns: int
    spread_s: float = 0.0


@dataclass(frozen=True)
class IntervalStats:
    """One interval of URLLC latency: the in-network monitor and the receivers' truth."""

    time: float
    monitor_mean_ms: float | None
    monitor_packets: int
    truth_mean_ms: float | None
    truth_packets: int


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
        self.embb_builds: dict[str, StageBuild] = {}  # eMBB node -> its chain
        self.traffic: dict[str, subprocess.Popen] = {}  # role -> process (start_traffic)
        self.traffic_start: float | None = None  # CLOCK_REALTIME the senders begin at
        self.traffic_output: dict[str, str] = {}  # role -> what it printed (finish_traffic)
        self.slice_id = 1
        self.truth_file = workdir / "truth.bin"
        self._truth_offset = 0
        self.truth: list[GroundTruth] = []
        self._last: MonitorReading | None = None
        self.readings: list[MonitorReading] = []
        self.migrator = Migrator(self)
        self.isolated: set[str] = set()  # stages on the reserved core (see isolate())
        self.noise: list[subprocess.Popen] = []
        self._prebuilt: dict[tuple[tuple[str, str], ...], dict[str, StageBuild]] = {}
        self._napi: dict[str, list[int]] = {}  # node -> its interface's NAPI kernel threads
        self._ethtool: dict[str, EthtoolStats] = {}

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

    @property
    def migrations(self) -> list[MigrationReport]:
        return self.migrator.reports

    def __exit__(self, *exc) -> None:
        self.migrator.close()
        for e in self._ethtool.values():
            e.close()
        self._ethtool.clear()
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
        for b in (*c.backends, *(c.embb_sink(n) for n in c.embb_nodes)):
            self.lab.run("rx", "ip", "addr", "add", f"{b}/24", "dev", self.iface("rx"))
        self.lab.run("rx", "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0")
        for n in c.embb_nodes:
            self.lab.run("gen", "ip", "neigh", "replace", c.embb_sink(n), "lladdr", self.node_mac(n),
                         "dev", self.iface("gen"))
        # TCP (flash crowds) answers from rx straight to gen; no ARP on this site.
        self.lab.run("rx", "ip", "neigh", "replace", GEN_IP, "lladdr", mac(1), "dev", self.iface("rx"))
        if c.onset == "flash" and c.switch == "linuxbridge":
            # XDP on veth drops the checksum-offload state of a TCP segment (its checksum
            # would stay unfinished) and cannot take a GSO super-packet: segment and sum
            # in software on the sender.
            self.lab.run("gen", "ethtool", "-K", self.iface("gen"), "tx", "off", "tso", "off", "gso", "off")

    def chain_params(self, embb_node: str | None = None) -> ChainParams:
        """What the graphs are written for; with ``embb_node``, that node's eMBB sink."""
        c = self.config
        node = embb_node or c.embb_nodes[0]
        return ChainParams(SUBNET, VIP, c.backends, URLLC_PORT, mac(2), c.urllc_sla_ms, c.embb_sink(node),
                           c.embb_port(node), c.embb_limit_mbit)

    def nodes_arg(self, placement: dict[str, str]) -> dict[str, tuple[str, str]]:
        return {s: (placement[s], self.node_mac(placement[s])) for s in STAGES}

    def state_bytes(self) -> dict[str, int]:
        """The NF state of each stage (the same wherever it runs)."""
        nodes = [n.name for n in self.config.nodes]
        programs = chain_programs(self.chain_params(), self.nodes_arg(dict(zip(STAGES, nodes))))
        return {stage: state_bytes(program) for stage, program in programs.items()}

    def attach(self, build: StageBuild) -> None:
        """Attach a stage's program and run its interface's NAPI in a kernel thread of its
        own (threaded NAPI): the VNF's process, which the scheduler shares with whatever
        else runs on its cores, and which :meth:`isolate` can pin."""
        from mantra6g.targets import xdp

        iface = self.iface(build.node)
        # Threads before the attach: a device whose threaded flag is still set from an
        # earlier program gets its NAPI thread with the program itself.
        before = _napi_threads()
        with self.lab.in_ns(build.node):
            xdp.deploy(build.program, build.obj_file, iface, None, {0: iface})
        self.lab.run(build.node, "sh", "-c", f"echo 1 > /sys/class/net/{iface}/threaded")
        self._napi[build.node] = sorted(set(_napi_threads()) - set(before))
        if not self._napi[build.node]:
            raise MantraError(f"no NAPI thread appeared for {iface} (threaded NAPI)")
        self._schedule(build.stage, build.node)

    def napi_gone(self, node: str) -> None:
        """The program on ``node`` was detached: its NAPI thread ended with it."""
        self._napi.pop(node, None)

    def napi_cpu_s(self, node: str) -> float:
        """CPU time the NAPI threads of ``node``'s interface have used (the kernel's
        schedstat): where its XDP stage runs."""
        total = 0
        for pid in self._napi.get(node, []):
            try:
                total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return total / 1e9

    def xdp_counters(self, node: str) -> dict[str, int]:
        """The veth driver's XDP counters on ``node``'s interface (ethtool statistics,
        summed over queues): ``xdp_packets`` (what reached the program), ``xdp_drops``
        (what it dropped: a policer's, a firewall's), ``xdp_tx`` (what it forwarded)."""
        if node not in self._ethtool:
            with self.lab.in_ns(node):
                self._ethtool[node] = EthtoolStats(self.iface(node))
        stats = self._ethtool[node].read()
        out = {"xdp_packets": 0, "xdp_drops": 0, "xdp_tx": 0}
        for name, value in stats.items():
            for key in out:
                if name.endswith("_" + key):
                    out[key] += value
        return out

    # -------------------------------------------------------------- CPU isolation
    def isolate(self, stage: str, on: bool) -> None:
        """Pin ``stage`` to the reserved core (:data:`RESERVED_CPU`) with real-time
        priority, and fence the noisy neighbours off that core (``on``); or release it."""
        (self.isolated.add if on else self.isolated.discard)(stage)
        if self.placement:
            self._schedule(stage, self.placement[stage])
        for node, build in self.migrator.standbys.items():  # its standbys wait like it runs
            if build.stage == stage:
                self._schedule(stage, node)
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
        self.builds = compile_chain(self.chain_params(), self.nodes_arg(self.placement), self.workdir / "build0")
        for s in STAGES:
            self.attach(self.builds[s])
        self.point_sender(placement[INGRESS])

    def point_sender(self, node: str) -> None:
        """Send the URLLC traffic to the ingress stage on ``node`` (the sender's neighbour
        entry for the VIP): the switch of an ingress migration."""
        self.lab.run("gen", "ip", "neigh", "replace", VIP, "lladdr", self.node_mac(node), "dev", self.iface("gen"))

    def deploy_embb(self) -> None:
        """Compile the eMBB chain for each eMBB node and attach it there: from then on its
        traffic is policed to the slice's rate and delivered to the receiver's sink."""
        for node in self.config.embb_nodes:
            if node in self.placement.values():
                raise MantraError(f"node {node} runs a URLLC stage; the eMBB chain needs a node of its own")
            build = compile_embb(self.chain_params(node), (node, self.node_mac(node)), self.workdir / f"embb-{node}")
            self.attach(build)
            self.embb_builds[node] = build

    def standby(self, stage: str, nodes: list[str]) -> None:
        """Warm standbys of ``stage`` on each of ``nodes`` (see :mod:`mantra6g.testbed.migration`):
        attached, scheduled like the stage, state copied every interval; a migration there
        is one forwarding change."""
        self.migrator.prepare(stage, nodes)

    def prebuild(self, stage: str, targets: list[str]) -> None:
        """Compile the chain now for ``stage`` on each of ``targets`` (the rest as placed),
        so a later slow-path :meth:`migrate` there skips clang (~1 s)."""
        for t in targets:
            placement = dict(self.placement, **{stage: t})
            if t != self.placement[stage] and len(set(placement.values())) == len(placement):
                key = tuple(sorted(placement.items()))
                self._prebuilt[key] = compile_chain(self.chain_params(), self.nodes_arg(placement),
                                                    self.workdir / f"pre-{stage}-{t}")

    def take_prebuilt(self, placement: dict[str, str]) -> dict[str, StageBuild] | None:
        return self._prebuilt.pop(tuple(sorted(placement.items())), None)

    # -------------------------------------------------------------- traffic
    def _spawn(self, host: str, *args: str) -> subprocess.Popen:
        p = self.net.get(host).popen([sys.executable, "-m", "mantra6g.testbed.traffic", *args], text=True)
        self.procs.append(p)
        return p

    def start_traffic(self, duration: float, embb: bool = True) -> float:
        """Start the receivers, the URLLC probes, the gap probes and (optionally) the eMBB
        traffic of every eMBB node, all seeded and all beginning at one instant
        :data:`START_DELAY_S` from now (returned, CLOCK_REALTIME): how long each process
        took to start does not change what it sends."""
        c = self.config
        start = time.time() + START_DELAY_S
        self.traffic_start = start
        common = ["--start", f"{start:.6f}"]
        listen = ["--duration", str(duration + GRACE_S)] + common
        send = ["--duration", str(duration)] + common
        self.traffic["rx"] = self._spawn("rx", "rx", "--port", str(URLLC_PORT), "--out", str(self.truth_file), *listen)
        self.traffic["urllc"] = self._spawn("gen", "urllc", "--dst", VIP, "--port", str(URLLC_PORT),
                                            "--rate", str(c.urllc_rate_pps), "--flows", str(c.urllc_flows),
                                            "--seed", str(c.seed), *send)
        if c.gap_probe_pps > 0:
            self.traffic["gap"] = self._spawn("gen", "gap", "--dst", VIP, "--port", str(URLLC_PORT),
                                              "--rate", str(c.gap_probe_pps), *send)
        if not embb:
            return start
        for i, node in enumerate(c.embb_nodes):
            sink, seed, port = c.embb_sink(node), str(c.seed + 1000 + i), str(c.embb_port(node))
            kind = "tcpsink" if c.onset == "flash" else "sink"
            self.traffic[f"sink-{node}"] = self._spawn("rx", kind, "--port", port, *listen)
            if c.onset == "abrupt":
                args = ["embb", "--rate", str(c.embb_rate_pps), "--on", str(c.embb_on_s), "--off", str(c.embb_off_s)]
            elif c.onset == "ramp":
                args = ["sessions", "--mbit", str(c.session_mbit), "--arrivals", str(c.session_rate_per_s),
                        "--amplitude", str(c.diurnal_amplitude), "--day", str(c.day_s),
                        "--phase", str(c.embb_phase(node)), "--hold", str(c.session_hold_s), "--ramp", str(c.session_ramp_s)]
            else:
                args = ["crowd", "--mbit", str(c.client_mbit), "--rate", str(c.crowd_rate_per_s),
                        "--clients", str(c.crowd_clients), "--ramp", str(c.crowd_ramp_s), "--hold", str(c.crowd_hold_s)]
            self.traffic[f"embb-{node}"] = self._spawn("gen", *args, "--dst", sink, "--port", port, "--seed", seed, *send)
        return start

    def finish_traffic(self, timeout_s: float = 30.0) -> None:
        """Wait until every traffic process has exited (the receivers stop
        :data:`GRACE_S` after the senders) and keep what each printed; then read the
        receiver's last records. Waiting for the processes, not a fixed time: a loaded
        machine starts and stops them late."""
        deadline = time.monotonic() + timeout_s
        for role, p in self.traffic.items():
            try:
                out, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise MantraError(f"the {role} traffic process did not finish within {timeout_s:g} s") from None
            if p.returncode != 0:
                tail = "\n".join((err or "").strip().splitlines()[-5:])
                raise MantraError(f"the {role} traffic process failed (exit {p.returncode}):\n{tail}")
            self.traffic_output[role] = out.strip()
        records, self._truth_offset = read_records(self.truth_file, self._truth_offset)
        self.truth += records

    def sent_urllc(self) -> int | None:
        """Packets the URLLC sender sent (after :meth:`finish_traffic`)."""
        out = self.traffic_output.get("urllc")
        return int(out or 0) if out is not None else None

    def embb_delivery(self) -> tuple[float, float] | None:
        """(payload Mbit the eMBB senders sent, Mbit their sinks received through the
        chains), summed over eMBB nodes, after :meth:`finish_traffic`."""
        from mantra6g.testbed.traffic import BULK_BYTES, SESSION_BYTES

        c = self.config
        if not any(r.startswith("embb-") for r in self.traffic_output):
            return None
        sent = got = 0.0
        for node in c.embb_nodes:
            out, back = self.traffic_output.get(f"embb-{node}", "0"), self.traffic_output.get(f"sink-{node}", "0 0")
            n = int(out or 0)
            size = {"abrupt": BULK_BYTES, "ramp": SESSION_BYTES}.get(c.onset)
            sent += (n * size if size else n) * 8 / 1e6  # flash: the crowd reports bytes
            got += int(back.split()[1]) * 8 / 1e6
        return sent, got

    def link_stats(self) -> dict[str, tuple[int, int, int, int]]:
        """(bytes sent so far, bytes queued now, packets dropped so far, packets sent so
        far) of every rate-limited link (see :meth:`SiteConfig.inbound` for the names),
        from the kernel's tbf statistics in one ``tc -s -j`` call: cheap enough to poll
        several times per interval."""
        r = _run("tc", "-s", "-j", "qdisc", "show")
        by_dev = {q.get("dev"): q for q in json.loads(r.stdout or "[]") if q.get("kind") == "tbf"}
        out = {}
        for link in self.config.links():
            q = by_dev.get(self.port(link), {})
            out[link] = (int(q.get("bytes", 0)), int(q.get("backlog", 0)), int(q.get("drops", 0)),
                         int(q.get("packets", 0)))
        return out

    # -------------------------------------------------------------- monitor
    def read_monitor(self, attempts: int = 50) -> MonitorReading:
        """The sink's registers for the URLLC slice, read consistently: the count before
        and after the sum and maximum must agree, else the read is repeated (a packet
        counted between two ``bpf()`` reads would pair one interval's sum with another's
        count; on a loaded machine a reader preempted between the reads saw that). The
        registers are the chain's state across migrations (:meth:`Migrator.register`)."""
        reg = self.migrator.register
        with self.migrator.lock:
            for _ in range(attempts):
                t0 = time.time()
                n0 = reg(EGRESS, "delay_count", self.slice_id)
                s = delay_sum(lambda word: reg(EGRESS, word, self.slice_id))
                x = reg(EGRESS, "delay_max", self.slice_id)
                n1 = reg(EGRESS, "delay_count", self.slice_id)
                t1 = time.time()
                if n0 == n1:
                    break
            else:
                raise MantraError(f"no consistent monitor reading in {attempts} attempts")
        return MonitorReading((t0 + t1) / 2, s, n1, x, (t1 - t0) / 2)

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
        truth = sorted(self.truth, key=lambda r: r.received_ns)  # every probe the sink counted
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
    def migrate(self, stage: str, target: str) -> MigrationReport:
        """Move ``stage`` to node ``target`` while traffic flows: make-before-break onto a
        warm standby there (one forwarding change), else the slow path (build, attach,
        copy, switch, drain, merge, detach); see :mod:`mantra6g.testbed.migration`."""
        return self.migrator.migrate(stage, target)


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
