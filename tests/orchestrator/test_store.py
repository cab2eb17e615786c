"""The SQLite telemetry store: append, windows, chain latency, Prometheus text."""

from __future__ import annotations

import numpy as np

from mantra6g.orchestrator.infra import NodeSample, Observation, SliceKind, TelemetrySample
from mantra6g.orchestrator.store import TelemetryStore


def _obs(t: float, lat: float) -> Observation:
    vnfs = (TelemetrySample(t, "c1", SliceKind.URLLC, "c1.v0", "A", lat, 0.1, 0.5, 256, 10),
            TelemetrySample(t, "c1", SliceKind.URLLC, "c1.v1", "A", 2 * lat, 0.2, 0.5, 256, 10),
            TelemetrySample(t, "c2", SliceKind.EMBB, "c2.v0", "B", 5.0, 1.0, 2.0, 1024, 3))
    return Observation(t, vnfs, (NodeSample(t, "A", 1.0, 2.5, 512.0),))


def test_append_and_windowed_queries(tmp_path):
    path = tmp_path / "telemetry.sqlite"
    with TelemetryStore(path) as store:
        for i in range(1, 6):
            store.append(_obs(i / 10, 0.1 * i))
        assert store.count() == 15
        window = store.samples(since=0.25, until=0.4)
        assert {s.time for s in window} == {0.3, 0.4}
        assert all(s.slice is SliceKind.URLLC or s.chain == "c2" for s in window)
        assert [s.vnf for s in store.samples(chain="c1", since=0.45)] == ["c1.v0", "c1.v1"]
        lat = store.chain_latency(["c2", "c1", "missing"], last=3)
        assert lat.shape == (3, 3)
        np.testing.assert_allclose(lat[1], [0.9, 1.2, 1.5])  # hop sums: 3 x 0.1 x i
        np.testing.assert_allclose(lat[0], [5.0] * 3)
        assert np.isnan(lat[2]).all()
        assert len(store.node_samples(since=0.45)) == 1
    # The file persists and reopens with the data.
    with TelemetryStore(path) as again:
        assert again.count() == 15


def test_short_history_gives_fewer_columns():
    store = TelemetryStore()
    assert store.chain_latency(["c1"], 10).shape == (1, 0)
    store.append(_obs(0.1, 0.2))
    assert store.chain_latency(["c1"], 10).shape == (1, 1)


def test_prometheus_exposition_of_latest_values():
    store = TelemetryStore()
    store.append(_obs(0.1, 0.1))
    store.append(_obs(0.2, 0.3))
    text = store.prometheus()
    assert "# TYPE mantra_vnf_latency_ms gauge" in text
    assert 'mantra_vnf_latency_ms{chain="c1",slice="urllc",vnf="c1.v0",node="A"} 0.3\n' in text
    assert 'mantra_chain_latency_ms{chain="c1",slice="urllc"} 0.9' in text
    assert 'mantra_node_cpu_used_cores{node="A"} 3.5' in text
    assert " 0.1\n" not in text.split("mantra_vnf_queueing_ms")[0]  # only the latest time
    assert TelemetryStore().prometheus() == ""


def test_schema_is_versioned_and_a_version_1_file_is_upgraded(tmp_path):
    import sqlite3

    import pytest

    from mantra6g.orchestrator.store import _SCHEMA_V1, SCHEMA_VERSION, StoreError

    old = tmp_path / "v1.sqlite"
    db = sqlite3.connect(old)  # a file as version 1 wrote it: no user_version, 10 columns
    db.executescript(_SCHEMA_V1)
    db.execute("INSERT INTO vnf_samples VALUES (0.1, 'c1', 'urllc', 'c1.v0', 'A', 0.4, 0.1, 0.5, 256, 10)")
    db.commit()
    db.close()
    with TelemetryStore(old) as store:
        (s,) = store.samples()
        assert s.latency_ms == 0.4 and s.utilisation == 0.0 and s.drops_kpps == 0.0
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        store.append(_obs(0.2, 0.3))
        assert store.count() == 4
    newer = tmp_path / "v9.sqlite"
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 9")
    db.close()
    with pytest.raises(StoreError, match="version 9 is newer"):
        TelemetryStore(newer)


def test_leading_indicators_links_and_migrations_round_trip():
    from mantra6g.orchestrator.infra import LinkSample, MigrationDelay, MigrationPlan

    store = TelemetryStore()
    vnfs = (TelemetrySample(0.5, "c1", SliceKind.URLLC, "c1.v0", "A", 0.2, 0.05, 0.1, 16, 0.3, 0.4, 0.0),
            TelemetrySample(0.5, "c1", SliceKind.URLLC, "c1.v1", "D", 0.6, 0.5, 0.1, 16, 0.3, 0.95, 1.5))
    link = LinkSample(0.5, "^r1", 0.95, 12000.0, 2.4, 7, 44.0)
    store.append(Observation(0.5, vnfs, (), (link,)))
    assert store.link_samples() == [link]
    w = store.chain_window(["c1"], 5)
    # The chain's bottleneck is its busiest hop; queueing and drops add up along it.
    assert w["utilisation"][0, 0] == 0.95 and w["queueing_ms"][0, 0] == 0.55
    assert w["drops_kpps"][0, 0] == 1.5 and w["latency_ms"][0, 0] == 0.8 and w["traffic_kpps"][0, 0] == 0.3
    plan = MigrationPlan("c1.v1", "c1", "D", "E", MigrationDelay(0, 0, 0.05), 0.1, 0.15, "risk")
    store.record_migration(0.5, plan)
    assert store.migrations("c1") == [(0.5, "c1", "c1.v1", "D", "E")]
