"""The Python API that the ``gpm`` CLI is a thin layer over."""

from __future__ import annotations

import platform
import sys
import time
from datetime import datetime, timezone
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpmcli.device import device_name, resolve_device  # noqa: F401  (resolve_device: part of the API)
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


def versions() -> dict[str, str]:
    import importlib.metadata as md

    from gpmcli.version import __version__

    out = {"python": platform.python_version(), "gpm": __version__}
    for pkg in ("torch", "numpy", "safetensors", "huggingface-hub", "accelerate", "pillow", "typer"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def sample(model: str, *, checkpoint: str | None = None, overrides: dict[str, str] | None = None, n: int = 64,
           batch_size: int = 64, seed: int = 0, params: dict[str, Any] | None = None, out_dir: str | Path = "samples",
           formats: tuple[str, ...] = ("png", "npz"), resume: bool = False, device: str | None = None,
           trust_pickle: bool = False, trajectory: bool = False, command: str | None = None,
           progress: Callable[[int, int], None] | None = None,
           modules: dict[str, dict[str, Any]] | None = None, precision: str = "fp32",
           compile: bool = False, clamp: bool = True) -> RunSummary:
    """Draw ``n`` samples with sampler ``model`` and write them to ``out_dir`` (INTERFACES.md "Sampling output").

    Under ``accelerate launch`` the fixed global batches are shared out over the processes (:mod:`gpmcli.distributed`);
    ``precision``/``compile`` change how the networks are evaluated (:mod:`gpmcli.precision`). ``clamp`` (default)
    clips the written samples to the data range and reports in ``run.json`` how many values were outside it;
    ``clamp=False`` writes the raw values. Ctrl-C raises :class:`~gpmcli.errors.Interrupted` (exit 130) saying how
    many samples are kept; ``resume=True`` continues from them."""
    from gpmcli import distributed

    dist = distributed.context()
    t0 = time.perf_counter()
    run = None
    try:
        with dist.collective():  # one rank failing to load stops all, with one message
            if n < 1 or batch_size < 1:
                raise UsageError("-n and --batch-size must be positive")
            seed = check_seed(seed)
            check_finite(params)
            dev = dist.resolve_device(device) or resolve_device(device)
            run = _prepare(model, checkpoint, overrides, n, seed, params, out_dir, formats, resume, dev, trust_pickle,
                           modules, precision, compile, batch_size, dist, clamp)
        run.t_load = time.perf_counter() - t0
        with dist.collective():  # after rank 0 prepared the folder (clean-up, manifest), everyone lists what is left
            todo = run.writer.pending()
        return _run_batches(dist, run, todo, n, batch_size, seed, out_dir, resume, dev, trajectory, command,
                            progress)
    except KeyboardInterrupt:
        if run is None:
            raise Interrupted(f"interrupted before sampling started; nothing was written to {out_dir}") from None
        kept = run.kept + run.writer.written
        raise Interrupted(f"interrupted: {kept} of {n} samples are kept in {out_dir}; run the same command with "
                          "--resume to continue") from None
    finally:
        if run is not None:
            run.writer.close()


def _prepare(model, checkpoint, overrides, n, seed, params, out_dir, formats, resume, dev, trust_pickle, modules,
             precision, compile, batch_size, dist, clamp=True):
    """Load the bundle, build the sampler and open the output folder (no collective calls in here)."""
    from types import SimpleNamespace

    from gpmcli.output import SampleWriter
    from gpmcli.precision import apply_to_bundle, check_precision, net_chunk
    from gpmcli.samplers import get_kind

    check_precision(precision, dev)
    spec = get_kind(model)
    bundle = resolve_bundle(model, checkpoint, overrides, device=dev, trust_pickle=trust_pickle, modules=modules,
                            needed=tuple(spec.roles))
    missing = [r for r in spec.roles if r not in bundle]
    if missing:
        raise UsageError(f"--model {model} needs a {' and a '.join(missing)} (bundle {bundle.name!r} has "
                         f"{', '.join(bundle.components) or 'nothing'})")
    given = sorted(k for k, v in (params or {}).items() if v is not None)
    params = with_bundle_defaults(bundle, model, params)
    numerics = apply_to_bundle(bundle, precision=precision, compile=compile, batch=min(batch_size, n), device=dev,
                               chunk=net_chunk(dev))
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
                "seed": seed, "params": sampler.resolved}
    writer = SampleWriter(out_dir, n, sampler.data_shape, sampler.data_range, formats, resume, target=target,
                          identity=identity, primary=dist.is_main, clamp=clamp)
    return SimpleNamespace(model=model, bundle=bundle, sampler=sampler, target=target, components=components,
                           writer=writer, numerics=numerics, started=datetime.now(timezone.utc), t_load=0.0, kept=0)


