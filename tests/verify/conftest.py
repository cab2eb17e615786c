"""Fixtures for the verifier tests: merged programs of the seeded cases and examples."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mantra6g.synth import frontend
from mantra6g.synth.ir import DeviceClass, DevicePlan
from mantra6g.synth.merge import MergedProgram, merge_site

CASES = Path(__file__).resolve().parent / "cases"
ROOT = Path(__file__).resolve().parents[2]


def merged(*paths: Path) -> MergedProgram:
    (m,) = merge_site(frontend.load([str(p) for p in paths]))
    return m


@pytest.fixture(scope="session")
def lb_routers() -> MergedProgram:
    # The operator's port plan: alpha's router sends out of port 1, beta's out of 2.
    plan = DevicePlan(DeviceClass.SMARTNIC, "edge", ((1, "alpha"), (2, "beta")))
    return dataclasses.replace(merged(CASES / "lb_routers.sg"), plan=plan)


@pytest.fixture(scope="session")
def two_tenants() -> MergedProgram:
    return merged(ROOT / "examples" / "edge_site_two_tenants.sg")
