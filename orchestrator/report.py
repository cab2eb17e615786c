"""Metrics of simulated runs, aggregated over seeds: table, JSON, Markdown and plots.

Every table reports the jitter floor (violations no placement can avoid: the chains'
latency with every VNF on one idle node) and, per policy, the share of the achievable
reduction it gets: (reactive - policy) / (reactive - floor), per seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from mantra6g import output
from mantra6g.orchestrator.experiment import RunResult

SLICES = ("urllc", "embb", "best_effort")
NOTES_MARKER = "<!-- notes: everything from here on is kept when the report is regenerated -->"
RELIABILITY_BINS = np.array([0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0 + 1e-9])


def within_horizon(r: RunResult) -> np.ndarray:
    """(steps, chains): whether the latency broke the SLA in one of the ``horizon`` steps
    after step t (the event ``r.risk`` gives a probability for); False past the end."""
    over = r.latency > np.array(r.sla_ms)[None, :]
    out = np.zeros_like(over)
    for h in range(1, r.horizon + 1):
        out[:-h] |= over[h:]
    return out


def risk_pairs(r: RunResult, kind: str = "urllc") -> tuple[np.ndarray, np.ndarray]:
    """(predicted probability, outcome) of every step of ``kind``'s chains with a risk forecast."""
    if r.risk.size == 0:
        return np.zeros(0), np.zeros(0)
    cols = np.array(r.slices) == kind
    p = r.risk[:-r.horizon, cols].ravel()
    y = within_horizon(r)[:-r.horizon, cols].ravel()
    ok = ~np.isnan(p)
    return p[ok], y[ok].astype(float)


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
        out[f"{kind}_floor_rate"] = float(np.mean(r.floor[:, cols] > sla[cols]))
        out[f"{kind}_mean_ms"] = float(np.mean(lat))
        out[f"{kind}_p99_ms"] = float(np.percentile(lat, 99))
    out["migrations"] = float(len(r.migrations))
    out["unnecessary_migrations"] = float(sum(1 for m in r.migrations if not m[3]))
    p, y = risk_pairs(r)
    if len(p):
        out["urllc_brier"] = float(np.mean((p - y) ** 2))
        out["urllc_risk_mean"] = float(np.mean(p))
        out["urllc_risk_observed"] = float(np.mean(y))
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


def achievable_share(results: Sequence[RunResult], label: str, baseline: str = "reactive",
                     kind: str = "urllc") -> Estimate | None:
    """Per seed, the share of the achievable reduction ``label`` gets: (baseline -
    label) / (baseline - floor), in %; seeds where the baseline is at the floor are left out."""
    by = {(r.label, r.seed): run_metrics(r) for r in results}
    seeds = sorted({r.seed for r in results})
    v, f = f"{kind}_violation_rate", f"{kind}_floor_rate"
    shares = []
    for s in seeds:
        a, b = by.get((label, s)), by.get((baseline, s))
        if a is None or b is None or b[v] - b[f] <= 0:
            continue
        shares.append(100.0 * (b[v] - a[v]) / (b[v] - b[f]))
    return estimate(shares) if shares else None


