"""Forecaster benchmark: training time, and per-step inference time batched over 20 chains.

Run from the repository root:  .venv/bin/python bench/forecast.py [--quick]

Training data are the simulator's static-policy runs on the training seed (as in
``mantra simulate``); inference is timed on windows of an evaluation-seed run, one call
per control step for all chains at once. Prints figures; never passes or fails on time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mantra6g.orchestrator.controller import Controller, run
from mantra6g.orchestrator.experiment import lstm_config, training_series
from mantra6g.orchestrator.forecast import FORECASTERS, make_forecaster, sliding_windows
from mantra6g.orchestrator.scenario import Scenario
from mantra6g.orchestrator.simulator import Simulator

CHAINS = 20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 LSTM epochs instead of 30")
    ap.add_argument("--steps", type=int, default=500, help="inference calls to time")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    scenario = Scenario()
    if args.quick:
        scenario = scenario.replace(forecast=scenario.forecast.__class__(
            **{**scenario.forecast.__dict__, "lstm_epochs": 5}))
    scenario = scenario.replace(chains=scenario.chains.__class__(CHAINS, scenario.chains.vnfs))
    series = training_series(scenario)
    sim = Simulator(scenario, 1)
    run(sim, Controller("static", scenario.policy, scenario.migration))  # pins URLLC, as in training
    test = sim.truth.latency  # (steps, 20 chains), evaluation seed 1
    f = scenario.forecast
    print(f"{len(series)} training series, {CHAINS} chains per batch, window {f.window}, "
          f"torch {torch.__version__} with {torch.get_num_threads()} thread(s)")
    urllc = [i for i, c in enumerate(sim.chains()) if c.slice.value == "urllc"]
    print("one-step RMSE on evaluation seed 1 under the static policy (open loop)")
    print(f"{'forecaster':<10} {'train s':>8} {'p50 us/step':>12} {'p99 us/step':>12} "
          f"{'RMSE ms':>8} {'URLLC RMSE':>10}")
    for name in FORECASTERS:
        model = make_forecaster(name, f.window, arima_order=f.arima_order,
                                lstm=lstm_config(scenario), quantile_level=f.quantile_level,
                                quantile_base=f.quantile_base)
        start = time.perf_counter()
        model.fit(series)
        train_s = time.perf_counter() - start
        times = []
        for t in range(f.window, min(len(test), f.window + args.steps)):
            batch = test[t - f.window:t].T  # (20, window)
            start = time.perf_counter()
            model.predict(batch, 2)
            times.append(time.perf_counter() - start)
        # Error of the point forecast (for quantile: of its base; a quantile is not a mean).
        point = getattr(model, "base", model)
        rmse = []
        for cols in (list(range(test.shape[1])), urllc):
            x, y = sliding_windows(list(test[:, cols].T), f.window, 1)
            rmse.append(float(np.sqrt(np.mean((point.predict(x, 1)[:, 0] - y[:, 0]) ** 2))))
        p50, p99 = np.percentile(times, [50, 99]) * 1e6
        print(f"{name:<10} {train_s:>8.2f} {p50:>12.0f} {p99:>12.0f} {rmse[0]:>8.3f} "
              f"{rmse[1]:>10.3f}")


if __name__ == "__main__":
    main()
