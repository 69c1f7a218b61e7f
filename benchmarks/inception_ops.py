"""Where the FID Inception network spends its time on CPU: operator split (torch profiler) of the reference layout
(batch norms unfolded, NCHW, out-of-place ReLU: what pytorch-fid runs) and of gpm's inference network, and the cost of
an out-of-place vs in-place ReLU on one large activation.

    python benchmarks/inception_ops.py [--batch 8] [--threads 2]

Random weights in the FID layout (timing does not depend on the weight values). Each network runs once to warm up,
then twice under the profiler; the table lists the operators' share of the profiled CPU time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    args = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from gpmcli.nets.inception import InceptionV3FID
    from tests.test_inception import _random_fid_state_dict

    torch.set_num_threads(args.threads)
    print(f"# {time.strftime('%Y-%m-%d %H:%M %Z')}, torch {torch.__version__}, {args.threads} threads, batch "
          f"{args.batch}, load average {[round(v, 2) for v in os.getloadavg()]}")
    sd = _random_fid_state_dict(0)
    x = torch.rand(args.batch, 3, 299, 299) * 2 - 1
    groups = {"aten::mkldnn_convolution": "convolution", "aten::convolution_overrideable": "convolution",
              "aten::_convolution": None, "aten::clamp_min": "relu", "aten::clamp_min_": "relu",
              "aten::native_batch_norm": "batch norm", "aten::cat": "cat", "aten::avg_pool2d": "pools",
              "aten::max_pool2d_with_indices": "pools", "aten::max_pool2d": "pools"}
    for label, fused in (("reference layout (BN unfolded, NCHW)", False), ("gpm inference network", True)):
        net = InceptionV3FID()
        net.load_fid_state_dict(sd)
        net.eval()
        inp = x
        if fused:
            net = net.fuse().to(memory_format=torch.channels_last)
            inp = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            net(inp)
            t0 = time.perf_counter()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                net(inp)
                net(inp)
            wall = (time.perf_counter() - t0) / 2
        share = defaultdict(float)
        total = 0.0
        for e in prof.key_averages():
            total += e.self_cpu_time_total
            g = groups.get(e.key, "other")
            if g:
                share[g] += e.self_cpu_time_total
        print(f"{label}: {wall:.2f} s per batch under the profiler; " + ", ".join(
            f"{k} {v / total:.1%}" for k, v in sorted(share.items(), key=lambda kv: -kv[1])))

    a = torch.randn(8, 64, 147, 147).contiguous(memory_format=torch.channels_last)  # 44 MB, as after Conv2d_2b
    for name, f in (("out-of-place relu", lambda: torch.relu(a)), ("in-place relu", lambda: torch.relu_(a))):
        f()
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        print(f"{name} on a {a.numel() * 4 / 1e6:.0f} MB activation: {min(ts) * 1e3:.1f} ms (best of 5)")


if __name__ == "__main__":
    main()
