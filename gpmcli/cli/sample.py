"""``gpm sample``."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from gpmcli.cli.base import app, info, out_console, progress_bar, warn
from gpmcli.errors import UsageError

_SAMPLER = "Sampler options (used by the kinds they apply to)"
_IO = "Output"


@app.command(no_args_is_help=False)
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
    seed: int = typer.Option(0, "--seed", help="Global seed; sample i uses its own generator seeded from (seed, i)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Number of steps (kind default if omitted).", rich_help_panel=_SAMPLER),
    lam: Optional[float] = typer.Option(None, "--lambda", help="DiffFlow noise weight l >= 0 (0: deterministic, 1: score dynamics).", rich_help_panel=_SAMPLER),
    family: Optional[str] = typer.Option(None, "--family", help="DiffFlow family: ve|kl.", rich_help_panel=_SAMPLER),
    sde: Optional[str] = typer.Option(None, "--sde", help="ve|vp|subvp for pc/ode/ancestral.", rich_help_panel=_SAMPLER),
    predictor: Optional[str] = typer.Option(None, "--predictor", help="euler-maruyama|reverse-diffusion|ancestral|none.", rich_help_panel=_SAMPLER),
    corrector: Optional[str] = typer.Option(None, "--corrector", help="langevin|ald|none.", rich_help_panel=_SAMPLER),
    snr: Optional[float] = typer.Option(None, "--snr", help="Corrector target signal-to-noise ratio.", rich_help_panel=_SAMPLER),
    corrector_steps: Optional[int] = typer.Option(None, "--corrector-steps", rich_help_panel=_SAMPLER),
    pc_order: Optional[str] = typer.Option(None, "--pc-order", help="corrector-first (reference code) | predictor-first (paper).", rich_help_panel=_SAMPLER),
    snr_norm: Optional[str] = typer.Option(None, "--snr-norm", help="sample (default) | batch.", rich_help_panel=_SAMPLER),
    rtol: Optional[float] = typer.Option(None, "--rtol", rich_help_panel=_SAMPLER),
    atol: Optional[float] = typer.Option(None, "--atol", rich_help_panel=_SAMPLER),
    solver: Optional[str] = typer.Option(None, "--solver", help="EDM: heun|euler.", rich_help_panel=_SAMPLER),
    rho: Optional[float] = typer.Option(None, "--rho", rich_help_panel=_SAMPLER),
    sigma_min: Optional[float] = typer.Option(None, "--sigma-min", rich_help_panel=_SAMPLER),
    sigma_max: Optional[float] = typer.Option(None, "--sigma-max", rich_help_panel=_SAMPLER),
    churn: Optional[float] = typer.Option(None, "--churn", help="EDM S_churn.", rich_help_panel=_SAMPLER),
    s_min: Optional[float] = typer.Option(None, "--s-min", rich_help_panel=_SAMPLER),
    s_max: Optional[float] = typer.Option(None, "--s-max", rich_help_panel=_SAMPLER),
    s_noise: Optional[float] = typer.Option(None, "--s-noise", rich_help_panel=_SAMPLER),
    step_lr: Optional[float] = typer.Option(None, "--step-lr", help="Annealed Langevin step size.", rich_help_panel=_SAMPLER),
    eta: Optional[float] = typer.Option(None, "--eta", help="Discriminator Flow step size (must match training).", rich_help_panel=_SAMPLER),
    ddls_step: Optional[float] = typer.Option(None, "--ddls-step", help="DDLS step size epsilon.", rich_help_panel=_SAMPLER),
    ddls_steps: Optional[int] = typer.Option(None, "--ddls-steps", help="DDLS number of steps.", rich_help_panel=_SAMPLER),
    mala: Optional[bool] = typer.Option(None, "--mala/--no-mala", rich_help_panel=_SAMPLER,
                                        help="DDLS: Metropolis-adjusted chain (reports the acceptance rate); "
                                             "default: the bundle's setting, else off."),
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
):
    """Draw samples with one of the particle-model samplers and write them to --out."""
    from gpmcli import api

    formats = tuple(f.strip() for f in fmt.split(",") if f.strip())
    if not formats or set(formats) - {"png", "npz"}:
        raise UsageError("--format takes png, npz or png,npz")
    if n < 1 or batch_size < 1:
        raise UsageError("-n and --batch-size must be positive")
    api.check_seed(seed)
    api.check_finite({"lambda": lam})
    if lam is not None and lam < 0:
        raise UsageError("--lambda must be >= 0")
    if lam is not None and lam > 1:
        warn(f"--lambda {lam} > 1 is the analytic continuation of DiffFlow (more noise than score dynamics, negative "
             "discriminator weight)")
    from gpmcli.convert import module_options

    modules = module_options(module, weights, kwargs, meta, role)
    params = {
        "steps": steps, "lambda": lam, "family": family, "sde": sde, "predictor": predictor, "corrector": corrector,
        "snr": snr, "corrector_steps": corrector_steps, "pc_order": pc_order, "snr_norm": snr_norm, "rtol": rtol,
        "atol": atol, "solver": solver, "rho": rho, "sigma_min": sigma_min, "sigma_max": sigma_max, "churn": churn,
        "s_min": s_min, "s_max": s_max, "s_noise": s_noise, "step_lr": step_lr, "eta": eta, "ddls_step": ddls_step,
        "ddls_steps": ddls_steps, "mala": mala,
    }
    api.check_finite(params)
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
