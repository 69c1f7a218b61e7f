"""Do the samples depend on ``--batch-size``? Max abs difference between runs that differ only in ``-b``.

    python scripts/batch_size_check.py [-n 16] [--model edm] [--checkpoint mnist-edm] [--steps default 4]
        [--batch-sizes 1 5 16] [--chunk N]

For each ``--steps`` value, samples ``-n`` images once per batch size (same seed, raw values: no clipping) and prints
the max abs difference of each run against the run with the largest batch. ``--chunk`` sets ``GPM_NET_CHUNK`` (rows
per network evaluation); ``--chunk 0`` evaluates the network on the whole batch, as gpm did before fixed chunks.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=16)
    ap.add_argument("--model", default="edm")
    ap.add_argument("--checkpoint", default="mnist-edm")
    ap.add_argument("--steps", nargs="+", default=["default", "4"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 5, 16])
    ap.add_argument("--chunk", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.chunk is not None:
        os.environ["GPM_NET_CHUNK"] = str(args.chunk)
    import numpy as np
    import torch

    from gpmcli import api

    torch.set_num_threads(args.threads)
    sizes = sorted(args.batch_sizes)
    with tempfile.TemporaryDirectory() as tmp:
        for steps in args.steps:
            runs = {}
            for b in sizes:
                out = Path(tmp) / f"s{steps}-b{b}"
                api.sample(args.model, checkpoint=args.checkpoint, n=args.n, batch_size=b, seed=0, out_dir=out,
                           params={"steps": None if steps == "default" else int(steps)}, formats=("npz",),
                           device="cpu", clamp=False)
                runs[b] = np.load(out / "samples.npz")["samples"]
            ref = sizes[-1]
            for b in sizes[:-1]:
                d = float(np.abs(runs[b] - runs[ref]).max())
                print(f"{args.checkpoint} --steps {steps}: -b {b} vs -b {ref}: max abs diff {d:.3g}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
