"""The Python API that the ``gpm`` CLI is a thin layer over."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpmcli.device import resolve_device
from gpmcli.errors import Interrupted, NumericalError, UsageError
from gpmcli.fields.base import Bundle
from gpmcli.noise import BatchNoise


SEED_MAX = 2**64 - 1


def check_seed(seed: int) -> int:
    """A seed gpm can use: an integer in [0, 2**64 - 1]."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= SEED_MAX:
        raise UsageError(f"--seed must be an integer from 0 to 2**64 - 1, not {seed!r}")
    return int(seed)


def check_finite(params: dict[str, Any] | None) -> None:
    """Refuse NaN or infinite numbers among the sampler parameters before any work."""
    import math

    for k, v in (params or {}).items():
        if isinstance(v, float) and not math.isfinite(v):
            raise UsageError(f"--{k.replace('_', '-')} must be a finite number, not {v}")


def resolve_bundle(model: str, checkpoint: str | None, overrides: dict[str, str] | None, *, device,
                   trust_pickle: bool = False, modules: dict[str, dict[str, Any]] | None = None,
                   needed: tuple[str, ...] = ()) -> Bundle:
    """The bundle for ``--model`` (its registry default unless ``checkpoint``), with role overrides applied.

    ``modules`` maps a role to a network used without converting (``{"module": "FILE.py:Class", "weights": PATH,
    "kwargs": {...}, "meta": {...}}``, see :func:`gpmcli.convert.component_from_module`); it replaces that role.
    When overrides and modules provide every ``needed`` role, no default bundle is loaded.
    """
    from gpmcli.refs import parse_ref
    from gpmcli.registry import Registry

    modules = modules or {}
    both = [r for r in modules if (overrides or {}).get(r)]
    if both:
        raise UsageError(f"--{both[0]} and --module {both[0]}=... both replace the {both[0]}; give one of them")
    given = set(modules) | {r for r, v in (overrides or {}).items() if v}
    reg: Registry | None = None  # read only when a name may need it

    def registry() -> Registry:
        nonlocal reg
        reg = reg or Registry.load()
        return reg

    if checkpoint is None and needed and set(needed) <= given:
        bundle = Bundle("+".join(sorted(given)), {})
    else:
        ref = parse_ref(checkpoint or registry().default_bundle(model), registry=registry())
        bundle = ref.load(device=device, trust_pickle=trust_pickle)
    for role, r in (overrides or {}).items():
        if r:  # any reference form; a bundle gives its component of that role
            bundle.components[role] = parse_ref(r, registry=registry()).component(role, device=device,
                                                                                   trust_pickle=trust_pickle)
    if modules:
        from gpmcli.convert import component_from_module

        for role, m in modules.items():
            bundle.components[role] = component_from_module(m["module"], m["weights"], role, kwargs=m.get("kwargs"),
                                                            meta=m.get("meta"), trust_pickle=trust_pickle,
                                                            device=device)
    return bundle


