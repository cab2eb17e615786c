"""How a migration folds an old instance's state into its successor's (no root):
``testbed/chain.py: added`` and ``merge_rule``."""

from __future__ import annotations

import numpy as np

from mantra6g.synth.nf.latency_monitor import delay_sum
from mantra6g.testbed.chain import added, merge_rule


def test_a_wrapped_low_word_adds_up_exactly_with_its_carry():
    """Oracle: Python's integers. The old instance recorded 15 ns after its successor's
    copy, and its low sum word wrapped meanwhile (2^32 - 10 -> 5, the high word 3 -> 4):
    what it added, word by word, spells exactly 15 ns — not 2^64 - 4294967291 for the
    low word, which unsigned arithmetic gives."""
    base = np.array([[2**32 - 10], [3]], dtype="<u8")  # delay_sum_lo, delay_sum_hi at the copy
    now = np.array([[5], [4]], dtype="<u8")
    words = dict(zip(("delay_sum_lo", "delay_sum_hi"), (int(x) for x in added(now, base)[:, 0])))
    assert delay_sum(words.__getitem__) == ((4 << 32) + 5) - ((3 << 32) + 2**32 - 10) == 15
    assert {merge_rule(f"reg_g_mon_{w}") for w in words} == {"add"}
