# The two commands of the README. Both set the machine up first (idempotent).
PY := .venv/bin/python
MANTRA := .venv/bin/mantra

.PHONY: setup demo test clean

setup:
	@bash scripts/setup.sh

# The end-to-end story: check the example service graphs, compile them to P4 for BMv2
# (out/compile/), prove the two-tenant DPU merge isolated and equivalent (out/verify/),
# simulate predictive vs reactive vs static orchestration (out/simulate/), then run the
# real edge site — XDP NFs in network namespaces, in-network latency monitor, live
# make-before-break migrations — on the two-rack site with ramping eMBB sessions: the
# forecaster is trained on one training seed first, then static, reactive and predictive
# run on seed 1 (out/demo-testbed/; needs root).
demo: setup
	$(MANTRA) check examples/*.sg
	$(MANTRA) compile examples/*.sg --target bmv2 -o out/compile
	$(MANTRA) verify examples/edge_site_two_tenants.sg --target bmv2 --out out/verify
	$(MANTRA) simulate --out out/simulate
	$(MANTRA) testbed compare examples/testbed/ramp.yaml --policies static,reactive,predictive --duration 30 \
		--seeds 1 --train-seeds 1 --out out/demo-testbed

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf .venv build *.egg-info .pytest_cache .hypothesis
