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
                            steps=args.steps, as_json=args.json, markdown=args.markdown)


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
    p.add_argument("--policy", default="static,reactive,predictive",
                   help="comma-separated: static, reactive, predictive, global "
                   "(default static,reactive,predictive)")
    p.add_argument("--forecaster", default="lstm,quantile",
                   help="comma-separated forecasters for predictive policies: last, ewma, holt, "
                   "arima, lstm, quantile (default lstm,quantile)")
    p.add_argument("--out", default="out/simulate", metavar="DIR",
                   help="directory for results.json, PNG plots and cached LSTM weights "
                   "(default out/simulate)")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="parallel processes (default 2)")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="override the scenario's number of steps")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--markdown", metavar="FILE", default=None,
                   help="also write a Markdown report (e.g. docs/results.md)")
    p.set_defaults(run=_cmd_simulate)


# Subcommands in the order `mantra --help` lists them. A feature adds its `_add_*` here.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_check, _add_simulate]


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
