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


@pytest.fixture(autouse=True)
def _no_address_resolution(monkeypatch):
    """Scapy fills a missing Ether(dst=...) by ARPing on the host's network (and waits
    for the answer). Tests only ever build frames with explicit MACs; fail loudly if not."""
    import scapy.layers.l2  # noqa: F401  (sets up conf.neighbor)
    from scapy.config import conf

    def refuse(*args, **kwargs):
        raise AssertionError("a test frame lacks Ether(dst=...): scapy would ARP on the host")

    monkeypatch.setattr(conf.neighbor, "resolve", refuse)


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``mantra ARGV`` in this process (fast): exit code, stdout, stderr. Usage errors
    (argparse's SystemExit) give their exit code like the real command."""
    import contextlib
    import io

    from mantra6g.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return code, out.getvalue(), err.getvalue()
