"""``gpm models list|pull|info|verify`` (a thin layer over :mod:`gpmcli.models`)."""

from __future__ import annotations

import json
import sys

import typer
from rich.text import Text

from gpmcli.cli.base import app, info as say, out_console, state
from gpmcli.errors import DownloadError, IntegrityError

models_app = typer.Typer(help="List, download, inspect and verify checkpoints.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _p(text: str) -> None:
    out_console.print(text, markup=False, soft_wrap=True)


def _quiet_hub() -> None:
    if state.verbosity < 0:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@models_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """Bundles in checkpoints/registry.toml and what is in the local cache."""
    from rich.table import Table

    from gpmcli import models

    data = models.list_models()
    if as_json:
        return _json(data)
    t = Table(title=Text(f"bundles ({data['registry']})"), title_justify="left")
    for col in ("bundle", "default for", "components", "available", "description"):
        t.add_column(col)
    for b in data["bundles"]:
        comps = "\n".join(f"{r}: {c['ref']}" + (f" ({c['convert']}, {c['pin']})" if c.get("convert") else "")
                          for r, c in b["components"].items())
        avail = "\n".join("yes" if c["available"] else "no (pull)" for c in b["components"].values())
        desc = b["description"] + "".join(f"\n{k}: {b[k]}" for k in ("source", "license", "published") if b.get(k))
        t.add_row(*map(Text, (b["name"], ", ".join(b["default_for"]) or "-", comps, avail, desc)))
    out_console.print(t)
    c = Table(title=Text(f"Hub cache ({data['cache_dir']})"), title_justify="left")
    for col in ("repository", "revision", "refs", "gpm checkpoints", "size"):
        c.add_column(col)
    for repo in data["cache"]:
        for rev in repo["revisions"]:
            c.add_row(*map(Text, (repo["repo_id"], rev["commit"][:12], ", ".join(rev["refs"]) or "-",
                                  ", ".join(rev["gpm_checkpoints"]) or "-", _size(rev["size_on_disk"]))))
    if data["cache"]:
        out_console.print(c)
    else:
        _p(f"Hub cache ({data['cache_dir']}): empty")


@models_app.command()
def pull(ref: str = typer.Argument(..., help="Bundle name or \\[hf:]ORG/NAME\\[@REV]\\[/SUBFOLDER]."),
         force: bool = typer.Option(False, "--force", help="Download again even if cached."),
         as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """Download a bundle or repository (pinned revision, sha256 verified)."""
    from gpmcli import models

    _quiet_hub()
    recs = models.pull(ref, force=force)
    if as_json:
        return _json(recs)
    for r in recs:
        if r["source"] == "toy":
            _p(f"{r.get('role') or ''}: {r['ref']} (analytic, nothing to download)")
        elif r.get("note"):
            _p(f"{r['ref']}: {r['note']}")
        elif "files" in r:
            _p(f"{r['ref']}: {len(r['files'])} files verified in {r['path']}")
        else:
            _p(f"{r.get('role') or ''}: {r['ref']} -> {r['path']} (sha256 {r['sha256'][:12]}… ok)")


@models_app.command()
def info(ref: str = typer.Argument(..., help="Bundle name, checkpoint dir, weight file or hf:REPO\\[@REV]."),
         as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
         trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow weight files that run pickled code "
                                           "(only for files from a source you trust).")):
    """Describe a checkpoint, bundle or foreign weight file (tensors, shapes, dtypes, parameter count)."""
    from rich.table import Table

    from gpmcli import models

    _quiet_hub()
    data = models.info(ref, trust_pickle=trust_pickle)
    if as_json:
        return _json(data)
    kind = data["kind"]
    if kind == "bundle":
        _p(f"bundle {data['name']}: {data['description']}")
        if data["default_for"]:
            _p(f"default for --model {', '.join(data['default_for'])}")
        for role, c in data["components"].items():
            extra = f", {c['parameters']:,} parameters" if c.get("parameters") else ""
            arch = f" arch {c['arch'].get('name')}" if isinstance(c.get("arch"), dict) else ""
            _p(f"  {role}: {c['ref']}{arch}{extra}" + (f" ({c['error']})" if c.get("error") else ""))
        return
    if kind == "toy":
        _p(f"{data['ref']}: analytic Gaussian mixture, {data['components']} components in "
                          f"{data['dim']} dimensions (exact score at every noise level)")
        return
    if kind == "checkpoint":
        cfg = data["config"]
        _p(f"{data['ref']}: gpm checkpoint, role {data['role']}, arch {data['arch']}")
        shown = {k: v for k, v in cfg.items() if k not in ("arch", "role", "gpm_format")}
        for k, v in shown.items():
            _p(f"  {k}: {json.dumps(v, default=str)}")
        _p(f"  sha256: {data['sha256']}")
    else:
        _p(f"{data['path']}: {data['format']} weight file, sha256 {data['sha256']}")
    t = Table()
    for col in ("tensor", "shape", "dtype", "parameters"):
        t.add_column(col, justify="right" if col == "parameters" else "left")
    for row in data["tensors"]:
        t.add_row(*map(Text, (row["name"], "x".join(map(str, row["shape"])) or "scalar", row["dtype"],
                              f"{row['numel']:,}")))
    out_console.print(t)
    for k, v in (data.get("other") or {}).items():
        _p(f"  (non-tensor) {k} = {v}")
    _p(f"{len(data['tensors'])} tensors, {data['parameters']:,} parameters")


@models_app.command()
def verify(ref: str = typer.Argument(..., help="Bundle name (or hf: reference, checkpoint dir)."),
           as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """Offline integrity check of cached files against their pinned sha256 (exit 4 on a mismatch, 3 if missing)."""
    from gpmcli import models

    recs = models.verify(ref)
    if as_json:
        _json(recs)
    else:
        for r in recs:
            label = f"{r['role']}: " if r.get("role") else ""
            detail = f" ({r['detail']})" if r.get("detail") else ""
            _p(f"{label}{r['ref']}: {r['status']}{detail}")
    bad = [r for r in recs if r["status"] == "mismatch"]
    if bad:
        raise IntegrityError(f"{len(bad)} of {len(recs)} files failed verification: " + "; ".join(
            r["ref"] for r in bad))
    missing = [r for r in recs if r["status"] == "missing"]
    if missing:
        raise DownloadError(f"{len(missing)} of {len(recs)} not in the cache: run `gpm models pull {ref}`")
    say(f"{len(recs)} verified")
