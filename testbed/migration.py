"""Live migration of a chain stage: make-before-break with warm standbys, and what a
migration cost the traffic.

A **warm standby** is the stage's XDP program compiled for a candidate node, attached
there (its threaded-NAPI thread scheduled like the stage's: isolated stages get the
reserved core at ``SCHED_FIFO``) and kept in sync with the running instance: every
control interval the running instance's NF state (registers, counters, meters, the load
balancer's flow affinity, the monitor's registers) is read in one batch per map and only
the elements that changed since the last copy are written to the standby.

A **migration to a standby** is then, on the control loop's path, **one forwarding
change** - the egress stage: the route entry of the ingress stage's table towards it (one
map update); the ingress stage: the sender's neighbour entry for the VIP. The standby
holds the state of its last copy; the old instance keeps forwarding what is already
queued towards it, and after :data:`DRAIN_S` everything it recorded since that copy is
folded in (:func:`~mantra6g.testbed.chain.merge_rule`) off the control loop's path; it
then becomes the standby for a move back. No packet is lost at the switch: both
instances forward throughout.

How the old instance's share is folded in: user space cannot add atomically into a map
the data plane is updating (a read-modify-write loses whatever the program counts in
between - measured: ~100 of 2300 probes/s during a 40 ms batch read). So what previous
instances counted after their successor's last copy is **carried** by the migrator: an
addition per element of the counters, sums and counts, a floor for the maxima; the site's
readout (:meth:`Migrator.register`, :meth:`Migrator.counter`) adds it to the running
instance's maps, and no count is ever lost or doubled. Only the load balancer's flow
affinity is written into the running instance (an entry it has not made yet: it would
make the same one, Maglev is deterministic); meters keep the new instance's buckets.

A migration to a node **without** a standby takes the slow path the testbed had before:
compile (or use a pre-build), attach, copy, switch, drain, merge, detach - all on the
control loop's path (the "slow migration path" of the ablations).

What a migration cost is measured from the receivers' records (:func:`switch_cost`): on
the high-rate gap probes (a constant-rate stream through the same chain) the delivery
gap at the switch the network caused, and the probes lost after it.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from mantra6g.errors import MantraError
from mantra6g.testbed.chain import (
    EGRESS, INGRESS, PinnedMaps, StageBuild, StateImage, added, compile_chain, compile_stage, egress_route, merge_rule,
    snapshot, write_changes,
)

DRAIN_S = 0.1  # longer than the worst queue ahead of the old instance (tbf bound 10 ms + burst)
SYNC_EVERY_S = 1.0  # standbys' incremental copy period (any period is correct: see _retire)


@dataclass(frozen=True)
class MigrationReport:
    """One migration of a stage, as carried out. Times are CLOCK_REALTIME seconds:
    ``started`` when the site began it, ``switched`` when traffic was moved (the action
    applied), ``finished`` when the old instance's tail was merged (``None`` while pending)."""

    stage: str
    source: str
    target: str
    started: float
    switched: float
    finished: float | None
    state_entries_copied: int
    standby: bool  # made before break onto a warm standby (False: the slow path)

    @property
    def duration_ms(self) -> float:
        end = self.finished if self.finished is not None else self.switched
        return (end - self.started) * 1e3

    @property
    def switch_ms(self) -> float:
        """Begin to traffic moved: what the control loop waits for."""
        return (self.switched - self.started) * 1e3


@dataclass
class _Retirement:
    """An old instance still forwarding its queue after a switch."""

    index: int  # in Migrator.reports
    node: str
    build: StageBuild
    base: StateImage  # the state it held when the new instance got its last copy
    timer: threading.Timer | None = None