def with_bundle_defaults(bundle: Bundle, model: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The user's sampler parameters over the registry bundle's defaults for ``model`` (``[bundles.NAME.params.KIND]``
    in registry.toml); a user value of None means "not given"."""
    merged = dict(params or {})
    given = bundle.params.get(model, {})
    for k, v in given.items():
        if merged.get(k) is None:
            merged[k] = v
    return merged


@dataclass
class RunSummary:
    out_dir: Path
    n: int
    nfe: int
    wall: dict[str, float]
    run_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    """Everything ``gpm sample`` was asked for (the arguments of :func:`sample`, checked by :meth:`check`)."""

    model: str
    checkpoint: str | None = None
    overrides: dict[str, str] | None = None
    n: int = 64
    batch_size: int = 64
    seed: int = 0
    params: dict[str, Any] | None = None
    out_dir: str | Path = "samples"
    formats: tuple[str, ...] = ("png", "npz")
    resume: bool = False
    device: str | None = None
    trust_pickle: bool = False
    trajectory: bool = False
    command: str | None = None
    modules: dict[str, dict[str, Any]] | None = None
    precision: str = "fp32"
    compile: bool = False
    clamp: bool = True

    def check(self) -> "RunConfig":
        """Refuse what is wrong before anything is loaded; returns the config with the seed as a plain int."""
        if self.n < 1 or self.batch_size < 1:
            raise UsageError("-n and --batch-size must be positive")
        seed = check_seed(self.seed)
        check_finite(self.params)
        return replace(self, seed=seed)


@dataclass
class RunPlan:
    """What :func:`sample` prepared from a :class:`RunConfig`: the loaded bundle, the built sampler and the open
    output folder, plus what the run accumulates for ``run.json``."""

    config: RunConfig
    device: torch.device
    bundle: Bundle
    sampler: Any  # gpmcli.samplers.Sampler
    target: Any  # np.ndarray of target points (low-dimensional analytic targets) or None
    components: dict[str, dict[str, Any]]
    writer: Any  # gpmcli.output.SampleWriter
    numerics: dict[str, Any]
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    t_load: float = 0.0
    kept: int = 0  # samples already in the folder when the run started (resume)


def sample(model: str | RunConfig, *, progress: Callable[[int, int], None] | None = None,
           **options: Any) -> RunSummary:
    """Draw ``n`` samples with sampler ``model`` and write them to ``out_dir`` (docs/interfaces.md#sampling-output).

    ``model`` is a ``--model`` kind or a whole :class:`RunConfig`; ``options`` are (more) fields of
    :class:`RunConfig` (``checkpoint``, ``n``, ``batch_size``, ``seed``, ``params``, ``out_dir``, ...). Under ``accelerate launch`` the fixed global batches are shared out over the processes
    (:mod:`gpmcli.distributed`); ``precision``/``compile`` change how the networks are evaluated
    (:mod:`gpmcli.precision`). ``clamp`` (default) clips the written samples to the data range and reports in
    ``run.json`` how many values were outside it; ``clamp=False`` writes the raw values. Ctrl-C raises
    :class:`~gpmcli.errors.Interrupted` (exit 130) saying how many samples are kept; ``resume=True`` continues from
    them."""
    from gpmcli import distributed

    bad = set(options) - set(RunConfig.__dataclass_fields__)
    if bad:
        raise TypeError(f"sample() got unexpected keyword argument(s): {', '.join(sorted(bad))}")
    cfg = replace(model, **options) if isinstance(model, RunConfig) else RunConfig(model, **options)
    dist = distributed.context()
    t0 = time.perf_counter()
    plan = None
    try:
        with dist.collective():  # one rank failing to load stops all, with one message
            cfg = cfg.check()
            dev = dist.resolve_device(cfg.device) or resolve_device(cfg.device)
            plan = _prepare(cfg, dev, dist)
        plan.t_load = time.perf_counter() - t0
        with dist.collective():  # after rank 0 prepared the folder (clean-up, manifest), everyone lists what is left
            todo = plan.writer.pending()
        return _run_batches(dist, plan, todo, progress)
    except KeyboardInterrupt:
        if plan is None:
            raise Interrupted(f"interrupted before sampling started; nothing was written to {cfg.out_dir}") from None
        kept = plan.kept + plan.writer.written
        raise Interrupted(f"interrupted: {kept} of {cfg.n} samples are kept in {cfg.out_dir}; run the same command "
                          "with --resume to continue") from None
    finally:
        if plan is not None:
            plan.writer.close()


def _prepare(cfg: RunConfig, dev: torch.device, dist) -> RunPlan:
    """Load the bundle, build the sampler and open the output folder (no collective calls in here)."""
    from gpmcli.output import SampleWriter
    from gpmcli.precision import apply_to_bundle, check_precision, net_chunk
    from gpmcli.samplers import get_kind

    model, params = cfg.model, cfg.params
    check_precision(cfg.precision, dev)
    spec = get_kind(model)
    bundle = resolve_bundle(model, cfg.checkpoint, cfg.overrides, device=dev, trust_pickle=cfg.trust_pickle,
                            modules=cfg.modules, needed=tuple(spec.roles))
    missing = [r for r in spec.roles if r not in bundle]
    if missing:
        raise UsageError(f"--model {model} needs a {' and a '.join(missing)} (bundle {bundle.name!r} has "
                         f"{', '.join(bundle.components) or 'nothing'})")
    given = sorted(k for k, v in (params or {}).items() if v is not None)
    params = with_bundle_defaults(bundle, model, params)
    numerics = apply_to_bundle(bundle, precision=cfg.precision, compile=cfg.compile, batch=min(cfg.batch_size, cfg.n),
                               device=dev, chunk=net_chunk(dev))
    sampler = spec.build(bundle, params)
    ignored = [k for k in given if k not in sampler.resolved]
    if ignored:  # a flag that changes nothing is a mistake the user should hear about (e.g. --steps for ddls)
        flags = ", ".join("--" + k.replace("_", "-") for k in ignored)
        raise UsageError(f"--model {model} does not use {flags} (see `gpm sample --help` for what each option applies to)")
    unused = sorted(set(bundle.params.get(model, {})) - set(sampler.resolved))
    if unused:  # a typo in registry.toml must not pass silently
        raise UsageError(f"bundle {bundle.name!r}: params.{model} sets {', '.join(unused)}, which --model {model} "
                         "does not read")
    target = None
    score = bundle.get("score")
    if score is not None and hasattr(score.module, "sample") and len(sampler.data_shape) == 1:
        target = score.module.sample(2000, torch.Generator().manual_seed(0)).cpu().numpy()
    components = {role: {"ref": c.ref, "sha256": c.sha256, "role": c.role} for role, c in bundle.components.items()}
    for role, c in bundle.components.items():  # a Hub repository converted by gpm: the commit and file it resolved
        resolved = ((c.config or {}).get("provenance") or {}).get("resolved")
        if resolved:
            components[role]["resolved"] = resolved
    identity = {"model": model, "components": {r: c["sha256"] or c["ref"] for r, c in components.items()},
                "seed": cfg.seed, "params": sampler.resolved}
    writer = SampleWriter(cfg.out_dir, cfg.n, sampler.data_shape, sampler.data_range, cfg.formats, cfg.resume,
                          target=target, identity=identity, primary=dist.is_main, clamp=cfg.clamp)
    return RunPlan(cfg, dev, bundle, sampler, target, components, writer, numerics)


def _run_batches(dist, run: RunPlan, todo, progress) -> RunSummary:
    from gpmcli.distributed import fail_hook

    sampler, writer, cfg, dev = run.sampler, run.writer, run.config, run.device
    batch_size, trajectory = cfg.batch_size, cfg.trajectory
    run.kept = cfg.n - len(todo)  # samples already in the folder (resume)
    n_batches = -(-len(todo) // batch_size)  # batch j is todo[j*b:(j+1)*b], cut when it is reached (bounded memory)
    nfe, t_sample, t_write, frames, diagnostics = 0, 0.0, 0.0, [], []
    if progress:
        progress(0, len(todo))
    for k, j in dist.rounds(n_batches):  # batch j of the 1-process run goes to rank j % N
        with dist.collective():  # any rank failing stops every rank after this round
            if j is not None:
                idx = todo[j * batch_size:(j + 1) * batch_size]
                fail_hook(idx)
                t1 = time.perf_counter()
                res = sampler(BatchNoise(cfg.seed, idx, dev), trajectory=trajectory)
                x = res.x.detach().float()
                finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(1)
                if not bool(finite.all()):
                    frac = 1.0 - float(finite.float().mean())
                    raise NumericalError(f"non-finite particles in {frac:.1%} of batch starting at sample {int(idx[0])}; "
                                         "try more steps or a smaller step size", fraction=frac)
                x_np = x.cpu().numpy()
                t2 = time.perf_counter()
                writer.write(idx, x_np)
                t3 = time.perf_counter()
                t_sample += t2 - t1
                t_write += t3 - t2
                nfe = res.nfe
                if res.diagnostics:
                    diagnostics.append({"first_index": int(idx[0]), "n": len(idx), **res.diagnostics})
                if trajectory and res.trajectory:
                    frames.append((j, torch.stack([f.detach().float().cpu() for f in res.trajectory], 0)))
        if progress:
            progress(min(len(todo), (k + 1) * dist.world * batch_size), len(todo))
    mine = {"nfe": nfe, "sample": t_sample, "write": t_write, "diagnostics": diagnostics, "frames": frames}
    ranks = dist.all_gather(mine)
    summary = None
    with dist.collective():  # rank 0 merges and writes run.json once every rank has written its files
        if dist.is_main:
            summary = _finish_run(dist, run, ranks, todo)
    if summary is None:  # other ranks: their own share
        summary = RunSummary(Path(cfg.out_dir), cfg.n, max(r["nfe"] for r in ranks),
                             {"load": run.t_load, "sample": t_sample, "write": t_write, "finish": 0.0},
                             {"rank": dist.rank})
    return summary


def _finish_run(dist, run: RunPlan, ranks, todo) -> RunSummary:
    """Rank 0: the trajectory animation, the manifest and ``run.json`` (:mod:`gpmcli.runrecord`)."""
    from gpmcli.runrecord import run_record

    cfg, writer = run.config, run.writer
    frames = [f for _, f in sorted((f for r in ranks for f in r["frames"]), key=lambda jf: jf[0])]
    t_fin = time.perf_counter()
    if cfg.trajectory and frames:
        from gpmcli.viz import write_trajectory

        write_trajectory(Path(cfg.out_dir), torch.cat(frames, 1).numpy(), run.sampler.data_range, target=run.target)
    files = writer.finalize()
    run_info = run_record(run, ranks, todo, dist.world, files, t_fin)
    writer.write_run_json(run_info)
    return RunSummary(Path(cfg.out_dir), cfg.n, run_info["nfe_per_sample"], run_info["wall_seconds"], run_info)