def _run_batches(dist, run, todo, n, batch_size, seed, out_dir, resume, dev, trajectory, command,
                 progress) -> RunSummary:
    from gpmcli.distributed import fail_hook

    sampler, writer = run.sampler, run.writer
    run.kept = n - len(todo)  # samples already in the folder (resume)
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
                res = sampler(BatchNoise(seed, idx, dev), trajectory=trajectory)
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
            summary = _finish_run(dist, run, ranks, todo, n, batch_size, seed, out_dir, resume, dev, trajectory,
                                  command)
    if summary is None:  # other ranks: their own share
        summary = RunSummary(Path(out_dir), n, max(r["nfe"] for r in ranks),
                             {"load": run.t_load, "sample": t_sample, "write": t_write, "finish": 0.0},
                             {"rank": dist.rank})
    return summary


def _finish_run(dist, run, ranks, todo, n, batch_size, seed, out_dir, resume, dev, trajectory,
                command) -> RunSummary:
    sampler, writer, target = run.sampler, run.writer, run.target
    nfe = max(r["nfe"] for r in ranks)
    t_sample = max(r["sample"] for r in ranks)
    t_write = max(r["write"] for r in ranks)
    diagnostics = sorted((d for r in ranks for d in r["diagnostics"]), key=lambda d: d["first_index"])
    frames = [f for _, f in sorted((f for r in ranks for f in r["frames"]), key=lambda jf: jf[0])]
    if not len(todo) and writer.previous:  # resumed a finished run: nothing sampled now
        nfe = int(writer.previous.get("nfe_per_sample") or 0)

    t_fin = time.perf_counter()
    if trajectory and frames:
        from gpmcli.viz import write_trajectory

        write_trajectory(Path(out_dir), torch.cat(frames, 1).numpy(), sampler.data_range, target=target)
    files = writer.finalize()
    wall = {"load": run.t_load, "sample": t_sample, "write": t_write, "finish": time.perf_counter() - t_fin}
    run_info = {
        "status": "complete",
        "command": command or " ".join(sys.argv),
        "model": run.model,
        "bundle": run.bundle.name,
        "components": run.components,
        "n": n, "batch_size": batch_size, "seed": seed,
        "seeding": "sample i draws all of its noise from a torch.Generator seeded with "
                   "gpmcli.noise.sample_seed(seed, i)",
        "params": sampler.resolved,
        "nfe_per_sample": nfe,
        "data_shape": list(sampler.data_shape),
        "data_range": list(sampler.data_range) if sampler.data_range else None,
        "formats": sorted(writer.formats),
        "device": str(dev), "device_name": device_name(dev), "dtype": "float32", **run.numerics,
        "processes": dist.world,
        "sharding": "global batch j (of --batch-size samples, in index order) on rank j % processes",
        "wall_seconds_per_rank": [{"sample": r["sample"], "write": r["write"]} for r in ranks],
        "resumed": resume, "generated_this_run": len(todo),
        "started_at": run.started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": wall,
        "diagnostics": diagnostics,
        "out_of_range": writer.out_of_range(),
        "versions": versions(),
        "files": files,
    }
    writer.write_run_json(run_info)
    return RunSummary(Path(out_dir), n, nfe, wall, run_info)