class Migrator:
    """The standbys of a site's chain stages, the migrations between them, and the state
    carried across them. ``site`` is the :class:`~mantra6g.testbed.site.Site` (placement,
    builds, attach and detach)."""

    def __init__(self, site):
        self.site = site
        self.lock = threading.RLock()  # map state: sync, switch, fold and readouts
        self.standbys: dict[str, StageBuild] = {}  # node -> the stage instance waiting there
        self._written: dict[str, StateImage] = {}  # node -> what its maps were last given
        self._routes: dict[str, tuple[str, list[tuple[bytes, bytes]]]] = {}  # egress node -> route
        self._maps: dict[str, PinnedMaps] = {}
        self.retiring: list[_Retirement] = []
        self.reports: list[MigrationReport] = []
        self.carried: dict[str, np.ndarray] = {}  # map name -> (entries, words): added (max: a floor)
        self._synced = 0.0

    # -------------------------------------------------------------- maps
    def maps(self, node: str) -> PinnedMaps:
        """The pinned maps of the program on ``node`` (opened once, kept)."""
        if node not in self._maps:
            self._maps[node] = PinnedMaps(self.site.pins(node))
        return self._maps[node]

    def forget(self, node: str) -> None:
        m = self._maps.pop(node, None)
        if m is not None:
            m.close()

    def close(self) -> None:
        for r in list(self.retiring):
            if r.timer is not None:
                r.timer.cancel()
        self.retiring.clear()
        for node in list(self._maps):
            self.forget(node)

    # -------------------------------------------------------------- the stage's state
    def _words(self, name: str, node: str, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype="<u8").reshape(-1, self.maps(node).shape(name).stride // 8)

    def register(self, stage: str, suffix: str, index: int) -> int:
        """A register of ``stage`` as the chain's state holds it: the running instance's
        value plus what earlier instances carried over, plus what an old instance still
        draining counted since its successor's last copy (maxima: the largest). Call
        under :attr:`lock` for several consistent reads."""
        node = self.site.placement[stage]
        m = self.maps(node)
        name = m.name_ending(suffix)
        value = m.register(name, index)
        rule = merge_rule(name)
        extra = self.carried.get(name)
        for r in self.retiring:
            if r.build.stage == stage:
                old = self.maps(r.node).register(name, index)
                was = int(self._words(name, node, r.base[name])[index, 0])
                value = max(value, old) if rule == "max" else value + old - was if rule == "add" else value
        if extra is not None:
            value = max(value, int(extra[index, 0])) if rule == "max" else value + int(extra[index, 0])
        return value

    def counter(self, stage: str, suffix: str, index: int) -> tuple[int, int]:
        """A counter of ``stage`` (packets, bytes over CPUs), carried as :meth:`register`."""
        node = self.site.placement[stage]
        m = self.maps(node)
        name = m.name_ending(suffix)
        words = np.frombuffer(m.counter_raw(name, index), dtype="<u8").astype(np.int64)
        for r in self.retiring:
            if r.build.stage == stage:
                old = np.frombuffer(self.maps(r.node).counter_raw(name, index), dtype="<u8").astype(np.int64)
                words = words + added(old, self._words(name, node, r.base[name])[index])
        if name in self.carried:
            words = words + self.carried[name][index].astype(np.int64)
        return int(words[0::2].sum()), int(words[1::2].sum())

    def _fold(self, build: StageBuild, node: str, base: StateImage) -> int:
        """Carry what the instance on ``node`` recorded since ``base`` (its successor's
        starting state); fill the successor's missing flow-affinity entries. Returns the
        elements carried or written. Call under the lock."""
        active = self.site.placement[build.stage]
        now = snapshot(build.program, self.maps(node))
        n = 0
        for name, data in now.items():
            rule = merge_rule(name)
            old, was = self._words(name, node, data), self._words(name, node, base[name])
            if rule == "add":
                delta = added(old, was)
                n += int(np.count_nonzero(delta.any(axis=1)))
                self.carried[name] = self.carried.get(name, np.zeros_like(delta)) + delta
            elif rule == "max":
                self.carried[name] = np.maximum(self.carried.get(name, np.zeros_like(old)), old)
            elif rule == "fill":
                target = self.maps(active)
                cur = self._words(name, active, target.dump(name))
                missing = np.flatnonzero((cur == 0).all(axis=1) & old.any(axis=1))
                if len(missing):
                    target.put(name, missing, old[missing].astype("<u8").tobytes())
                    n += len(missing)
        self._written[node] = now
        return n

    # -------------------------------------------------------------- standbys
    def prepare(self, stage: str, nodes: list[str]) -> None:
        """Compile ``stage`` for each of ``nodes``, attach it there and copy the running
        instance's state into it: warm standbys (a node holds one program)."""
        site = self.site
        for node in nodes:
            if node in site.placement.values() or node in self.standbys:
                continue
            placement = dict(site.placement, **{stage: node})
            build = compile_stage(site.chain_params(), stage, site.nodes_arg(placement),
                                  site.workdir / f"standby-{stage}-{node}")
            site.attach(build)
            self.standbys[node] = build
            if stage == EGRESS:
                self._routes[node] = egress_route(site.chain_params(), site.nodes_arg(placement))
        if stage == EGRESS:  # the route back to the current node, for the standbys' and a move back
            self._routes.setdefault(site.placement[EGRESS], egress_route(site.chain_params(), site.nodes_arg(site.placement)))
        self.sync()

    def drop(self, node: str) -> None:
        """Detach the standby on ``node`` (a later migration there takes the slow path)."""
        from mantra6g.targets import xdp

        site = self.site
        with self.lock:
            self.standbys.pop(node)
            self._written.pop(node, None)
            self.forget(node)
            with site.lab.in_ns(node):
                xdp.undeploy(site.iface(node), None)
            site.napi_gone(node)

    def sync(self, force: bool = True) -> int:
        """Copy what changed in the running instances into their standbys; elements
        written. ``force=False``: only if :data:`SYNC_EVERY_S` has passed."""
        site = self.site
        written = 0
        if not force and time.monotonic() - self._synced < SYNC_EVERY_S:
            return 0
        self._synced = time.monotonic()
        with self.lock:
            for node, build in self.standbys.items():
                active = site.placement[build.stage]
                image = snapshot(build.program, self.maps(active))
                written += write_changes(self.maps(node), image, self._written.get(node))
                self._written[node] = image
        return written

    # -------------------------------------------------------------- migration
    def migrate(self, stage: str, target: str) -> MigrationReport:
        site = self.site
        source = site.placement[stage]
        if target == source:
            raise MantraError(f"the {stage} stage already runs on {target}")
        self.wait()  # one migration at a time: the previous one's tail is folded first
        if target in self.standbys and self.standbys[target].stage == stage:
            return self._switch(stage, source, target)
        return self._slow(stage, source, target)

    def _forward(self, stage: str, target: str, ingress_nodes: list[str]) -> None:
        """The one forwarding change that moves ``stage``'s traffic to ``target``."""
        site = self.site
        if stage == EGRESS:
            name, entries = self._routes[target]
            for node in ingress_nodes:
                for key, value in entries:
                    self.maps(node).update(name, key, value)
        else:
            site.point_sender(target)

    def _switch(self, stage: str, source: str, target: str) -> MigrationReport:
        """Make before break onto the standby on ``target``."""
        site = self.site
        with self.lock:
            started = time.time()
            build = self.standbys.pop(target)
            old = site.builds[stage]
            base = self._written.pop(target)  # what the standby holds: its last copy
            self._forward(stage, target, [site.placement[INGRESS]])
            switched = time.time()
            site.placement[stage] = target
            site.builds[stage] = build
            report = MigrationReport(stage, source, target, started, switched, None, 0, True)
            self.reports.append(report)
            retirement = _Retirement(len(self.reports) - 1, source, old, base)
            self.retiring.append(retirement)
            retirement.timer = threading.Timer(DRAIN_S, self._retire, (retirement,))
            retirement.timer.daemon = True
            retirement.timer.start()
            if stage == EGRESS:  # standby ingress instances follow the route (off the switch)
                self._forward(stage, target, [n for n, b in self.standbys.items() if b.stage == INGRESS])
        return report

    def _retire(self, r: _Retirement) -> None:
        """The old instance has drained: carry its share; it stays, as the standby for a
        move back."""
        with self.lock:
            if r not in self.retiring:
                return  # the site closed meanwhile
            folded = self._fold(r.build, r.node, r.base)
            self.retiring.remove(r)
            self.standbys[r.node] = r.build
            self.reports[r.index] = replace(self.reports[r.index], finished=time.time(), state_entries_copied=folded)

    def wait(self) -> None:
        """Until every pending fold is done."""
        for r in list(self.retiring):
            if r.timer is not None:
                r.timer.join()

    def _slow(self, stage: str, source: str, target: str) -> MigrationReport:
        """Break after make, all on the caller's time: build (or pre-build), attach, copy,
        switch, drain, fold, detach the old instance."""
        from mantra6g.targets import xdp

        site = self.site
        started = time.time()
        placement = dict(site.placement, **{stage: target})
        builds = site.take_prebuilt(placement) or compile_chain(
            site.chain_params(), site.nodes_arg(placement), site.workdir / f"build{len(self.reports) + 1}")
        new = builds[stage]
        site.attach(new)
        if stage == EGRESS and target not in self._routes:
            self._routes[target] = egress_route(site.chain_params(), site.nodes_arg(placement))
        with self.lock:
            base = snapshot(new.program, self.maps(source))
            copied = write_changes(self.maps(target), base, None)
            self._forward(stage, target, [site.placement[INGRESS]])
            switched = time.time()
            old = site.builds[stage]
            site.placement[stage] = target
            site.builds[stage] = new
            retirement = _Retirement(len(self.reports), source, old, base)
            self.retiring.append(retirement)  # the readout adds its share while it drains
        time.sleep(DRAIN_S)  # packets already queued towards the old node still arrive there
        with self.lock:
            copied += self._fold(old, source, base)
            self.retiring.remove(retirement)
            self._written.pop(source, None)
            self.forget(source)
            with site.lab.in_ns(source):
                xdp.undeploy(site.iface(source), None)
            site.napi_gone(source)
        report = MigrationReport(stage, source, target, started, switched, time.time(), copied, False)
        self.reports.append(report)
        return report


# ------------------------------------------------------------------ what it cost


@dataclass(frozen=True)
class SwitchCost:
    """A migration as the probes saw it (CLOCK_REALTIME window around its switch).

    ``gap_ms``: the longest the receiver waited for the gap probes sent after the switch,
    beyond what the sender made it wait: from the switch to the first delivery, then for
    each pair of consecutive deliveries ``a, b`` (in receive order) ``received(b) -
    max(received(a), sent(b))`` - a sender paused by the scheduler does not count, a probe
    held up on the new path does. Probes still queued on the old path (a migration away
    from congestion starts from one) are not the switch's doing and not in it.
    ``raw_gap_ms``: the longest interval between any two deliveries of the window, as a
    receiver sees it (old-path queueing and drops included). ``lost_after_switch``: gap
    and Poisson probes sent after the switch that never arrived (the move's own loss);
    ``lost``: all probes of the window that never arrived (includes drops on the old,
    congested path).
    """

    probes_sent: int
    lost: int
    lost_after_switch: int
    gap_ms: float
    raw_gap_ms: float


def _sent_window(records: list, lo: int, hi: int) -> tuple[list[int], dict[int, int]]:
    """Sequence numbers the sender sent in [lo, hi] (dense seqs: between the received
    ones around the window), and each received one's send time."""
    got = sorted((r.seq, r.sent_ns) for r in records)
    received = dict(got)
    if not got:
        return [], received
    before = [s for s, t in got if t < lo]
    after = [s for s, t in got if t > hi]
    first = before[-1] + 1 if before else got[0][0]
    last = after[0] - 1 if after else got[-1][0]
    return list(range(first, last + 1)), received


def _lost_after(seqs: list[int], received: dict[int, int], switched: int) -> int:
    """Lost probes sent after ``switched``: both received neighbours were sent after it
    (a lost probe's send time lies between its neighbours')."""
    known = sorted(received)
    n = 0
    for seq in seqs:
        if seq in received:
            continue
        i = bisect.bisect_left(known, seq)
        if 0 < i < len(known) and received[known[i - 1]] >= switched and received[known[i]] >= switched:
            n += 1
    return n


def switch_cost(report: MigrationReport, truth: list, before_s: float = 0.05, after_s: float = 0.25) -> SwitchCost:
    """What ``report``'s migration cost the traffic, from the receivers' records (call
    after the traffic ended): the window is [switch - ``before_s``, switch + ``after_s``]
    for the gap probes (and from the migration's start for the Poisson probes' loss)."""
    switched = int(report.switched * 1e9)
    lo, hi = int((report.switched - before_s) * 1e9), int((report.switched + after_s) * 1e9)
    gap_probes = [r for r in truth if r.gap_probe]
    poisson = [r for r in truth if not r.gap_probe]
    seqs, received = _sent_window(gap_probes, lo, hi)
    pseqs, preceived = _sent_window(poisson, int(report.started * 1e9), hi)
    window = set(seqs)
    inside = sorted((r.received_ns, r.sent_ns) for r in gap_probes if r.seq in window)
    raw = max(((b[0] - a[0]) / 1e6 for a, b in zip(inside, inside[1:])), default=0.0)
    new_path = [(rcv, snt) for rcv, snt in inside if snt >= switched]
    gap, last = 0.0, switched
    for rcv, snt in new_path:
        gap = max(gap, (rcv - max(last, snt)) / 1e6)
        last = rcv
    lost = sum(1 for s in seqs if s not in received) + sum(1 for s in pseqs if s not in preceived)
    after = _lost_after(seqs, received, switched) + _lost_after(pseqs, preceived, switched)
    return SwitchCost(len(seqs), lost, after, gap, raw)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


__all__ = ["DRAIN_S", "MigrationReport", "Migrator", "SwitchCost", "percentile", "switch_cost"]
