"""Metrics of simulated runs, aggregated over seeds: table, JSON, Markdown and plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from mantra6g.orchestrator.experiment import RunResult

SLICES = ("urllc", "embb", "best_effort")


def run_metrics(r: RunResult) -> dict[str, float]:
    """Scalar metrics of one run (rates in [0, 1], latencies in ms, times in ms)."""
    out: dict[str, float] = {}
    slices = np.array(r.slices)
    sla = np.array(r.sla_ms)
    for kind in SLICES:
        cols = slices == kind
        if not cols.any():
            continue
        lat = r.latency[:, cols]
        out[f"{kind}_violation_rate"] = float(np.mean(lat > sla[cols]))
        out[f"{kind}_mean_ms"] = float(np.mean(lat))
        out[f"{kind}_p99_ms"] = float(np.percentile(lat, 99))
    out["migrations"] = float(len(r.migrations))
    out["unnecessary_migrations"] = float(sum(1 for m in r.migrations if not m[3]))
    if r.forecaster is not None:
        err = r.forecast[:-1] - r.observed[1:]  # forecast made after t for t + 1
        ok = ~np.isnan(err)
        out["forecast_rmse_ms"] = float(np.sqrt(np.mean(err[ok] ** 2)))
        out["forecast_mae_ms"] = float(np.mean(np.abs(err[ok])))
        u = ok & (slices == "urllc")[None, :]
        if u.any():
            out["urllc_forecast_rmse_ms"] = float(np.sqrt(np.mean(err[u] ** 2)))
        if len(r.inference_s):
            out["inference_p50_ms"] = float(np.percentile(r.inference_s, 50) * 1e3)
            out["inference_p99_ms"] = float(np.percentile(r.inference_s, 99) * 1e3)
    return out


@dataclass(frozen=True)
class Estimate:
    """Mean over seeds with a 95 % Student-t interval."""

    mean: float
    half_width: float
    n: int

    def __str__(self) -> str:
        return _fmt(self.mean, self.half_width)


def estimate(values: Sequence[float]) -> Estimate:
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return Estimate(float(v.mean()) if len(v) else math.nan, math.nan, len(v))
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return Estimate(float(v.mean()), float(half), len(v))


def _fmt(mean: float, half: float) -> str:
    def num(x: float) -> str:
        if math.isnan(x):
            return "n/a"
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"

    return num(mean) if math.isnan(half) else f"{num(mean)} ± {num(half)}"


def aggregate(results: Sequence[RunResult]) -> dict[str, dict[str, Estimate]]:
    """{policy label: {metric: Estimate over seeds}}, labels in first-seen order."""
    per: dict[str, list[dict[str, float]]] = {}
    for r in results:
        per.setdefault(r.label, []).append(run_metrics(r))
    out: dict[str, dict[str, Estimate]] = {}
    for label, rows in per.items():
        keys = [k for k in rows[0]]
        out[label] = {k: estimate([row[k] for row in rows if k in row]) for k in keys}
    return out


def paired_reduction(results: Sequence[RunResult], label: str, baseline: str,
                     metric: str = "urllc_violation_rate") -> Estimate | None:
    """Per-seed relative reduction of ``metric`` of ``label`` against ``baseline`` (in %).

    Seeds where the baseline has no violations are left out (the ratio is undefined).
    """
    by = {(r.label, r.seed): run_metrics(r).get(metric) for r in results}
    seeds = sorted({r.seed for r in results})
    ratios = [100.0 * (1 - by[(label, s)] / by[(baseline, s)]) for s in seeds
              if by.get((label, s)) is not None and by.get((baseline, s))]
    return estimate(ratios) if ratios else None


COLUMNS = [
    ("URLLC viol. %", "urllc_violation_rate", 100.0),
    ("URLLC mean ms", "urllc_mean_ms", 1.0),
    ("URLLC P99 ms", "urllc_p99_ms", 1.0),
    ("eMBB viol. %", "embb_violation_rate", 100.0),
    ("eMBB mean ms", "embb_mean_ms", 1.0),
    ("eMBB P99 ms", "embb_p99_ms", 1.0),
    ("BE viol. %", "best_effort_violation_rate", 100.0),
    ("migrations", "migrations", 1.0),
    ("unnecessary", "unnecessary_migrations", 1.0),
    ("RMSE ms", "forecast_rmse_ms", 1.0),
    ("URLLC RMSE ms", "urllc_forecast_rmse_ms", 1.0),
    ("MAE ms", "forecast_mae_ms", 1.0),
    ("infer p50 ms", "inference_p50_ms", 1.0),
    ("infer p99 ms", "inference_p99_ms", 1.0),
]


def _cell(est: Estimate | None, scale: float) -> str:
    return "—" if est is None else _fmt(est.mean * scale, est.half_width * scale)


def table(agg: dict[str, dict[str, Estimate]], markdown: bool = False) -> str:
    """The aggregate as a text (or Markdown) table, one row per policy/forecaster."""
    headers = ["policy"] + [c[0] for c in COLUMNS]
    rows = [[label] + [_cell(m.get(key), scale) for _, key, scale in COLUMNS]
            for label, m in agg.items()]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*headers)] + [fmt.format(*r) for r in rows])


def to_json(results: Sequence[RunResult], agg: dict[str, dict[str, Estimate]]) -> str:
    """Per-run metrics and the aggregate (mean, 95 % half-width, n) as JSON."""
    doc = {
        "runs": [{"policy": r.policy, "forecaster": r.forecaster, "seed": r.seed,
                  **run_metrics(r)} for r in results],
        "aggregate": {label: {k: {"mean": e.mean, "ci95": e.half_width, "n": e.n}
                              for k, e in m.items()} for label, m in agg.items()},
    }
    return json.dumps(doc, indent=2, allow_nan=True)


def plot(results: Sequence[RunResult], agg: dict[str, dict[str, Estimate]], out: Path
         ) -> list[Path]:
    """Write latency-vs-SLA (migrations marked) and violations-per-policy PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    seed = min(r.seed for r in results)
    first = [r for r in results if r.seed == seed]
    ref = next((r for r in first if r.policy == "static"), first[0])
    urllc = [i for i, s in enumerate(ref.slices) if s == "urllc"] or list(range(len(ref.chains)))
    # The URLLC chain that suffers most without orchestration shows the policies best.
    chain = max(urllc, key=lambda i: float(np.mean(ref.latency[:, i] > ref.sla_ms[i])))
    fig, axes = plt.subplots(len(first), 1, figsize=(11, 2.2 * len(first)), sharex=True,
                             squeeze=False)
    for ax, r in zip(axes[:, 0], first):
        t = np.arange(len(r.latency))
        ax.plot(t, r.latency[:, chain], lw=0.7, label="latency")
        ax.axhline(r.sla_ms[chain], color="red", lw=1, label="SLA")
        for step, c, _vnf, needed in r.migrations:
            if c == r.chains[chain]:
                ax.axvline(step, color="green" if needed else "orange", lw=0.8, ls="--")
        viol = 100 * float(np.mean(r.latency[:, chain] > r.sla_ms[chain]))
        ax.set_title(f"{r.label}: {r.chains[chain]} (seed {seed}), {viol:.1f} % steps over SLA",
                     fontsize=9)
        ax.set_ylabel("ms")
        ax.set_ylim(0, max(3 * r.sla_ms[chain], 1e-3))
    axes[-1, 0].set_xlabel("step (dashed: migrations of this chain; green needed, orange not)")
    fig.tight_layout()
    path = out / "latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    labels = list(agg)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels)), 4))
    x = np.arange(len(labels))
    for off, kind in ((-0.2, "urllc"), (0.2, "embb")):
        key = f"{kind}_violation_rate"
        means = [100 * agg[l][key].mean if key in agg[l] else 0 for l in labels]
        errs = [100 * agg[l][key].half_width if key in agg[l] else 0 for l in labels]
        errs = np.nan_to_num(errs)
        # A rate is never negative: the interval's lower arm stops at zero.
        lower = np.minimum(errs, means)
        ax.bar(x + off, means, 0.4, yerr=[lower, errs], capsize=3, label=kind)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("SLA violations (% of steps), mean ± 95 % CI")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    path = out / "violations.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
