"""The ``mantra`` command line.

Each subcommand is a thin adapter: it parses flags, calls one public function of the
package that owns the feature and prints the result. User mistakes surface as
:class:`~mantra6g.errors.MantraError` and end with its exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mantra6g import __version__
from mantra6g.errors import MantraError

Command = Callable[[argparse.Namespace], int]


def _cmd_check(args: argparse.Namespace) -> int:
    from mantra6g.synth.frontend import check_command

    return check_command(args.files, as_json=args.json, out=sys.stdout)


def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="parse and check service-graph files",
        description="Parse and check .sg files; print a summary, or the ServiceGraph IR with --json. "
        "Files given together are checked as one site (tenant names and ids must not clash).",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="service-graph (.sg) files")
    p.add_argument("--json", action="store_true", help="print the ServiceGraph IR as JSON")
    p.set_defaults(run=_cmd_check)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from mantra6g.orchestrator.simulate import simulate_command

    return simulate_command(args.scenario, seeds=args.seeds, policies=args.policy,
                            forecasters=args.forecaster, out=args.out, jobs=args.jobs,
                            steps=args.steps, as_json=args.json, markdown=args.markdown,
                            first_seed=args.first_seed, start=args.start)


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="run the forecast-driven orchestrator in the discrete-time simulator",
        description="Simulate an edge site (built-in defaults, or a scenario YAML) under each "
        "policy on seeds 1..N and report SLA violations, latency, migrations, forecast error "
        "and inference time as a table, JSON and PNG plots.",
    )
    p.add_argument("scenario", nargs="?", metavar="SCENARIO", help="scenario YAML (default: built-in)")
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="evaluation seeds 1..N (default 3)")
    p.add_argument("--first-seed", type=int, default=1, metavar="S",
                   help="first seed (default 1); 100000 and up are validation seeds for tuning")
    p.add_argument("--policy", default="static,reactive,predictive",
                   help="comma-separated: static, balanced, reactive[@f], reactive-smooth[@f], "
                   "predictive[@cost], global[@cost], predictive-paper, global-paper; @f: trigger at "
                   "f x SLA, @cost: the migration cost in violating steps (default static,reactive,predictive)")
    p.add_argument("--forecaster", default="lstm,holt",
                   help="comma-separated forecasters for the forecast policies: last, ewma, holt, "
                   "arima, lstm (default lstm,holt)")
    p.add_argument("--out", default="out/simulate", metavar="DIR",
                   help="directory for results.json, PNG plots and cached LSTM weights "
                   "(default out/simulate)")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="parallel processes (default 2)")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="override the scenario's number of steps")
    p.add_argument("--start", choices=["home", "balanced"], default=None,
                   help="where every policy starts (overrides the scenario's policy.start)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--markdown", metavar="FILE", default=None,
                   help="also write a Markdown report (e.g. docs/results.md)")
    p.set_defaults(run=_cmd_simulate)


def _cmd_compile(args: argparse.Namespace) -> int:
    from mantra6g.targets.build import compile_command

    return compile_command(args.files, args.target, args.out, args.device, out=sys.stdout)


def _add_compile(sub: argparse._SubParsersAction) -> None:
    from mantra6g.targets.build import TARGETS

    p = sub.add_parser(
        "compile",
        help="compile service graphs into data-plane programs",
        description="Lower the graphs to one DP-IR program per device (by placement) and emit "
        "each for the target: P4-16 for BMv2 (v1model) or Tofino (TNA) with its control-plane "
        "entries, or only the DP-IR (JSON and text, always written too).",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="service-graph (.sg) files, one site")
    p.add_argument("--target", "-t", required=True, choices=TARGETS, help="what to emit")
    p.add_argument("--out", "-o", default="out/compile", metavar="DIR", help="output directory (default: out/compile)")
    p.add_argument("--device", metavar="NAME", help="only this device program (e.g. smartnic_factory_edge)")
    p.set_defaults(run=_cmd_compile)


def _cmd_run(args: argparse.Namespace) -> int:
    from mantra6g.targets.build import run_command

    return run_command(args.files, args.pcap, args.out, args.device, args.port, args.json, out=sys.stdout)


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="push a pcap through a compiled program in the reference interpreter",
        description="Compile the graphs to DP-IR and run every packet of a pcap through one "
        "device program in the interpreter (packet times are its clock; state carries over "
        "between packets). Forwarded packets are written to a pcap.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="service-graph (.sg) files, one site")
    p.add_argument("--pcap", required=True, metavar="IN", help="input pcap")
    p.add_argument("--out", "-o", metavar="OUT", help="output pcap (default: IN with .out.pcap)")
    p.add_argument("--device", metavar="NAME", help="the device program, when the site has several")
    p.add_argument("--port", type=int, default=0, help="ingress port of every packet (default 0)")
    p.add_argument("--json", action="store_true", help="print the per-packet results as JSON")
    p.set_defaults(run=_cmd_run)


def _cmd_verify(args: argparse.Namespace) -> int:
    from mantra6g.verify.cli import verify_command

    return verify_command(args.files, args.target, args.property, args.json, args.out, out=sys.stdout)


def _add_verify(sub: argparse._SubParsersAction) -> None:
    from mantra6g.verify.cli import TARGETS
    from mantra6g.verify.properties import PROPERTIES

    p = sub.add_parser(
        "verify",
        help="merge tenants per device and prove isolation and equivalence (Z3)",
        description="Compile each tenant's graphs alone, merge the tenants of each device into one "
        "program and prove classifier disjointness, isolation, equivalence to each tenant's program, "
        "header validity and the target's resource budgets, or print a counterexample packet "
        "(also written as a pcap). Proofs are cached in DIR: adding a tenant re-checks only what it "
        "can affect. Exit 0: proven; 1: counterexamples; 2: input errors.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="service-graph (.sg) files, one site")
    p.add_argument("--target", "-t", required=True, choices=TARGETS, help="the device target (resource budgets)")
    p.add_argument("--property", action="append", choices=PROPERTIES, metavar="NAME",
                   help=f"check only this property (repeatable): {', '.join(PROPERTIES)}")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", "-o", default="out/verify", metavar="DIR",
                   help="pcaps, report.json and the proof cache (default: out/verify)")
    p.set_defaults(run=_cmd_verify)


def _cmd_deploy(args: argparse.Namespace) -> int:
    from mantra6g.targets.build import deploy_command

    return deploy_command(args.files, args.iface, args.netns, args.device, args.port, args.detach, out=sys.stdout)


def _add_deploy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="attach a compiled XDP program to a network interface",
        description="Compile one device program to XDP, load it (the verifier's log is shown if "
        "it is rejected), fill its maps and attach it in native mode, atomically replacing the "
        "program already there; if anything fails before the attach, the old program keeps "
        "running. Maps are pinned under /sys/fs/bpf/mantra/NETNS/IFACE. Needs root.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="service-graph (.sg) files, one site")
    p.add_argument("--target", choices=["xdp"], default="xdp", help="only xdp deploys from here")
    p.add_argument("--iface", required=True, help="the interface to attach to")
    p.add_argument("--netns", metavar="NS", help="the network namespace the interface is in")
    p.add_argument("--device", metavar="NAME", help="the device program, when the site has several")
    p.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="N=IFACE",
        help="DP-IR port N is this interface (repeat; default: --iface is port 0)",
    )
    p.add_argument("--detach", action="store_true", help="remove the XDP program from --iface")
    p.set_defaults(run=_cmd_deploy)


# Subcommands in the order `mantra --help` lists them. A feature adds its `_add_*` here.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_check, _add_compile, _add_run, _add_deploy, _add_simulate]
_SUBCOMMANDS.append(_add_verify)


def _add_testbed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("testbed", help="run the orchestrator's policies on a real XDP site in Mininet (root)",
                       description="Build the edge site in Mininet (LinuxBridge switches, tbf links), place the "
                       "URLLC chain with the orchestrator and deploy it as XDP, send seeded traffic and let a "
                       "policy drive it; compare runs every policy on every scenario and seed; train fits the "
                       "forecasters on training runs.")
    tsub = p.add_subparsers(dest="testbed_cmd", required=True)
    for name in ("run", "compare", "train"):
        q = tsub.add_parser(name)
        q.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                       help="site scenario YAML (default: the built-in site, as in examples/testbed/default.yaml)")
        q.add_argument("--duration", type=float, default=20.0 if name == "run" else 40.0, metavar="S",
                       help="seconds of traffic per run (default 20 for run, 40 otherwise)")
        q.add_argument("--out", default="out/testbed", metavar="DIR", help="results directory (default out/testbed)")
        q.add_argument("--train-seeds", type=int, default=2, metavar="N",
                       help="training seeds per scenario for the forecasters (default 2; one fewer calibrates)")
        if name != "train":
            q.add_argument("--slow-path", action="store_true",
                           help="no warm standbys: every migration builds, attaches, copies, switches, drains "
                           "(the ablation; scenarios are reported as NAME-slowpath)")
        if name == "run":
            q.add_argument("--policy", default="predictive", metavar="POLICY",
                           help="static, balanced, reactive[@f], reactive-smooth, predictive[@cost], predictive-paper")
            q.add_argument("--forecaster", default="lstm", help="for forecast policies: holt, lstm, lstm-nocontext")
            q.add_argument("--seed", type=int, default=1)
        elif name == "compare":
            q.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds 1..N (default 1)")
            q.add_argument("--policies", default="static,reactive,predictive", metavar="LIST",
                           help="comma-separated policies (default static,reactive,predictive)")
            q.add_argument("--forecasters", default="lstm", metavar="LIST",
                           help="comma-separated forecasters for the forecast policies (default lstm)")
            q.add_argument("--markdown", metavar="FILE", default=None,
                           help="also write the report into FILE (its generated block; text around it is kept)")
            q.add_argument("--resume", action="store_true",
                           help="keep the runs an interrupted compare into the same --out finished (same site, "
                           "seed, duration, migration path); run only the others")
    p.set_defaults(run=_cmd_testbed)


def _cmd_testbed(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mantra6g.orchestrator.policy import PolicyError, PolicySpec
    from mantra6g.testbed.run import TESTBED_FORECASTERS, compare, run_policy, summary_table, table, train
    from mantra6g.testbed.scenario import load_site

    from dataclasses import replace

    out = Path(args.out)
    paths = args.scenarios or [None]
    scenarios = [(Path(p).stem if p else "default", load_site(p)) for p in paths]
    if getattr(args, "slow_path", False):
        scenarios = [(f"{n}-slowpath", replace(c, standby=False)) for n, c in scenarios]
    if len({n for n, _ in scenarios}) != len(scenarios):
        raise MantraError("two scenario files have the same name; the report names scenarios by file name")
    if args.testbed_cmd == "train":
        models = train([c for _, c in scenarios], out / "models", args.train_seeds, args.duration)
        print(f"trained {', '.join(models.forecasters)} on {args.train_seeds} seed(s) per scenario; "
              f"models in {out / 'models'}")
        return 0
    if args.testbed_cmd == "run":
        if len(scenarios) != 1:
            raise MantraError("testbed run takes one scenario; use testbed compare for several")
        name, config = scenarios[0]
        try:
            spec = PolicySpec.parse(args.policy)
        except PolicyError as exc:
            raise MantraError(f"--policy: {exc}") from None
        needs = spec.kind.needs_forecaster
        models = train([config], out / "models", args.train_seeds, 40.0) if needs else None
        rows = [run_policy(args.policy, args.duration, args.seed, out / f"{args.policy}-{args.seed}", config=config,
                           models=models, forecaster=args.forecaster, scenario=name)]
        print(table(rows))
        return 0
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    forecasters = [f.strip() for f in args.forecasters.split(",") if f.strip()]
    try:
        policies = [str(PolicySpec.parse(p)) for p in policies]
    except PolicyError as exc:
        raise MantraError(f"--policies: {exc}") from None
    bad = [f for f in forecasters if f not in TESTBED_FORECASTERS]
    if not policies or bad or not forecasters:
        raise MantraError(f"--forecasters: unknown {', '.join(bad) or '(none given)'}; choose from "
                          f"{', '.join(TESTBED_FORECASTERS)}" if bad or not forecasters else "--policies: none given")
    rows = compare(scenarios, policies, list(range(1, args.seeds + 1)), args.duration, out, forecasters,
                   args.train_seeds, resume=args.resume)
    if args.markdown:
        import json
        import shlex

        from mantra6g.orchestrator.report import write_markdown
        from mantra6g.testbed.run import report

        argv = [*args.scenarios, "--policies", ",".join(policies), "--forecasters", ",".join(forecasters),
                "--seeds", str(args.seeds), "--duration", f"{args.duration:g}", "--train-seeds", str(args.train_seeds),
                *(["--slow-path"] if args.slow_path else []), *(["--resume"] if args.resume else []),
                "--out", args.out, "--markdown", args.markdown]
        doc = json.loads((out / "results.json").read_text())
        names = ", ".join(n for n, _ in scenarios)
        write_markdown(Path(args.markdown), f"testbed compare {names}",
                       f"### Testbed: {names}\n\n" + report(rows, doc["machine"], doc["elapsed_s"],
                                                      "sudo .venv/bin/mantra testbed compare " + shlex.join(argv),
                                                      reused=doc.get("reused", 0)))
    print(summary_table(rows))
    print()
    print(table(rows))
    print(f"wrote {out}/results.md, {out}/results.json and the plots {out}/*-cdf.png, {out}/*-timeseries.png")
    return 0


_SUBCOMMANDS.append(_add_testbed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mantra",
        description="Mantra: service graphs to verified P4/XDP data planes, and a "
        "forecast-driven 6G edge orchestrator.",
    )
    parser.add_argument("--version", action="version", version=f"mantra {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except MantraError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
