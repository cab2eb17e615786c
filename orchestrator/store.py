"""Telemetry store: per-VNF and per-node samples in one SQLite file.

The control loop appends one :class:`~mantra6g.orchestrator.infra.Observation` per
interval and reads windows back (a chain's end-to-end latency over the last *n*
intervals is the sum of its VNFs' hop latencies at each time). ``:memory:`` keeps a run's
telemetry in memory; a path keeps it for later analysis with any SQLite client.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from mantra6g.orchestrator.infra import NodeSample, Observation, SliceKind, TelemetrySample

_SCHEMA = """
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

_VNF_COLUMNS = ("time", "chain", "slice", "vnf", "node", "latency_ms", "queueing_ms", "cpu",
                "memory_mb", "traffic_kpps")


class TelemetryStore:
    """Append-only telemetry with windowed queries; ``path=":memory:"`` by default."""

    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        self._db = sqlite3.connect(self.path)
        self._db.executescript(_SCHEMA)

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
        self.append_samples(observation.vnfs, observation.nodes)

    def append_samples(self, vnfs: Iterable[TelemetrySample],
                       nodes: Iterable[NodeSample] = ()) -> None:
        with self._db:
            self._db.executemany(
                "INSERT INTO vnf_samples VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(s.time, s.chain, s.slice.value, s.vnf, s.node, s.latency_ms, s.queueing_ms,
                  s.cpu, s.memory_mb, s.traffic_kpps) for s in vnfs])
            self._db.executemany(
                "INSERT INTO node_samples VALUES (?,?,?,?,?)",
                [(n.time, n.node, n.cpu_used, n.pinned_used, n.memory_used_mb) for n in nodes])

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

    def node_samples(self, since: float = -math.inf, until: float = math.inf) -> list[NodeSample]:
        rows = self._db.execute(
            "SELECT time, node, cpu_used, pinned_used, memory_used_mb FROM node_samples "
            "WHERE time > ? AND time <= ? ORDER BY time, rowid", (since, until)).fetchall()
        return [NodeSample(*r) for r in rows]

    def last_times(self, n: int) -> list[float]:
        """The latest ``n`` distinct sample times, oldest first."""
        rows = self._db.execute(
            "SELECT DISTINCT time FROM vnf_samples ORDER BY time DESC LIMIT ?", (n,)).fetchall()
        return [r[0] for r in reversed(rows)]

    def chain_latency(self, chains: Sequence[str], last: int) -> np.ndarray:
        """End-to-end latency of ``chains`` over the latest ``last`` times: shape (chains, n).

        ``n`` is ``last`` once that many intervals are stored (fewer before). A chain
        missing at some time (e.g. not yet deployed) is NaN there.
        """
        times = self.last_times(last)
        out = np.full((len(chains), len(times)), np.nan)
        if not times:
            return out
        row = {c: i for i, c in enumerate(chains)}
        col = {t: j for j, t in enumerate(times)}
        for t, chain, total in self._db.execute(
                "SELECT time, chain, SUM(latency_ms) FROM vnf_samples WHERE time >= ? "
                "GROUP BY time, chain", (times[0],)):
            if chain in row:
                out[row[chain], col[t]] = total
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
