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
