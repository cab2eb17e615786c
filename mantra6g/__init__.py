"""Mantra: programmable 6G data planes.

Service graphs (``.sg``) are parsed and checked by :mod:`mantra6g.synth`, lowered to
data-plane programs by :mod:`mantra6g.targets`, proven by :mod:`mantra6g.verify`, and
run by :mod:`mantra6g.orchestrator` and :mod:`mantra6g.testbed`.
"""

__version__ = "0.1.0"