def reliability(results: Sequence[RunResult], label: str, kind: str = "urllc",
                ) -> list[tuple[float, float, int]]:
    """Reliability diagram of ``label``'s risk forecasts over all its runs: per bin of
    predicted probability, (mean predicted, observed frequency, count)."""
    ps, ys = [], []
    for r in results:
        if r.label == label:
            p, y = risk_pairs(r, kind)
            ps.append(p)
            ys.append(y)
    if not ps or not sum(len(p) for p in ps):
        return []
    p, y = np.concatenate(ps), np.concatenate(ys)
    out = []
    idx = np.digitize(p, RELIABILITY_BINS) - 1
    for b in range(len(RELIABILITY_BINS) - 1):
        sel = idx == b
        if sel.any():
            out.append((float(p[sel].mean()), float(y[sel].mean()), int(sel.sum())))
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
    ("URLLC floor %", "urllc_floor_rate", 100.0),
    ("URLLC mean ms", "urllc_mean_ms", 1.0),
    ("URLLC P99 ms", "urllc_p99_ms", 1.0),
    ("eMBB viol. %", "embb_violation_rate", 100.0),
    ("eMBB mean ms", "embb_mean_ms", 1.0),
    ("eMBB P99 ms", "embb_p99_ms", 1.0),
    ("BE viol. %", "best_effort_violation_rate", 100.0),
    ("migrations", "migrations", 1.0),
    ("unnecessary", "unnecessary_migrations", 1.0),
    ("URLLC Brier", "urllc_brier", 1.0),
    ("RMSE ms", "forecast_rmse_ms", 1.0),
    ("URLLC RMSE ms", "urllc_forecast_rmse_ms", 1.0),
    ("MAE ms", "forecast_mae_ms", 1.0),
    ("infer p50 ms", "inference_p50_ms", 1.0),
    ("infer p99 ms", "inference_p99_ms", 1.0),
]


SHARE_COLUMNS = [
    ("vs reactive %", "urllc_reduction_pct", 1.0),
    ("of achievable %", "urllc_achievable_pct", 1.0),
]


def _cell(est: Estimate | None, scale: float) -> str:
    return "—" if est is None else _fmt(est.mean * scale, est.half_width * scale)


