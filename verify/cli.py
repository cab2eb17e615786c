"""``mantra verify``: merge the site's tenants per device and prove the merge, or show
the packets that break it.

Exit status: 0 when every property is proven, 1 when a counterexample was found, 2 on
input errors (the CLI's :class:`~mantra6g.errors.MantraError` handling).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from mantra6g import output
from mantra6g.errors import MantraError
from mantra6g.synth import frontend
from mantra6g.synth.merge import merge_site
from mantra6g.verify.counterexample import write_pcap
from mantra6g.verify.properties import PROPERTIES
from mantra6g.verify.site import DeviceReport, ProofCache, verify_merged

TARGETS = ("bmv2", "tofino", "xdp")


def _progress(err: TextIO):
    start = time.perf_counter()

    def show(line: str) -> None:
        print(f"[{time.perf_counter() - start:7.2f} s] {line}", file=err, flush=True)

    return show


def render(report: DeviceReport, pcap: Path | None) -> str:
    """The report as text: one line per property, then each counterexample."""
    out = [f"device {report.device} ({report.target}): tenants {', '.join(report.tenants)}"]
    for r in report.results:
        status = "proven" if r.proven else "VIOLATED"
        extra = " (cached)" if r.cached else f" {r.seconds:.3f} s"
        note = f"  — {r.note}" if r.note else ""
        out.append(f"  {r.property:<12} {r.scope:<28} {status:<8}{extra}{note}")
    n = 0
    for r in report.results:
        c = r.counterexample
        if c is None:
            continue
        n += 1
        out.append(f"  counterexample {n}: {c.property} — tenant {c.tenant}"
                   + (f", other tenant {c.other}" if c.other else "")
                   + (f", table {c.table}" if c.table else "") + (f", field {c.field}" if c.field else ""))
        out.append(f"    {c.detail}")
        out.append(f"    packet: {c.summary()}  (ingress port {c.ingress_port}, {len(c.packet)} bytes)")
        if pcap is not None:
            out.append(f"    written to {pcap} (frame {n})")
    cached = sum(r.cached for r in report.results)
    verdict = "PROVEN" if report.proven else "NOT PROVEN"
    out.append(f"  {verdict}: {len(report.results)} results, {len(report.checked)} checked now, {cached} reused from the "
               "proof cache" + (f" (re-checked: {', '.join(report.checked)})" if cached and report.checked else ""))
    return "\n".join(out)


def verify_command(files: Sequence[str], target: str, properties: Sequence[str] | None, as_json: bool,
                   out_dir: str, out: TextIO, err: TextIO | None = None) -> int:
    """Verify every device program of the site; write pcaps and a JSON report to ``out_dir``."""
    err = err or sys.stderr
    if target not in TARGETS:
        raise MantraError(f"unknown target '{target}'; choose one of {', '.join(TARGETS)}")
    for p in properties or ():
        if p not in PROPERTIES:
            raise MantraError(f"unknown property '{p}'; choose from {', '.join(PROPERTIES)}")
    inputs = output.Inputs(files)
    output.check_dir(out_dir, inputs, "--out")  # before the proofs, not after them
    merged = merge_site(frontend.load(files))
    if not merged:
        raise MantraError("the files declare no graphs: nothing to verify")
    show = _progress(err)
    # Everything lands in out_dir together, the proof caches included: an interrupted
    # run leaves the previous report, pcaps and caches as they were.
    with output.StagedDir(out_dir, inputs, "--out") as stage:
        reports, texts = _verify_all(merged, target, properties, stage, Path(out_dir), show)
        stage.write_text("report.json", json.dumps([r.to_json() for r in reports], indent=2) + "\n")
    if as_json:
        print(json.dumps([r.to_json() for r in reports], indent=2), file=out)
    else:
        print("\n\n".join(texts), file=out)
    return 0 if all(r.proven for r in reports) else 1


def _verify_all(merged, target: str, properties: Sequence[str] | None, stage: output.StagedDir, directory: Path,
                show) -> tuple[list[DeviceReport], list[str]]:
    """Each merged device proven, its files written into ``stage``; the reports and their
    text (naming ``directory``, where the files end up)."""
    reports = []
    texts = []
    for m in merged:
        show(f"{m.program.name}: {len(m.tenants)} tenant(s) on {target}")
        cache_name = f"{m.program.name}.{target}.proofs.json"
        if (directory / cache_name).is_file():  # the stage starts from the cache in place
            shutil.copyfile(directory / cache_name, stage.file(cache_name))
        cache = ProofCache(stage.file(cache_name))
        report = verify_merged(m, target, properties, cache, show)
        cexs = [r.counterexample for r in report.results if r.counterexample is not None]
        pcap = directory / f"{m.program.name}.counterexamples.pcap" if cexs else None
        if pcap is not None:
            write_pcap(stage.file(pcap.name), cexs)
        stage.write_text(f"{m.program.name}.merged.dpir.json", m.program.to_json() + "\n")
        reports.append(report)
        texts.append(render(report, pcap))
    return reports, texts


__all__ = ["TARGETS", "render", "verify_command"]
