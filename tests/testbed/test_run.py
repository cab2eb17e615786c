"""Testbed comparisons (no root): what ``compare --resume`` reuses. A complete run leaves a
``trace.json`` with its summary and site; only a run of the same job is reused."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from mantra6g.testbed.run import Job, RunSummary, _site_doc, finished_run
from mantra6g.testbed.site import SiteConfig


def _summary(**kw) -> RunSummary:
    base = dict(scenario="ramp", policy="reactive", seed=2, duration_s=40.0, sla_ms=1.0, sent=100, received=100,
                violation_monitor=0.1, violation_truth=0.05, floor_truth=0.0, p50_ms=0.05, p99_ms=3.0,
                migrations=1, lost_after_switch=0, lost_in_windows=0, gap_ms=0.2, raw_gap_ms=0.6,
                loop_ms=(12.0,), switch_ms=(0.3,), decision_ms_p99=2.0, monitor_error_ms=0.02,
                embb_offered_mbit=20.0, embb_delivered_mbit=19.0, brier=0.01, standby=True)
    return RunSummary(**{**base, **kw})


def _write(work: Path, summary: RunSummary, config: SiteConfig | None) -> None:
    work.mkdir(parents=True)
    doc = {"summary": asdict(summary)}
    if config is not None:
        doc["site"] = _site_doc(config)
    (work / "trace.json").write_text(json.dumps(doc))


def test_resume_reuses_only_a_complete_run_of_the_same_job(tmp_path):
    config = SiteConfig()
    job = Job("ramp", config, "reactive", None, 2)
    work = tmp_path / "ramp" / "reactive-2"
    assert finished_run(work, job, 40.0) is None  # nothing there: run it
    _write(work, _summary(), replace(config, seed=2))
    got = finished_run(work, job, 40.0)
    assert got == _summary(workdir="") and got.loop_ms == (12.0,)  # tuples, as a fresh run's
    assert finished_run(work, job, 30.0) is None  # another duration
    assert finished_run(work, replace(job, seed=3), 40.0) is None  # another seed
    assert finished_run(work, replace(job, config=replace(config, standby=False)), 40.0) is None  # slow path
    assert finished_run(work, replace(job, config=replace(config, urllc_rate_pps=500.0)), 40.0) is None  # site
    (work / "trace.json").write_text('{"summary": {"scenario": "ramp"')  # cut short
    assert finished_run(work, job, 40.0) is None
