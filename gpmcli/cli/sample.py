"""``gpm sample``."""

from __future__ import annotations

import inspect
import json
import shlex
import sys
import typing
from pathlib import Path
from typing import List, Optional

import typer

from gpmcli.cli.base import app, info, out_console, progress_bar, warn
from gpmcli.errors import UsageError
from gpmcli.samplers.options import SAMPLER_PANEL, SamplerOption, cli_options

_IO = "Output"


def _dest(opt: SamplerOption) -> str:
    """The Python parameter name of a sampler option's flag (``lambda`` is a keyword)."""
    return "opt_" + opt.name


def _with_sampler_flags(func):
    """Insert one typer option per declared sampler option (:data:`gpmcli.samplers.options.OPTIONS`, in order) into
    ``func``'s signature, after ``--seed``: the flags, their help and their types come from the declarations."""
    sig = inspect.signature(func)
    hints = typing.get_type_hints(func)
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    at = [p.name for p in params].index("seed") + 1
    added = []
    for o in cli_options():
        decl = o.flag + (f"/--no-{o.flag[2:]}" if o.type is bool else "")
        opt = typer.Option(None, decl, help=o.help or None, rich_help_panel=SAMPLER_PANEL)
        added.append(inspect.Parameter(_dest(o), inspect.Parameter.KEYWORD_ONLY, default=opt,
                                       annotation=Optional[o.type]))
        hints[_dest(o)] = Optional[o.type]
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]
    func.__signature__ = sig.replace(parameters=params[:at] + added + params[at:])
    func.__annotations__ = hints
    return func


