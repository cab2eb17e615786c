"""``mantra export``: a site's manifests for the engines operators run beyond one
machine — MANTRA-6G's IML (P4 on BMv2, Kubernetes), bpfman (XDP, Kubernetes) and
Oakestra (placement with latency SLAs).

    bundle = export_site(["site.sg"], "iml", ExportOptions(namespace="edge"))
    write_folder(Path("out/export/iml"), bundle.files)

Everything comes from what ``mantra compile`` produces (the device programs, their P4
and XDP output and entries) and from the ServiceGraph IR (slices, SLAs, graphs); each
manifest is validated against its engine's schema before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from mantra6g import output
from mantra6g.export.site import ENGINES, Bundle, ExportError, ExportOptions, Site, write_folder

__all__ = ["ENGINES", "Bundle", "ExportError", "ExportOptions", "Site", "export_command", "export_site", "write_folder"]


def _engine(name: str) -> Callable[[Site, ExportOptions], Bundle]:
    if name == "iml":
        from mantra6g.export import iml

        return iml.export
    if name == "bpfman":
        from mantra6g.export import bpfman

        return bpfman.export
    if name == "oakestra":
        from mantra6g.export import oakestra

        return oakestra.export
    raise ExportError(f"--to {name}: choose one of {', '.join(ENGINES)}")


def export_site(files: Sequence[str], engine: str, options: ExportOptions, device: str | None = None) -> Bundle:
    """The bundle of ``engine``'s manifests and artefacts for the site in ``files``."""
    export = _engine(engine)
    return export(Site.load(files, device), options)


def export_command(files: Sequence[str], engine: str, out_dir: str | None, options: ExportOptions,
                   device: str | None, out: TextIO) -> int:
    """``mantra export``: write one folder for the site and say what is in it."""
    target = Path(out_dir or f"out/export/{engine}")
    inputs = output.Inputs(files)
    output.check_replaceable(target, inputs, "--out")  # before the work: the folder is replaced whole
    bundle = export_site(files, engine, options, device)
    write_folder(target, bundle.files, inputs)
    for line in bundle.summary:
        out.write(line + "\n")
    out.write(f"wrote {len(bundle.files)} files to {target}/ (see {target}/README.md)\n")
    return 0
