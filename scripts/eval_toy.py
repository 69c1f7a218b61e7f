"""Sliced Wasserstein distance of a toy model's samples to its analytic target, against the two-sample noise floor.

    python scripts/eval_toy.py --model gan --checkpoint toy-pentagon-gan --target pentagon
    python scripts/eval_toy.py --model discr-flow --checkpoint toy-pentagon-discr-flow --json

Protocol (the toy bundles' model cards quote it): N = 5,000 samples with seed 0 from the sampler (``--model`` kind,
``--checkpoint`` bundle/directory, extra sampler options as ``--param key=value``); SW_2 with 256 random projections
(projection seed 7) to N fresh exact target samples (seed 99). Noise floor: mean SW_2 between two independent exact
sample sets of size N over 3 seed pairs. Pass: ratio = SW / floor <= 2.

``--fresh-sets K`` (K > 1) compares with the mean SW_2 to K fresh exact sets (seeds 99, 98, ...; projection seeds 7,
8, ...) instead of one: against one set the ratio of *exact* samples spreads over roughly 0.7-1.6 from seed to seed, so
K = 3 separates a sampler's error from the reference set's own noise. K = 3 is the default (the model cards and the
README's toy table, ``scripts/toy_table.py``, quote it); ``--fresh-sets 1`` gives the older single-set figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpmcli.api import resolve_bundle, with_bundle_defaults  # noqa: E402
from gpmcli.fields.toy import load_toy  # noqa: E402
from gpmcli.metrics.sliced import sliced_wasserstein  # noqa: E402
from gpmcli.noise import BatchNoise  # noqa: E402
from gpmcli.samplers import get_kind  # noqa: E402


def noise_floor(gm, n: int, n_proj: int = 256, pairs: int = 3) -> float:
    sw = [sliced_wasserstein(gm.sample(n, torch.Generator().manual_seed(10 + k)),
                             gm.sample(n, torch.Generator().manual_seed(20 + k)), n_proj,
                             torch.Generator().manual_seed(k)) for k in range(pairs)]
    return float(sum(sw) / len(sw))


def evaluate(model: str, checkpoint: str | None, target: str, n: int = 5000, params: dict | None = None,
             seed: int = 0, batch: int = 5000, n_proj: int = 256, overrides: dict | None = None,
             fresh_sets: int = 3) -> dict:
    gm = load_toy(target)
    bundle = resolve_bundle(model, checkpoint, overrides, device="cpu")
    sampler = get_kind(model).build(bundle, with_bundle_defaults(bundle, model, params))  # as gpm sample does
    t0 = time.perf_counter()
    xs = [sampler(BatchNoise(seed, range(i, min(n, i + batch)))).x for i in range(0, n, batch)]
    wall = time.perf_counter() - t0
    x = torch.cat(xs)
    per_set = [sliced_wasserstein(x, gm.sample(n, torch.Generator().manual_seed(99 - j)), n_proj,
                                  torch.Generator().manual_seed(7 + j)) for j in range(fresh_sets)]
    sw = sum(per_set) / fresh_sets
    floor = noise_floor(gm, n, n_proj)
    return {"model": model, "checkpoint": checkpoint, "target": f"toy:{target}", "params": params or {}, "seed": seed,
            "n": n, "n_proj": n_proj, "fresh_sets": fresh_sets, "sw": round(sw, 5), "noise_floor": round(floor, 5), "ratio": round(sw / floor, 3),
            "pass": sw <= 2 * floor, "sample_wall_s": round(wall, 2),
            **({"ratio_per_set": [round(v / floor, 3) for v in per_set]} if fresh_sets > 1 else {})}


def parse_params(pairs: list[str]) -> dict:
    """``--param key=value`` options as a dict (values parsed as JSON where they parse: numbers, booleans)."""
    params = {}
    for kv in pairs:
        k, v = kv.split("=", 1)
        try:
            params[k] = json.loads(v)
        except ValueError:
            params[k] = v
    return params


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--target", default="pentagon")
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--param", action="append", default=[], help="sampler option key=value (numbers parsed)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--fresh-sets", type=int, default=3, help="mean SW to this many fresh exact sets (default 3)")
    for role in ("score", "discriminator", "generator"):
        ap.add_argument(f"--{role}", default=None, help=f"replace the bundle's {role} (as gpm sample --{role})")
    a = ap.parse_args(argv)
    params = parse_params(a.param)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    overrides = {r: getattr(a, r) for r in ("score", "discriminator", "generator") if getattr(a, r)}
    res = evaluate(a.model, a.checkpoint, a.target, a.n, params, a.seed, overrides=overrides or None,
                   fresh_sets=max(1, a.fresh_sets))
    if overrides:
        res.update(overrides)
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{a.model} {a.checkpoint or '(default)'} on toy:{a.target}: SW {res['sw']:.4f}, noise floor "
              f"{res['noise_floor']:.4f}, ratio {res['ratio']:.2f} ({'pass' if res['pass'] else 'FAIL'} at <= 2)")
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