def sample(
    model: str = typer.Option(..., "--model", "-m", help="Sampler kind: edm, pc, ode, ancestral, langevin, "
                              "discr-flow, diffflow, gan, score-gan, ddls."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", "-c", help="Bundle name, checkpoint dir, "
                                             "hf:ORG/NAME\\[@REV]\\[/SUB] or toy:NAME|FILE.json (default: the kind's bundle)."),
    score: Optional[str] = typer.Option(None, "--score", help="Replace the bundle's score network."),
    discriminator: Optional[str] = typer.Option(None, "--discriminator", help="Replace the bundle's discriminator."),
    generator: Optional[str] = typer.Option(None, "--generator", help="Replace the bundle's generator."),
    n: int = typer.Option(64, "-n", "--num-samples", help="Number of samples."),
    batch_size: int = typer.Option(64, "-b", "--batch-size", help="Samples per batch (does not change the samples)."),
    seed: int = typer.Option(0, "--seed", help="Global seed; sample i draws from its own stream seeded from (seed, i)."),
    module: Optional[List[str]] = typer.Option(None, "--module", help="[ROLE=]FILE.py:Class for a network gpm has not converted (repeat per role).", rich_help_panel="Bring your own network"),
    weights: Optional[List[str]] = typer.Option(None, "--weights", help="[ROLE=]PATH: weights for --module.", rich_help_panel="Bring your own network"),
    kwargs: Optional[List[str]] = typer.Option(None, "--kwargs", help="[ROLE=]JSON: constructor kwargs for --module.", rich_help_panel="Bring your own network"),
    meta: Optional[List[str]] = typer.Option(None, "--meta", help='[ROLE=]JSON: role data as in config.json, e.g. score={"parameterization": {"type": "edm"}, "data": {"shape": [2]}}.', rich_help_panel="Bring your own network"),
    role: Optional[str] = typer.Option(None, "--role", help="Role of --module/--weights/--kwargs/--meta given without ROLE=.", rich_help_panel="Bring your own network"),
    out: Path = typer.Option(Path("samples"), "-o", "--out", help="Output directory.", rich_help_panel=_IO),
    fmt: str = typer.Option("png,npz", "--format", help="png,npz | npz | png.", rich_help_panel=_IO),
    resume: bool = typer.Option(False, "--resume", help="Skip samples already written in --out.", rich_help_panel=_IO),
    trajectory: bool = typer.Option(False, "--trajectory", help="Also write an animation of the flow.", rich_help_panel=_IO),
    device: Optional[str] = typer.Option(None, "--device", help="cpu|cuda|cuda:N|mps (default: best available).", rich_help_panel=_IO),
    precision: str = typer.Option("fp32", "--precision", help="fp32|bf16|fp16: autocast of the network calls (particles stay fp32; fp16 on CUDA only).", rich_help_panel=_IO),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the networks for the fixed batch size (first batch pays the compilation).", rich_help_panel=_IO),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow weight files that run pickled code.", rich_help_panel=_IO),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON.", rich_help_panel=_IO),
    raw: bool = typer.Option(False, "--raw", help="Write the raw values to samples.npz instead of clipping them to "
                             "the data range (PNGs are always clipped; run.json reports the fraction outside).",
                             rich_help_panel=_IO),
    **sampler_options,
):
    """Draw samples with one of the particle-model samplers and write them to --out."""
    from gpmcli import api

    formats = tuple(f.strip() for f in fmt.split(",") if f.strip())
    if not formats or set(formats) - {"png", "npz"}:
        raise UsageError("--format takes png, npz or png,npz")
    if n < 1 or batch_size < 1:
        raise UsageError("-n and --batch-size must be positive")
    api.check_seed(seed)
    params = {o.name: sampler_options.get(_dest(o)) for o in cli_options()}
    api.check_finite(params)
    lam = params["lambda"]
    if lam is not None and lam < 0:
        raise UsageError("--lambda must be >= 0")
    if lam is not None and lam > 1:
        warn(f"--lambda {lam} > 1 is the analytic continuation of DiffFlow (more noise than score dynamics, negative "
             "discriminator weight)")
    from gpmcli.convert import module_options

    modules = module_options(module, weights, kwargs, meta, role)
    from gpmcli.samplers import check_params

    check_params(model, params)  # a flag the kind does not declare, a choice or a range: exit 2 before any loading
    overrides = {"score": score, "discriminator": discriminator, "generator": generator}
    command = "gpm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    from gpmcli.distributed import is_main_process

    bar = progress_bar(n, f"sampling {model}", enabled=is_main_process())
    task = None

    def on_progress(done: int, total: int) -> None:  # the bar appears once loading and checks are done
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("sample", total=total)
        bar.update(task, completed=done, total=total)

    try:
        config = api.RunConfig(model, checkpoint=checkpoint, overrides=overrides, n=n, batch_size=batch_size,
                               seed=seed, params=params, out_dir=out, formats=formats, resume=resume, device=device,
                               trust_pickle=trust_pickle, trajectory=trajectory, command=command, modules=modules,
                               precision=precision, compile=compile_, clamp=not raw)
        summary = api.sample(config, progress=on_progress)
    finally:
        if task is not None:
            bar.stop()
    if not is_main_process():  # rank 0 reports for the whole run
        return
    if (precision != "fp32" or compile_) and not summary.run_info.get("networks", [None]):
        warn("--precision/--compile changed nothing: this bundle has no networks (analytic toy: targets)")
    if as_json:
        out_console.print_json(json.dumps(summary.run_info, default=str))
    else:
        w = summary.wall
        procs = summary.run_info.get("processes", 1)
        info(f"wrote {n} samples to {out}/ (NFE {summary.nfe} per sample, sampling {w['sample']:.2f}s, "
             f"total {sum(w.values()):.2f}s" + (f", {procs} processes" if procs > 1 else "") + ")")
        oor = summary.run_info.get("out_of_range") or {}
        if oor.get("values"):
            info(f"{oor['fraction']:.2%} of the values were outside the data range {oor['range']}: "
                 + ("kept as they are (--raw)" if not oor["clamped"] else "clipped to it (--raw keeps them)"))


app.command(name="sample", no_args_is_help=False)(_with_sampler_flags(sample))
