# The two commands of the README. Both set the machine up first (idempotent).
PY := .venv/bin/python
MANTRA := .venv/bin/mantra

.PHONY: setup demo test clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(MANTRA) check examples/*.sg

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf .venv build *.egg-info .pytest_cache .hypothesis
