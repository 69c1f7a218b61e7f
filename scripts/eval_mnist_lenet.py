"""LeNet-5 class coverage and confidence of MNIST samples from any gpm sampler (the MNIST acceptance check).

    python scripts/eval_mnist_lenet.py --model gan --checkpoint mnist-gan
    python scripts/eval_mnist_lenet.py --model gan --checkpoint mnist-wgangp --json

Protocol: N = 1,000 samples with seed 0 (``--model`` kind, ``--checkpoint`` bundle/directory, sampler options as
``--param key=value``), mapped from the data range to [0, 1], resized to 32x32 (bilinear) when they are 28x28, and
classified by the csinva LeNet-5 (bundle ``mnist-lenet``). Reported: class histogram, classes present, mean
max-probability. Pass: all 10 classes present and mean max-probability >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpmcli.api import resolve_bundle, with_bundle_defaults  # noqa: E402
from gpmcli.noise import BatchNoise  # noqa: E402
from gpmcli.registry import Registry, load_bundle  # noqa: E402
from gpmcli.samplers import get_kind  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_toy import parse_params  # noqa: E402


def evaluate(model: str, checkpoint: str | None, n: int = 1000, params: dict | None = None, seed: int = 0,
             batch: int = 250) -> dict:
    lenet = load_bundle("mnist-lenet", registry=Registry.load())["classifier"].module.eval()
    bundle = resolve_bundle(model, checkpoint, None, device="cpu")
    sampler = get_kind(model).build(bundle, with_bundle_defaults(bundle, model, params))  # as gpm sample does
    x = torch.cat([sampler(BatchNoise(seed, range(i, min(n, i + batch)))).x for i in range(0, n, batch)])
    lo, hi = sampler.data_range or (-1.0, 1.0)
    x = ((x.reshape(n, 1, *x.shape[-2:]) - lo) / (hi - lo)).clamp(0, 1)
    if x.shape[-1] != 32:
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    with torch.no_grad():
        p = torch.cat([lenet(x[i:i + batch]).exp() for i in range(0, n, batch)])
    mp, c = p.max(1)
    hist = torch.bincount(c, minlength=10).tolist()
    present = sum(h > 0 for h in hist)
    return {"model": model, "checkpoint": checkpoint, "n": n, "seed": seed, "params": params or {},
            "classes_present": present, "class_histogram": hist, "mean_max_prob": round(float(mp.mean()), 4),
            "pass": present == 10 and float(mp.mean()) >= 0.8}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--param", action="append", default=[], help="sampler option key=value (numbers parsed)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    params = parse_params(a.param)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    res = evaluate(a.model, a.checkpoint, a.n, params, a.seed)
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{a.model} {a.checkpoint or '(default)'}: {res['classes_present']} classes {res['class_histogram']}, "
              f"mean max-prob {res['mean_max_prob']:.4f} ({'pass' if res['pass'] else 'FAIL'})")
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
