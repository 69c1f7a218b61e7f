"""Sampler overhead on a small image UNet (CPU by default): one command, ratios measured in the same run.

    python benchmarks/samplers.py [--batch 64] [--device cpu] [--threads N]

For each score-based kind: NFE (network evaluations per sample), wall time of one batch, and
overhead = wall / (time of the same NFE network evaluations at the same batch). The network time is measured by
replaying the exact inputs the sampler fed the network (recorded in a warm-up run), alternated with the timed runs
(the minimum over --rounds alternations of each): the network's own speed depends on its inputs (the time embedding, value ranges), so timing it on
one fixed input misattributes network time to the sampler. "in-run" is the same ratio from one run alone: wall time
over the time spent inside the network's forward calls of that run (hooks with a device sync around each call;
median over the rounds). It is immune to the machine's speed changing between runs, which on a shared VM moves the
replay ratio by +-10%. The column "NFE x net" shows the naive estimate (NFE x one evaluation on a fixed input). Overhead 1.00 means the sampler adds nothing beyond the network;
the target is <= 1.05 at batch 64. The network is a random-init diffusers UNet2DModel
(1x16x16, channels 16/32) wrapped as an eps field (DDPM linear schedule), so every kind runs the same network through
gpm's sigma-space denoiser. Also prints the EDM float32-vs-float64 state difference on the pentagon target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5, help="network timings (median)")
    ap.add_argument("--rounds", type=int, default=3, help="timed sampler runs per kind, alternated with replays (min)")
    ap.add_argument("--json", default=None, help="write the figures of this run to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import diffusers

    from gpmcli.fields.base import Bundle
    from gpmcli.fields.score import eps_component
    from gpmcli.noise import BatchNoise
    from gpmcli.samplers import get_kind

    dev = torch.device(args.device)
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=16, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8).to(dev).eval()
    sched = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}
    comp = eps_component(unet, sched, data_shape=(1, 16, 16), data_range=(-1, 1), ref="bench-unet")
    bundle = Bundle("bench", {"score": comp})
    b = args.batch

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    x = torch.randn(b, 1, 16, 16, device=dev)
    t = torch.full((b,), 500.0, device=dev)
    def time_net() -> float:
        with torch.no_grad():
            for _ in range(2):
                comp.module(x, t)
            times = []
            for _ in range(args.repeats):
                sync()
                t0 = time.perf_counter()
                comp.module(x, t)
                sync()
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    t_net = time_net()
    print(f"device {dev}, batch {b}, torch threads {torch.get_num_threads()}; one UNet evaluation: "
          f"{t_net * 1e3:.1f} ms (median of {args.repeats})")

    cases = [
        ("edm", {}, "18 Heun steps"),
        ("edm", {"churn": 30.0, "steps": 18}, "18 steps, churn 30"),
        ("pc", {"steps": 30, "sde": "vp"}, "N=30, reverse diffusion + Langevin"),
        ("pc", {"steps": 30, "sde": "vp", "predictor": "euler-maruyama", "corrector": "none"}, "N=30, EM"),
        ("ancestral", {"steps": 50}, "DDPM ancestral, N=50"),
        ("ode", {"sde": "vp", "rtol": 1e-3, "atol": 1e-3}, "RK45, tol 1e-3"),
        ("langevin", {"steps": 10, "corrector_steps": 3}, "10 levels x 3"),
    ]
    rows: list[dict] = []
    print(f"{'kind':<10} {'setting':<36} {'NFE':>5} {'wall s':>8} {'NFE x net':>10} {'replay s':>9} {'overhead':>9} {'in-run':>9}")
    for kind, params, label in cases:
        sampler = get_kind(kind).build(bundle, dict(params))
        calls: list = []

        def record(_module, args, kwargs):
            calls.append(([a.clone() if torch.is_tensor(a) else a for a in args],
                          {k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()}))

        hook = comp.module.register_forward_pre_hook(record, with_kwargs=True)
        with torch.no_grad():
            sampler(BatchNoise(0, range(b), dev))  # warm-up, records the network inputs
        hook.remove()

        def replay() -> float:
            with torch.no_grad():
                sync()
                t0 = time.perf_counter()
                for args, kwargs in calls:
                    comp.module(*args, **kwargs)
                sync()
                return time.perf_counter() - t0

        inside = [0.0]

        def start(_module, _args):
            sync()
            inside.append(time.perf_counter())

        def stop(_module, _args, _out):
            sync()
            t1 = inside.pop()
            inside[0] += time.perf_counter() - t1

        walls, replays, in_run = [], [replay()], []
        for _ in range(args.rounds):  # alternate sampler runs and replays; the minimum of each resists interference
            hooks = (comp.module.register_forward_pre_hook(start), comp.module.register_forward_hook(stop))
            inside[0] = 0.0
            sync()
            t0 = time.perf_counter()
            res = sampler(BatchNoise(0, range(b), dev))
            sync()
            walls.append(time.perf_counter() - t0)
            in_run.append(walls[-1] / inside[0])
            for h in hooks:
                h.remove()
            replays.append(replay())
        wall, r = min(walls), min(replays)
        assert len(calls) == res.nfe, (kind, len(calls), res.nfe)
        print(f"{kind:<10} {label:<36} {res.nfe:>5} {wall:>8.2f} {res.nfe * t_net:>10.2f} {r:>9.2f} {wall / r:>9.3f} "
              f"{statistics.median(in_run):>9.3f}")
        rows.append({"kind": kind, "setting": label, "nfe": res.nfe, "wall_s": wall, "replay_s": r,
                     "overhead_replay": wall / r, "overhead_in_run": statistics.median(in_run)})

    t_after = time_net()
    print(f"UNet evaluation re-timed after the runs: {t_after * 1e3:.1f} ms (drift {t_after / t_net - 1:+.1%}; on a "
          "shared machine overheads carry that much noise)")

    # float32 vs float64 particle state (EDM, exact pentagon target)
    from gpmcli.registry import load_component

    toy = Bundle("toy", {"score": load_component("toy:pentagon")})
    s = get_kind("edm").build(toy, {})
    x32 = s(BatchNoise(0, range(2000))).x
    s.dtype = torch.float64
    x64 = s(BatchNoise(0, range(2000))).x
    print(f"EDM 18 steps on toy:pentagon, 2000 samples: max |float32 - float64| = "
          f"{(x32.double() - x64.double()).abs().max().item():.2e} (data scale ~3)")
    if args.json:
        import json

        Path(args.json).write_text(json.dumps({"batch": b, "network_ms": t_net * 1e3, "network_ms_after": t_after * 1e3,
                                               "kinds": rows}, indent=1))


if __name__ == "__main__":
    main()