def table(agg: dict[str, dict[str, Estimate]], markdown: bool = False) -> str:
    """The aggregate as a text (or Markdown) table, one row per policy/forecaster; the
    per-seed reductions (see :func:`with_shares`) when they are in it."""
    columns = COLUMNS[:2] + [c for c in SHARE_COLUMNS if any(c[1] in m for m in agg.values())] + COLUMNS[2:]
    headers = ["policy"] + [c[0] for c in columns]
    rows = [[label] + [_cell(m.get(key), scale) for _, key, scale in columns]
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


def write_markdown(path: Path, key: str, text: str) -> None:
    """Write a generated report into ``path`` without losing what a person wrote there.

    The text goes between ``<!-- generated: KEY -->`` and ``<!-- end of generated: KEY -->``:
    a file that has that block gets only the block replaced, so several commands (each
    with its own key) can keep their parts of one document current, with hand-written
    text around them; a file with other commands' blocks gets this one appended. A file
    without blocks but with :data:`NOTES_MARKER` has what is above the marker replaced
    (the notes below it kept); any other file is replaced."""
    begin, end = f"<!-- generated: {key} -->", f"<!-- end of generated: {key} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
    elif "<!-- generated: " in old:
        new = old.rstrip() + "\n\n" + block + "\n"
    elif NOTES_MARKER in old:
        new = block + "\n\n" + old[old.index(NOTES_MARKER):]
    else:
        new = block + "\n"
    output.write_text(path, new)  # whole or not at all


def with_shares(results: Sequence[RunResult], agg: dict[str, dict[str, Estimate]],
                baseline: str = "reactive") -> dict[str, dict[str, Estimate]]:
    """The aggregate plus, per policy, the per-seed reduction of URLLC violations against
    ``baseline`` and the share of the achievable reduction (see :func:`achievable_share`)."""
    if baseline not in agg:
        return agg
    out = {}
    for label, m in agg.items():
        m = dict(m)
        if label != baseline:
            for key, est in (("urllc_reduction_pct", paired_reduction(results, label, baseline)),
                             ("urllc_achievable_pct", achievable_share(results, label, baseline))):
                if est is not None:
                    m[key] = est
        out[label] = m
    return out


def family(label: str) -> str:
    """A label without its ``@value``: the points of one sweep."""
    return label.split("@")[0]


def plot(results: Sequence[RunResult], agg: dict[str, dict[str, Estimate]], out: Path
         ) -> list[Path]:
    """Write the plots: latency time series (forecast band, triggers, migrations),
    violations per policy with the jitter floor, violations vs migrations (sweeps joined),
    the reliability diagram of the risk forecasts and the URLLC latency CDFs."""
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
        ax.plot(t, r.latency[:, chain], lw=0.6, label="latency")
        if r.forecast.size and not np.all(np.isnan(r.forecast[:, chain])):
            ax.plot(t + 1, r.forecast[:, chain], lw=0.6, color="purple", label="forecast (t+1)")
        if r.band.size and not np.all(np.isnan(r.band[:, chain])):
            ax.fill_between(t + 1, r.forecast[:, chain], r.band[:, chain], color="purple", alpha=0.2,
                            lw=0, label="95 % band")
        ax.axhline(r.sla_ms[chain], color="red", lw=1, label="SLA")
        trig = [s for s, c in r.triggered if c == r.chains[chain]]
        if trig:
            ax.plot(trig, [r.sla_ms[chain] * 1.9] * len(trig), "v", ms=3, color="black", label="trigger")
        for step, c, _vnf, needed in r.migrations:
            if c == r.chains[chain]:
                ax.axvline(step, color="green" if needed else "orange", lw=0.8, ls="--")
        viol = 100 * float(np.mean(r.latency[:, chain] > r.sla_ms[chain]))
        ax.set_title(f"{r.label}: {r.chains[chain]} (seed {seed}), {viol:.1f} % steps over SLA",
                     fontsize=9)
        ax.set_ylabel("ms")
        ax.set_ylim(0, max(2 * r.sla_ms[chain], 1e-3))
    axes[0, 0].legend(fontsize=7, ncol=6, loc="upper left")
    axes[-1, 0].set_xlabel("step (dashed: migrations of this chain; green needed, orange not; "
                           "triangles: the policy flagged it)")
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
    floor = next((m["urllc_floor_rate"].mean for m in agg.values() if "urllc_floor_rate" in m), None)
    if floor is not None:
        ax.axhline(100 * floor, color="black", lw=0.8, ls=":", label="URLLC jitter floor")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("SLA violations (% of steps), mean ± 95 % CI")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    path = out / "violations.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for fam in dict.fromkeys(family(l) for l in labels):
        pts = sorted((agg[l]["migrations"].mean, 100 * agg[l]["urllc_violation_rate"].mean,
                      agg[l]["migrations"].half_width, 100 * agg[l]["urllc_violation_rate"].half_width)
                     for l in labels if family(l) == fam)
        xs, ys, xe, ye = (np.array(v) for v in zip(*pts))
        ax.errorbar(xs, ys, xerr=np.nan_to_num(xe), yerr=np.nan_to_num(ye), marker="o", ms=4, capsize=2,
                    lw=1, label=fam)
    if floor is not None:
        ax.axhline(100 * floor, color="black", lw=0.8, ls=":", label="jitter floor")
    ax.set_xlabel("migrations per run")
    ax.set_yscale("log")
    ax.set_ylabel("URLLC SLA violations (% of steps, log)")
    ax.set_title("violations vs migrations (sweeps joined; mean ± 95 % CI)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "tradeoff.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    curves = {l: reliability(results, l) for l in dict.fromkeys(r.label for r in results)}
    curves = {l: c for l, c in curves.items() if c}
    if curves:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        for l, c in curves.items():
            ax.plot([a for a, _, _ in c], [b for _, b, _ in c], marker="o", ms=3, lw=1,
                    label=l + (" (open loop)" if l.startswith(("static", "balanced")) else ""))
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_xlabel("predicted P(URLLC violation within the horizon)")
        ax.set_ylabel("observed frequency")
        ax.set_title("reliability of the risk forecasts", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "reliability.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for l in dict.fromkeys(r.label for r in results):
        lat = np.concatenate([r.latency[:, np.array(r.slices) == "urllc"].ravel() for r in results if r.label == l])
        if lat.size:
            v = np.sort(lat)
            ax.plot(v, 1 - np.arange(len(v)) / len(v), lw=1, label=l)
    ax.axvline(1.0, color="red", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("URLLC end-to-end latency (ms)")
    ax.set_ylabel("share of chain-steps above")
    ax.set_title("URLLC latency CCDF, all seeds", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "cdf.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
