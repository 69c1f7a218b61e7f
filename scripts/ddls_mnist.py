"""DDLS on pretrained MNIST GANs: LeNet class coverage and confidence of samples before and after latent Langevin.

    python scripts/ddls_mnist.py mnist-mlp-gan mnist-wgangp -n 10000 -b 1000 --device cuda --json ddls_mnist.json

For each bundle (a generator + discriminator pair from checkpoints/registry.toml, or a directory/hf: reference) the
script draws N latents, and for every sample i the "before" image is G(z_i) and the "after" image is the DDLS chain
started from the same z_i (both samplers draw z_i first from sample i's own generator, so the pairs match). Each image
(generator range [-1, 1], 28x28) is mapped to [0, 1], resized to 32x32 bilinearly and classified by the csinva LeNet-5
(bundle ``mnist-lenet`` if registered, else ../shared/assets/csinva-mnist-lenet). Reported: class histogram, number of
classes present (at least one sample, and at least 2% of samples), mean max-probability, the fraction of samples with
max-probability > 0.9, mean d(G(z)) before/after and the MALA acceptance rate when --mala.

``--assets DIR`` builds the two asset pairs straight from the original files (csinva MLP GAN, ryhan WGAN-GP; the
architectures as described in their SOURCE.txt) when the converted bundles are not registered yet.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpmcli.fields.base import Bundle, Component  # noqa: E402
from gpmcli.noise import BatchNoise  # noqa: E402
from gpmcli.samplers import get_kind  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
MNIST_TEST = ROOT.parent / "shared" / "assets" / "mnist" / "t10k-images-idx3-ubyte.gz"


# ---- stand-ins for the converted asset pairs (used only with --assets when the bundles are not registered) -----------
class _RyhanGenerator(nn.Module):
    def __init__(self, z_dim=64, hidden=64):
        super().__init__()

        def blk(i, o, k, s, last=False):
            layers = [nn.ConvTranspose2d(i, o, k, s)]
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(o), nn.ReLU(True)]
            return nn.Sequential(*layers)

        self.z_dim = z_dim
        self.gen = nn.Sequential(blk(z_dim, hidden * 4, 3, 2), blk(hidden * 4, hidden * 2, 4, 1),
                                 blk(hidden * 2, hidden, 3, 2), blk(hidden, 1, 4, 2, last=True))

    def forward(self, z):
        return self.gen(z.reshape(z.shape[0], self.z_dim, 1, 1))


class _RyhanCritic(nn.Module):
    def __init__(self, hidden=64):
        super().__init__()

        def blk(i, o, last=False):
            layers = [nn.Conv2d(i, o, 4, 2)]
            layers += [] if last else [nn.BatchNorm2d(o), nn.LeakyReLU(0.2, True)]
            return nn.Sequential(*layers)

        self.crit = nn.Sequential(blk(1, hidden), blk(hidden, hidden * 2), blk(hidden * 2, 1, last=True))

    def forward(self, x):
        return self.crit(x).reshape(x.shape[0], -1)


def _asset_bundle(name: str, assets: Path, device) -> Bundle:
    from gpmcli.safeload import load_weights

    def comp(role, module, path, cfg):
        module.load_state_dict(load_weights(path), strict=True)
        return Component(role, module.to(device).eval(), {"role": role, **cfg}, str(path))

    img = {"shape": [1, 28, 28], "range": [-1.0, 1.0], "dataset": "mnist"}
    if name == "mnist-mlp-gan":
        d = assets / "csinva-mnist-gan-mlp"
        g = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 784), nn.Tanh())
        dn = nn.Sequential(nn.Linear(784, 256), nn.LeakyReLU(0.2), nn.Linear(256, 256), nn.LeakyReLU(0.2),
                           nn.Linear(256, 1), nn.Sigmoid())
        return Bundle(name, {
            "generator": comp("generator", g, d / "G--300.ckpt", {"latent": {"dim": 64}, "data": img}),
            "discriminator": comp("discriminator", dn, d / "D--300.ckpt",
                                  {"output": "prob", "loss": "vanilla", "time": None,
                                   "data": {"shape": [784], "range": [-1.0, 1.0]}})})
    if name == "mnist-wgangp":
        d = assets / "ryhan-mnist-wgangp"
        return Bundle(name, {
            "generator": comp("generator", _RyhanGenerator(), d / "generator.pth", {"latent": {"dim": 64}, "data": img}),
            "discriminator": comp("discriminator", _RyhanCritic(), d / "critic.pth",
                                  {"output": "critic", "loss": "ipm", "real": "high", "time": None, "data": img})})
    raise SystemExit(f"--assets knows mnist-mlp-gan and mnist-wgangp, not {name}")


def load_pair(name: str, assets: Path | None, device) -> Bundle:
    from gpmcli.registry import Registry, load_bundle

    reg = Registry.load()
    if assets is not None and name not in reg.bundles and not Path(name).exists():
        return _asset_bundle(name, assets, device)
    b = load_bundle(name, registry=reg, device=device)
    if "discriminator" not in b and "critic" in b:  # a bundle may name its critic by that role
        b.components["discriminator"] = b.components["critic"]
    return b


def load_lenet(assets: Path | None, device) -> nn.Module:
    from gpmcli.registry import Registry, load_bundle

    reg = Registry.load()
    if "mnist-lenet" in reg.bundles:
        b = load_bundle("mnist-lenet", registry=reg, device=device)
        return next(iter(b.components.values())).module.eval()
    from gpmcli.nets.lenet import LeNet5
    from gpmcli.safeload import load_weights

    path = (assets or ROOT.parent / "shared" / "assets") / "csinva-mnist-lenet" / "lenet_epoch=12_test_acc=0.991.pth"
    net = LeNet5()
    net.load_state_dict(load_weights(path), strict=True)
    return net.to(device).eval()


@torch.inference_mode()
def classify(lenet: nn.Module, x: torch.Tensor, data_range) -> torch.Tensor:
    lo, hi = data_range or (-1.0, 1.0)
    x = ((x.reshape(x.shape[0], 1, 28, 28).float() - lo) / (hi - lo)).clamp(0, 1)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    return lenet(x).exp()  # LeNet5 ends in LogSoftmax


def summarize(probs: torch.Tensor) -> dict:
    conf, cls = probs.max(1)
    hist = torch.bincount(cls, minlength=10).tolist()
    n = probs.shape[0]
    return {"class_histogram": hist, "classes_present": sum(h > 0 for h in hist),
            "classes_over_2pct": sum(h >= 0.02 * n for h in hist), "mean_max_prob": float(conf.mean()),
            "frac_max_prob_gt_0.9": float((conf > 0.9).float().mean())}


def run_bundle(name, args, device, lenet) -> dict:
    from gpmcli.api import with_bundle_defaults

    bundle = load_pair(name, args.assets, device)
    if args.discriminator:
        from gpmcli.registry import load_bundle

        bundle.components["discriminator"] = load_bundle(args.discriminator, device=device)["discriminator"]
    params = {"ddls_step": args.ddls_step, "ddls_steps": args.ddls_steps, "mala": True if args.mala else None}
    if args.bundle_defaults:  # the bundle's own params.ddls (as gpm sample uses them) under explicit flags
        params = with_bundle_defaults(bundle, "ddls", {k: v for k, v in params.items() if v is not None})
    else:
        params = {"ddls_step": args.ddls_step or 0.01, "ddls_steps": 1000 if args.ddls_steps is None else
                  args.ddls_steps, "mala": args.mala}
    gan = get_kind("gan").build(bundle, {})
    ddls = get_kind("ddls").build(bundle, params)
    before, after, d0, d1, acc, xs0, xs1 = [], [], [], [], [], [], []
    t0 = time.perf_counter()
    for start in range(0, args.n, args.batch_size):
        idx = list(range(start, min(args.n, start + args.batch_size)))
        xb = gan(BatchNoise(args.seed, idx, device)).x
        res = ddls(BatchNoise(args.seed, idx, device))
        before.append(classify(lenet, xb, gan.data_range).cpu())
        after.append(classify(lenet, res.x, ddls.data_range).cpu())
        if args.fd_ref:
            xs0.append(xb.cpu())
            xs1.append(res.x.cpu())
        d0.append(res.diagnostics["mean_d_start"] * len(idx))
        d1.append(res.diagnostics["mean_d_end"] * len(idx))
        if params.get("mala"):
            acc.append(res.diagnostics["acceptance_rate"] * len(idx))
    if device.type == "cuda":
        torch.cuda.synchronize()
    out = {"bundle": name, "n": args.n, "seed": args.seed, "ddls": ddls.resolved,
           "before": summarize(torch.cat(before)), "after": summarize(torch.cat(after)),
           "mean_d_before": sum(d0) / args.n, "mean_d_after": sum(d1) / args.n,
           "seconds": time.perf_counter() - t0, "device": str(device)}
    if params.get("mala"):
        out["acceptance_rate"] = sum(acc) / args.n
    if args.fd_ref:
        from eval_mnist_lenet import fd_lenet_of

        out["before"].update(fd_lenet_of(torch.cat(xs0), gan.data_range or (-1.0, 1.0), args.fd_ref))
        out["after"].update(fd_lenet_of(torch.cat(xs1), ddls.data_range or (-1.0, 1.0), args.fd_ref))
    out["discriminator"] = bundle["discriminator"].ref
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundles", nargs="+", help="generator + discriminator bundles (e.g. mnist-mlp-gan mnist-wgangp)")
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("-b", "--batch-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ddls-step", type=float, default=None, help="default 0.01 (or the bundle's, --bundle-defaults)")
    ap.add_argument("--ddls-steps", type=int, default=None, help="default 1000 (or the bundle's, --bundle-defaults)")
    ap.add_argument("--mala", action="store_true")
    ap.add_argument("--bundle-defaults", action="store_true",
                    help="use the bundle's params.ddls (as gpm sample --model ddls does) where no flag is given")
    ap.add_argument("--discriminator", default=None, help="replace the bundle's discriminator (as gpm sample does)")
    ap.add_argument("--fd-ref", default=str(MNIST_TEST) if MNIST_TEST.is_file() else None,
                    help="also FD-LeNet before/after to this reference (default: the MNIST test set; 'none' skips)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--assets", type=Path, default=None, help="build the asset pairs from the original files")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.fd_ref == "none":
        args.fd_ref = None
    from gpmcli.api import resolve_device

    device = resolve_device(args.device)
    lenet = load_lenet(args.assets, device)
    results = []
    for name in args.bundles:
        r = run_bundle(name, args, device, lenet)
        results.append(r)
        b, a = r["before"], r["after"]
        print(f"{name}: classes {b['classes_present']} -> {a['classes_present']} (>=2%: {b['classes_over_2pct']} -> "
              f"{a['classes_over_2pct']}), mean max-prob {b['mean_max_prob']:.4f} -> {a['mean_max_prob']:.4f}, "
              f"max-prob>0.9 {b['frac_max_prob_gt_0.9']:.3f} -> {a['frac_max_prob_gt_0.9']:.3f}, mean d "
              f"{r['mean_d_before']:.3f} -> {r['mean_d_after']:.3f}"
              + (f", acceptance {r['acceptance_rate']:.3f}" if "acceptance_rate" in r else "")
              + (f", FD-LeNet {b['fd_lenet']} -> {a['fd_lenet']}" if "fd_lenet" in b else "")
              + f" ({r['seconds']:.1f}s)")
        print(f"  histogram before {b['class_histogram']}\n  histogram after  {a['class_histogram']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
