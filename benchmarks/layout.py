"""NCHW against channels_last for the shipped MNIST conv networks, measured in one run.

    python benchmarks/layout.py [--threads 2] [--batch 16] [--train-batch 128] [--repeat 5]

For the score UNet and the DiffFlow discriminator of `mnist-diffflow` it times, in both memory layouts and
alternately (so drift hits both alike): a forward pass at the sampler's CPU chunk (`--batch`, 16 rows as
`gpmcli.precision.net_chunk` uses), the discriminator's input gradient (what DiffFlow needs per level), and one fp32
and one bf16 Adam training step at `--train-batch`. Each layout is timed twice, alternately, `--repeat` // 2 calls
each time; prints the best call's seconds per layout and NCHW / channels_last.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _best(fn, repeat: int) -> float:
    fn()  # warm-up (oneDNN primitive creation)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--train-batch", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from gpmcli.fields.discriminator import input_grad
    from gpmcli.refs import parse_ref

    nets = {role: parse_ref("mnist-diffflow").component(role, device="cpu").module.eval()
            for role in ("score", "discriminator")}
    g = torch.Generator().manual_seed(0)
    x, xt = torch.randn(a.batch, 1, 32, 32, generator=g), torch.randn(a.train_batch, 1, 32, 32, generator=g)
    sig, sigt = torch.full((a.batch,), 1.0), torch.full((a.train_batch,), 1.0)
    print(f"{a.threads} threads, torch {torch.__version__}")
    print(f"{'network':<14} {'operation':<34} {'NCHW s':>9} {'ch-last s':>10} {'ratio':>6}")
    for role, net in nets.items():
        ops = {f"forward, batch {a.batch}": None, f"train step fp32, batch {a.train_batch}": "fp32",
               f"train step bf16, batch {a.train_batch}": "bf16"}
        if role == "discriminator":
            ops = {f"forward, batch {a.batch}": None, f"input gradient, batch {a.batch}": "grad", **{
                k: v for k, v in ops.items() if v}}
        for label, what in ops.items():
            best = {}
            layouts = ("nchw", "cl") * 2
            for layout in layouts:
                m = copy.deepcopy(net)
                if layout == "cl":
                    m.to(memory_format=torch.channels_last)
                if what is None:
                    def fn(m=m):
                        with torch.no_grad():
                            m(x, sig)
                elif what == "grad":
                    m.requires_grad_(False)

                    def fn(m=m):
                        input_grad(lambda z: m(z, sig).reshape(-1), x)
                else:
                    m.train().requires_grad_(True)
                    opt = torch.optim.Adam(m.parameters(), 1e-5)

                    def fn(m=m, opt=opt, what=what):
                        bf16 = what == "bf16"
                        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                            loss = m(xt, sigt).float().square().mean()
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                t = _best(fn, max(1, a.repeat // 2))
                best[layout] = min(best.get(layout, t), t)
            print(f"{role:<14} {label:<34} {best['nchw']:>9.3f} {best['cl']:>10.3f} {best['nchw'] / best['cl']:>5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
