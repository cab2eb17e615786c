"""Telemetry store: per-VNF, per-node and per-link samples and migrations in one SQLite file.

The control loop appends one :class:`~mantra6g.orchestrator.infra.Observation` per
interval and reads windows back (a chain's end-to-end latency over the last *n*
intervals is the sum of its VNFs' hop latencies at each time; its leading indicators are
aggregated the same way). ``:memory:`` keeps a run's telemetry in memory; a path keeps it
for later analysis with any SQLite client.

The schema is versioned (``PRAGMA user_version``, :data:`SCHEMA_VERSION`): a file written
by an older version is upgraded in place when opened; a file from a newer version is
refused with :class:`StoreError`.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from mantra6g.errors import MantraError
from mantra6g.orchestrator.infra import (
    LinkSample, MigrationPlan, NodeSample, Observation, SliceKind, SliceSample, TelemetrySample,
)

SCHEMA_VERSION = 2

# Version 1: vnf_samples (no leading indicators) and node_samples.
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS vnf_samples (
    time REAL NOT NULL,          -- seconds since the start of the run, end of the interval
    chain TEXT NOT NULL,
    slice TEXT NOT NULL,
    vnf TEXT NOT NULL,
    node TEXT NOT NULL,
    latency_ms REAL NOT NULL,    -- the hop's share of the chain's end-to-end latency
    queueing_ms REAL NOT NULL,
    cpu REAL NOT NULL,           -- cores
    memory_mb REAL NOT NULL,
    traffic_kpps REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS vnf_samples_time ON vnf_samples (time);
CREATE INDEX IF NOT EXISTS vnf_samples_chain_time ON vnf_samples (chain, time);
CREATE TABLE IF NOT EXISTS node_samples (
    time REAL NOT NULL,
    node TEXT NOT NULL,
    cpu_used REAL NOT NULL,
    pinned_used REAL NOT NULL,
    memory_used_mb REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS node_samples_time ON node_samples (time);
"""

