"""Shared test helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.sg"))


def pytest_collection_modifyitems(config, items):
    # Tests marked `root` need network namespaces/BPF; say so plainly when not root.
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces, BPF); CI runs as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
