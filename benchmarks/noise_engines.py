"""Per-draw cost of the two per-sample noise engines (one generator per sample; batched Philox) on one device.

    python benchmarks/noise_engines.py [--device cpu|cuda] [--threads 1] [--batch 256 2000]

Times ``BatchNoise(...).randn(1, 32, 32)`` (one MNIST-sized draw per sample) for each engine and batch size, mean of
20 draws after 3 warm-ups, and prints the ratio. 2026-12-04, 2-core CPU, one thread: batch 256 7.5 ms (generator)
vs 15.9 ms (Philox); batch 2000 27.8 vs 97.0 ms, which is why the CPU keeps the generators. On CUDA gpm uses Philox:
its figure there is still to be measured (an H200 took 28.2 ms per draw at batch 2000 with the generators).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpmcli.noise import BatchNoise  # noqa: E402


def per_draw(batch: int, device: str, engine: str, reps: int = 20) -> float:
    noise = BatchNoise(0, range(batch), device, engine=engine)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        noise.randn(1, 32, 32)
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        noise.randn(1, 32, 32)
    sync()
    return (time.perf_counter() - t) / reps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, nargs="+", default=[256, 2000])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for b in a.batch:
        g, p = per_draw(b, a.device, "generator"), per_draw(b, a.device, "philox")
        print(f"batch {b:5d} on {a.device}: generator {g * 1e3:8.2f} ms, philox {p * 1e3:8.2f} ms per draw "
              f"(philox/generator x{p / g:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
