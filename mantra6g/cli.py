"""The ``mantra`` command line.

Each subcommand is a thin adapter: it parses flags, calls one public function of the
package that owns the feature and prints the result. :func:`main` is the one place where
failures become messages: user mistakes surface as :class:`~mantra6g.errors.MantraError`
(or an ``OSError`` naming a file) and end with exit 2, bugs with exit 3 and a request
to report them; never a traceback unless ``--debug``. Commands that write files do so
through :mod:`mantra6g.output`, which never overwrites an input or leaves half a file.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from mantra6g import __version__
from mantra6g.errors import MantraError, SpecError, os_error
from mantra6g.source import shorten

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

    return compile_command(args.files, args.target, args.out, args.device, out=sys.stdout, unclaimed=args.unclaimed,
                           tables=args.tables)


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
    p.add_argument("--target", "-t", action="append", default=[], metavar="[DEVICE=]TARGET",
                   help=f"what to emit ({', '.join(TARGETS)}): for every device, or DEVICE=TARGET for a "
                   "device class (as 'place' names it: pdp, smartnic, host) or one device program; "
                   "repeat it, e.g. -t smartnic=tofino -t host=xdp (default: pdp -> bmv2, smartnic "
                   "and host -> xdp)")
    p.add_argument("--out", "-o", default="out/compile", metavar="DIR", help="output directory (default: out/compile)")
    p.add_argument("--device", metavar="NAME", help="only this device program (e.g. smartnic_factory_edge)")
    _add_unclaimed(p, "drop")
    _add_tables(p)
    p.set_defaults(run=_cmd_compile)


def _add_tables(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tables", choices=["declared", "const", "runtime"], default="declared",
                   help="XDP: which tables stay BPF maps updatable at run time: as the NFs declare them "
                   "(firewall rules compiled into code, routes, stations and load-balancer slots in maps), "
                   "none (every table compiled into code) or all (default declared)")


def _add_unclaimed(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--unclaimed", choices=["drop", "pass"], default=default,
                   help="frames no classifier claims: drop them, or pass them to the host's own stack "
                   f"(ARP, ND, management; XDP only) (default {default})")


def _cmd_run(args: argparse.Namespace) -> int:
    from mantra6g.targets.build import run_command

    return run_command(args.files, args.pcap, args.out, args.device, args.port, args.json, out=sys.stdout,
                       unclaimed=args.unclaimed)


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
    _add_unclaimed(p, "drop")
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
    from mantra6g.targets.build import deploy_command, p4runtime_deploy_command

    if args.target == "bmv2":
        if not args.p4runtime:
            raise MantraError("--target bmv2 deploys over P4Runtime: add --p4runtime HOST:PORT")
        return p4runtime_deploy_command(args.files, args.p4runtime, args.device, args.device_id, args.out,
                                        out=sys.stdout)
    if args.p4runtime:
        raise MantraError("--p4runtime is for --target bmv2 (XDP deploys onto --iface)")
    if not args.iface:
        raise MantraError("--target xdp deploys onto an interface: add --iface IF")

    return deploy_command(args.files, args.iface, args.netns, args.device, args.port, args.detach, out=sys.stdout,
                          unclaimed=args.unclaimed, tables=args.tables)


def _add_deploy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="attach a compiled XDP program to a network interface, or bring a P4Runtime switch to a program",
        description="Compile one device program to XDP, load it (the verifier's log is shown if "
        "it is rejected), fill its maps and attach it in native mode, atomically replacing the "
        "program that is there (and only that one). Maps are pinned under "
        "/sys/fs/bpf/mantra/NETNS/IFACE once the program runs; if anything fails, the old "
        "program keeps running with its pinned maps as they were. Frames no classifier claims "
        "go on to the host's stack unless --unclaimed drop. Needs root. With --target bmv2 "
        "--p4runtime HOST:PORT the program is compiled with p4c-bm2-ss and a P4Runtime switch "
        "(simple_switch_grpc) is brought to it: the pipeline is loaded only if the switch runs "
        "another one, and the runtime entries are changed in place (inserted, modified, deleted).",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="service-graph (.sg) files, one site")
    p.add_argument("--target", choices=["xdp", "bmv2"], default="xdp",
                   help="xdp (onto --iface) or bmv2 (over --p4runtime) (default xdp)")
    p.add_argument("--iface", help="xdp: the interface to attach to")
    p.add_argument("--p4runtime", metavar="HOST:PORT", help="bmv2: the P4Runtime server (simple_switch_grpc)")
    p.add_argument("--device-id", type=int, default=1, metavar="N", help="bmv2: the P4Runtime device id (default 1)")
    p.add_argument("--out", "-o", default="out/deploy", metavar="DIR",
                   help="bmv2: where the compiled program is kept (default out/deploy)")
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
    _add_unclaimed(p, "pass")
    _add_tables(p)
    p.set_defaults(run=_cmd_deploy)


def _pairs(specs: Sequence[str], flag: str, example: str) -> list[tuple[str, str]]:
    out = []
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key or not value:
            raise MantraError(f"{flag} {spec}: write KEY=VALUE, e.g. {flag} {example}")
        out.append((key, value))
    return out


def _cmd_export(args: argparse.Namespace) -> int:
    from mantra6g.export import ExportOptions, export_command

    interfaces = []
    for port, iface in _pairs(args.interface, "--interface", "1=eth1"):
        if not port.isdigit() or int(port) > 511:
            raise MantraError(f"--interface {port}={iface}: the port is a DP-IR port number 0..511")
        interfaces.append((int(port), iface))
    options = ExportOptions(
        namespace=args.namespace,
        node_selector=tuple(_pairs(args.node_selector, "--node-selector", "mantra6g.io/edge=true")),
        interfaces=tuple(interfaces),
        image=args.image,
        tag=args.tag,
        p4_url=args.p4_url,
        customer_id=args.customer_id,
        area=args.area,
        bytecode_path=args.bytecode_path,
    )
    return export_command(args.files, args.to, args.out, options, args.device, out=sys.stdout)


def _add_export(sub: argparse._SubParsersAction) -> None:
    from mantra6g.export import ENGINES

    p = sub.add_parser(
        "export",
        help="write a site's manifests for IML (P4 on Kubernetes), bpfman (XDP) or Oakestra (SLAs)",
        description="Compile the site as `mantra compile` does and write one folder of manifests and "
        "artefacts for an engine: --to iml (NetworkFunctions with their P4 and table entries, "
        "BMv2Targets, Applications, ServiceChains), --to bpfman (ClusterBpfApplications, bytecode "
        "images, map fill), --to oakestra (an SLA with the slices' latency constraints). Every "
        "manifest is checked against its engine's schema first. See docs/export.md.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="service-graph (.sg) files, one site")
    p.add_argument("--to", required=True, choices=ENGINES, help="the engine")
    p.add_argument("--out", "-o", metavar="DIR", help="output folder, replaced whole (default: out/export/ENGINE)")
    p.add_argument("--device", metavar="NAME", help="only this device program")
    p.add_argument("--namespace", default="default",
                   help="Kubernetes namespace (iml, bpfman's map fill) or Oakestra application namespace")
    p.add_argument("--node-selector", action="append", default=[], metavar="KEY=VALUE",
                   help="bpfman: load on nodes with this label (repeat)")
    p.add_argument("--interface", action="append", default=[], metavar="PORT=IFACE",
                   help="bpfman: DP-IR port PORT is node interface IFACE; the program attaches to each "
                   "(repeat; default: the node's primary interface is port 0)")
    p.add_argument("--image", metavar="REGISTRY/REPO",
                   help="where the images the manifests name are pushed (default: localhost/mantra)")
    p.add_argument("--tag", default="latest", help="image tag (default: latest)")
    p.add_argument("--bytecode-path", metavar="DIR", help="bpfman: the objects are in DIR on the nodes, not in images")
    p.add_argument("--p4-url", metavar="URL", help="iml: spec.p4File is URL/NAME.p4 (serve p4/ there) instead of base64")
    p.add_argument("--customer-id", default="mantra", help="oakestra: the SLA's customerID (default: mantra)")
    p.add_argument("--area", help="oakestra: the area latency constraints hold in (default: the program's site)")
    p.set_defaults(run=_cmd_export)


# Subcommands in the order `mantra --help` lists them. A feature adds its `_add_*` here.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_check, _add_compile, _add_run, _add_deploy, _add_simulate]
_SUBCOMMANDS.append(_add_verify)
_SUBCOMMANDS.append(_add_export)


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

    from mantra6g import output
    from mantra6g.orchestrator.policy import PolicyError, PolicySpec
    from mantra6g.testbed.run import TESTBED_FORECASTERS, compare, run_policy, summary_table, table, train
    from mantra6g.testbed.scenario import load_site

    from dataclasses import replace

    out = Path(args.out)
    if args.duration <= 0:
        raise MantraError(f"--duration {args.duration:g}: give the seconds of traffic to send, more than 0")
    if getattr(args, "seeds", 1) < 1:
        raise MantraError(f"--seeds {args.seeds}: give at least 1 seed")
    paths = args.scenarios or [None]
    output.check_dir(out, output.Inputs([p for p in paths if p]), "--out")  # before the site is built
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
    _add_common(parser)
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on every (sub)command, and each one's name for its messages."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on an unexpected failure, show the Python traceback")
    parser.set_defaults(prog=parser.prog)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in dict.fromkeys(action.choices.values()):
                _add_common(sp)


REPORT = ("this is a bug in mantra, not a problem with your input: please report it to the Mantra "
          "maintainers with this command line and its input files (add --debug for the traceback)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every failure ends here: a user's mistake (a
    :class:`~mantra6g.errors.MantraError`, or a file the system would not read or write) is
    ``mantra CMD: error: ...`` and exit 2 (spec errors keep their ``file:line:col`` form);
    anything else is a bug: a short message asking for a report, exit 3, and the
    traceback only with ``--debug``."""
    args = build_parser().parse_args(argv)
    run: Command = args.run
    prog: str = args.prog
    debug = getattr(args, "debug", False)
    try:
        return run(args)
    except SpecError as exc:
        _debug_traceback(debug)
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except MantraError as exc:
        _debug_traceback(debug)
        print(f"{prog}: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (| head): stop quietly, and keep Python's
        # exit-time flush from complaining about the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file or directory the system refused: the user's to fix
        _debug_traceback(debug)
        print(f"{prog}: error: {os_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last resort: never a raw traceback
        if debug:
            traceback.print_exc()
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        print(f"{prog}: internal error: {shorten(what, 300)}\n{prog}: {REPORT}", file=sys.stderr)
        return 3


def _debug_traceback(debug: bool) -> None:
    if debug:
        traceback.print_exc()
