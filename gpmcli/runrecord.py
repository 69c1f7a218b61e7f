"""``run.json``: what a finished ``gpm sample`` run records (docs/interfaces.md#sampling-output)."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import Any

from gpmcli.device import device_name
from gpmcli.version import versions

SEEDING = "sample i draws all of its noise from a torch.Generator seeded with gpmcli.noise.sample_seed(seed, i)"
SHARDING = "global batch j (of --batch-size samples, in index order) on rank j % processes"


def run_record(run, ranks: list[dict[str, Any]], todo, world: int, files, t_finish_start: float) -> dict[str, Any]:
    """The ``run.json`` of a :class:`gpmcli.api.RunPlan` whose ranks reported ``ranks`` (NFE, wall times,
    diagnostics); ``todo`` are the indices sampled in this run, ``files`` what the writer finalized."""
    cfg, sampler, writer, dev = run.config, run.sampler, run.writer, run.device
    nfe = max(r["nfe"] for r in ranks)
    if not len(todo) and writer.previous:  # resumed a finished run: nothing sampled now
        nfe = int(writer.previous.get("nfe_per_sample") or 0)
    wall = {"load": run.t_load, "sample": max(r["sample"] for r in ranks), "write": max(r["write"] for r in ranks),
            "finish": time.perf_counter() - t_finish_start}
    return {
        "status": "complete",
        "command": cfg.command or " ".join(sys.argv),
        "model": cfg.model,
        "bundle": run.bundle.name,
        "components": run.components,
        "n": cfg.n, "batch_size": cfg.batch_size, "seed": cfg.seed,
        "seeding": SEEDING,
        "params": sampler.resolved,
        "nfe_per_sample": nfe,
        "data_shape": list(sampler.data_shape),
        "data_range": list(sampler.data_range) if sampler.data_range else None,
        "formats": sorted(writer.formats),
        "device": str(dev), "device_name": device_name(dev), "dtype": "float32", **run.numerics,
        "processes": world,
        "sharding": SHARDING,
        "wall_seconds_per_rank": [{"sample": r["sample"], "write": r["write"]} for r in ranks],
        "resumed": cfg.resume, "generated_this_run": len(todo),
        "started_at": run.started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": wall,
        "diagnostics": sorted((d for r in ranks for d in r["diagnostics"]), key=lambda d: d["first_index"]),
        "out_of_range": writer.out_of_range(),
        "versions": versions(),
        "files": files,
    }