# Version 2: the leading indicators (per-hop utilisation and drops, per-link qdisc
# statistics, per-slice data-plane counters) and the migrations, which the forecasters'
# context features need.
_UPGRADE_V2 = """
ALTER TABLE vnf_samples ADD COLUMN utilisation REAL NOT NULL DEFAULT 0;  -- busiest resource on the hop, 0..1+
ALTER TABLE vnf_samples ADD COLUMN drops_kpps REAL NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS link_samples (
    time REAL NOT NULL,
    link TEXT NOT NULL,
    utilisation REAL NOT NULL,   -- bytes sent / (rate x interval)
    backlog_bytes REAL NOT NULL, -- mean qdisc backlog over the interval
    queueing_ms REAL NOT NULL,   -- backlog / rate
    drops INTEGER NOT NULL,      -- packets dropped by the qdisc in the interval
    offered_mbit REAL NOT NULL   -- (sent + dropped) / interval
);
CREATE INDEX IF NOT EXISTS link_samples_time ON link_samples (time);
CREATE TABLE IF NOT EXISTS slice_samples (
    time REAL NOT NULL,
    slice TEXT NOT NULL,
    node TEXT NOT NULL,
    offered_kpps REAL NOT NULL,  -- reached the slice's chain stage on the node
    forwarded_kpps REAL NOT NULL,
    dropped_kpps REAL NOT NULL   -- dropped by it (policer, firewall)
);
CREATE INDEX IF NOT EXISTS slice_samples_time ON slice_samples (time);
CREATE TABLE IF NOT EXISTS migrations (
    time REAL NOT NULL,          -- when the controller decided it
    chain TEXT NOT NULL,
    vnf TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""

_VNF_COLUMNS = ("time", "chain", "slice", "vnf", "node", "latency_ms", "queueing_ms", "cpu",
                "memory_mb", "traffic_kpps", "utilisation", "drops_kpps")
_LINK_COLUMNS = ("time", "link", "utilisation", "backlog_bytes", "queueing_ms", "drops", "offered_mbit")

# How a chain's hops combine into one value per interval (see chain_window()).
CHAIN_AGGREGATES = {
    "latency_ms": "SUM(latency_ms)",  # end-to-end
    "queueing_ms": "SUM(queueing_ms)",
    "traffic_kpps": "MAX(traffic_kpps)",
    "cpu": "SUM(cpu)",
    "utilisation": "MAX(utilisation)",  # the bottleneck
    "drops_kpps": "SUM(drops_kpps)",
}


class StoreError(MantraError):
    """A telemetry file this version cannot read."""


class TelemetryStore:
    """Append-only telemetry with windowed queries; ``path=":memory:"`` by default."""

    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        self._times: list[float] | None = None  # distinct sample times, ascending (cached)
        self._db = sqlite3.connect(self.path)
        if self.path != ":memory:":
            # A run appends every interval: no fsync per commit (a crash loses the last few).
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        fresh = self._db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'vnf_samples'").fetchone()[0] == 0
        if version > SCHEMA_VERSION:
            self._db.close()
            raise StoreError(f"{self.path}: telemetry schema version {version} is newer than this "
                             f"mantra's ({SCHEMA_VERSION}); open it with a newer mantra")
        with self._db:
            if fresh or version < 1:
                self._db.executescript(_SCHEMA_V1)
            if fresh or version < 2:
                self._db.executescript(_UPGRADE_V2)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> TelemetryStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------

    def append(self, observation: Observation) -> None:
        """Store one interval's samples in one transaction."""
        self.append_samples(observation.vnfs, observation.nodes, observation.links, observation.slices)

    def append_samples(self, vnfs: Iterable[TelemetrySample], nodes: Iterable[NodeSample] = (),
                       links: Iterable[LinkSample] = (), slices: Iterable[SliceSample] = ()) -> None:
        vnfs = list(vnfs)
        if self._times is not None:
            new = sorted({s.time for s in vnfs} - set(self._times[-1:]))
            if new and self._times and new[0] < self._times[-1]:
                self._times = None  # out of order: re-read on the next query
            else:
                self._times += new
        with self._db:
            self._db.executemany(
                f"INSERT INTO vnf_samples ({', '.join(_VNF_COLUMNS)}) VALUES ({','.join('?' * len(_VNF_COLUMNS))})",
                [(s.time, s.chain, s.slice.value, s.vnf, s.node, s.latency_ms, s.queueing_ms,
                  s.cpu, s.memory_mb, s.traffic_kpps, s.utilisation, s.drops_kpps) for s in vnfs])
            self._db.executemany(
                "INSERT INTO node_samples VALUES (?,?,?,?,?)",
                [(n.time, n.node, n.cpu_used, n.pinned_used, n.memory_used_mb) for n in nodes])
            self._db.executemany(
                f"INSERT INTO link_samples VALUES ({','.join('?' * len(_LINK_COLUMNS))})",
                [(x.time, x.link, x.utilisation, x.backlog_bytes, x.queueing_ms, x.drops, x.offered_mbit)
                 for x in links])
            self._db.executemany(
                "INSERT INTO slice_samples VALUES (?,?,?,?,?,?)",
                [(x.time, x.slice.value, x.node, x.offered_kpps, x.forwarded_kpps, x.dropped_kpps) for x in slices])

    def record_migration(self, time: float, plan: MigrationPlan) -> None:
        """Note a migration the controller started (the context features use them)."""
        with self._db:
            self._db.execute("INSERT INTO migrations VALUES (?,?,?,?,?,?)",
                             (time, plan.chain, plan.vnf, plan.source, plan.target, plan.reason))

    # -- reading ----------------------------------------------------------------------

    def samples(self, since: float = -math.inf, until: float = math.inf,
                chain: str | None = None) -> list[TelemetrySample]:
        """VNF samples with ``since < time <= until``, oldest first."""
        query = f"SELECT {', '.join(_VNF_COLUMNS)} FROM vnf_samples WHERE time > ? AND time <= ?"
        args: list[object] = [since, until]
        if chain is not None:
            query += " AND chain = ?"
            args.append(chain)
        rows = self._db.execute(query + " ORDER BY time, rowid", args).fetchall()
        return [TelemetrySample(r[0], r[1], SliceKind(r[2]), *r[3:]) for r in rows]

    def link_samples(self, since: float = -math.inf, until: float = math.inf) -> list[LinkSample]:
        """Link samples with ``since < time <= until``, oldest first."""
        rows = self._db.execute(
            f"SELECT {', '.join(_LINK_COLUMNS)} FROM link_samples WHERE time > ? AND time <= ? "
            "ORDER BY time, rowid", (since, until)).fetchall()
        return [LinkSample(*r) for r in rows]

    def slice_samples(self, since: float = -math.inf, until: float = math.inf) -> list[SliceSample]:
        """Per-slice data-plane counters with ``since < time <= until``, oldest first."""
        rows = self._db.execute(
            "SELECT time, slice, node, offered_kpps, forwarded_kpps, dropped_kpps FROM slice_samples "
            "WHERE time > ? AND time <= ? ORDER BY time, rowid", (since, until)).fetchall()
        return [SliceSample(r[0], SliceKind(r[1]), *r[2:]) for r in rows]

    def migrations(self, chain: str | None = None) -> list[tuple[float, str, str, str, str]]:
        """(time, chain, vnf, source, target) of the recorded migrations, oldest first."""
        query = "SELECT time, chain, vnf, source, target FROM migrations"
        args: tuple = ()
        if chain is not None:
            query += " WHERE chain = ?"
            args = (chain,)
        return [tuple(r) for r in self._db.execute(query + " ORDER BY time, rowid", args)]

    def node_samples(self, since: float = -math.inf, until: float = math.inf) -> list[NodeSample]:
        rows = self._db.execute(
            "SELECT time, node, cpu_used, pinned_used, memory_used_mb FROM node_samples "
            "WHERE time > ? AND time <= ? ORDER BY time, rowid", (since, until)).fetchall()
        return [NodeSample(*r) for r in rows]

    def last_times(self, n: int) -> list[float]:
        """The latest ``n`` distinct sample times, oldest first."""
        if self._times is None:  # once per open: later appends keep the list current
            self._times = [r[0] for r in self._db.execute("SELECT DISTINCT time FROM vnf_samples ORDER BY time")]
        return self._times[-n:] if n > 0 else []

    def chain_latency(self, chains: Sequence[str], last: int) -> np.ndarray:
        """End-to-end latency of ``chains`` over the latest ``last`` times: shape (chains, n).

        ``n`` is ``last`` once that many intervals are stored (fewer before). A chain
        missing at some time (e.g. not yet deployed) is NaN there.
        """
        return self.chain_window(chains, last, ("latency_ms",))["latency_ms"]

    def chain_window(self, chains: Sequence[str], last: int,
                     columns: Sequence[str] = tuple(CHAIN_AGGREGATES)) -> dict[str, np.ndarray]:
        """Per-chain series over the latest ``last`` times, one (chains, n) array per column,
        each hop column combined as :data:`CHAIN_AGGREGATES` says; ``"time"`` is (n,)."""
        times = self.last_times(last)
        out = {c: np.full((len(chains), len(times)), np.nan) for c in columns}
        out["time"] = np.array(times, dtype=float)
        if not times:
            return out
        row = {c: i for i, c in enumerate(chains)}
        col = {t: j for j, t in enumerate(times)}
        aggs = ", ".join(CHAIN_AGGREGATES[c] for c in columns)
        for t, chain, *values in self._db.execute(
                f"SELECT time, chain, {aggs} FROM vnf_samples INDEXED BY vnf_samples_time "
                "WHERE time >= ? GROUP BY time, chain",
                (times[0],)):
            if chain in row:
                for c, v in zip(columns, values):
                    out[c][row[chain], col[t]] = v
        return out

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM vnf_samples").fetchone()[0]

    # -- export -------------------------------------------------------------------------

    def prometheus(self) -> str:
        """The latest values in the Prometheus text exposition format (version 0.0.4)."""
        (latest,) = self._db.execute("SELECT MAX(time) FROM vnf_samples").fetchone()
        lines: list[str] = []
        if latest is None:
            return ""
        metrics = [
            ("mantra_vnf_latency_ms", "latency_ms", "Hop latency of a VNF (processing + queueing + link)."),
            ("mantra_vnf_queueing_ms", "queueing_ms", "Queueing delay at a VNF."),
            ("mantra_vnf_cpu_cores", "cpu", "CPU cores used by a VNF."),
            ("mantra_vnf_memory_mb", "memory_mb", "Memory used by a VNF."),
            ("mantra_vnf_traffic_kpps", "traffic_kpps", "Traffic through a VNF."),
        ]
        rows = self._db.execute(
            f"SELECT {', '.join(_VNF_COLUMNS)} FROM vnf_samples WHERE time = ? ORDER BY rowid",
            (latest,)).fetchall()
        index = {c: i for i, c in enumerate(_VNF_COLUMNS)}
        for metric, column, help_text in metrics:
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
            for r in rows:
                labels = ",".join(f'{k}="{_escape(str(r[index[k]]))}"'
                                  for k in ("chain", "slice", "vnf", "node"))
                lines.append(f"{metric}{{{labels}}} {r[index[column]]:.6g}")
        lines += ["# HELP mantra_chain_latency_ms End-to-end latency of a chain.",
                  "# TYPE mantra_chain_latency_ms gauge"]
        for chain, slice_, total in self._db.execute(
                "SELECT chain, slice, SUM(latency_ms) FROM vnf_samples WHERE time = ? "
                "GROUP BY chain, slice ORDER BY chain", (latest,)):
            lines.append(f'mantra_chain_latency_ms{{chain="{_escape(chain)}",'
                         f'slice="{_escape(slice_)}"}} {total:.6g}')
        lines += ["# HELP mantra_node_cpu_used_cores Busy cores of a node, all tenants.",
                  "# TYPE mantra_node_cpu_used_cores gauge"]
        for node, used, pinned in self._db.execute(
                "SELECT node, cpu_used, pinned_used FROM node_samples WHERE time = "
                "(SELECT MAX(time) FROM node_samples) ORDER BY rowid"):
            lines.append(f'mantra_node_cpu_used_cores{{node="{_escape(node)}"}} {used + pinned:.6g}')
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    # The exposition format escapes backslash, double quote and newline in label values.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
