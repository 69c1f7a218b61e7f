"""LeNet-5 class coverage and confidence of MNIST samples from any gpm sampler (the MNIST acceptance check).

    python scripts/eval_mnist_lenet.py --model gan --checkpoint mnist-gan
    python scripts/eval_mnist_lenet.py --model gan --checkpoint mnist-wgangp --json

Protocol: N = 1,000 samples with seed 0 (``--model`` kind, ``--checkpoint`` bundle/directory, sampler options as
``--param key=value``), mapped from the data range to [0, 1], resized to 32x32 (bilinear) when they are 28x28, and
classified by the csinva LeNet-5 (bundle ``mnist-lenet``). Reported: class histogram, classes present, mean
max-probability. Pass: all 10 classes present and mean max-probability >= 0.8. Also FD-LeNet of the same samples to
the MNIST test set (``--fd-ref``; 84-d LeNet f6 features as ``gpm fid --features lenet``; with N = 1,000 samples
the figure carries a positive small-sample bias, so compare figures at equal N).
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

MNIST_TEST = Path(__file__).resolve().parent.parent.parent / "shared" / "assets" / "mnist" / "t10k-images-idx3-ubyte.gz"


#: gpm's own MNIST data is 32x32: the 28x28 digits zero-padded by 2 (gpmcli.data.mnist_to_gpm). The reference digits
#: and the LeNet's training images are 28x28 resized to 32x32 (digits 14% larger), so 32x32 samples are cropped back
#: to their 28x28 frame before the same resize; without it, 10,000 *training* digits in gpm's format measure FD-LeNet
#: 11.5 against the test set (1.2 cropped): the distance then mostly measures the padding.
CROP = True


def lenet_frame(x: torch.Tensor, crop: bool | None = None) -> torch.Tensor:
    """Samples ``(N, 1, H, W)`` in the frame of the reference digits: 32x32 ones cropped to their central 28x28
    (``crop``, default :data:`CROP`); other sizes unchanged."""
    if (CROP if crop is None else crop) and tuple(x.shape[-2:]) == (32, 32):
        return x[..., 2:30, 2:30]
    return x


def evaluate(model: str, checkpoint: str | None, n: int = 1000, params: dict | None = None, seed: int = 0,
             batch: int = 250, fd_ref=None, overrides: dict[str, str] | None = None, device: str = "cpu",
             crop: bool | None = None) -> dict:
    lenet = load_bundle("mnist-lenet", registry=Registry.load())["classifier"].module.eval()
    bundle = resolve_bundle(model, checkpoint, overrides, device=device)
    sampler = get_kind(model).build(bundle, with_bundle_defaults(bundle, model, params))  # as gpm sample does
    x = torch.cat([sampler(BatchNoise(seed, range(i, min(n, i + batch)), device)).x.float().cpu()
                   for i in range(0, n, batch)])
    raw = x
    lo, hi = sampler.data_range or (-1.0, 1.0)
    x = lenet_frame((x.reshape(n, 1, *x.shape[-2:]) - lo) / (hi - lo), crop).clamp(0, 1)
    if x.shape[-1] != 32:
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    with torch.no_grad():
        p = torch.cat([lenet(x[i:i + batch]).exp() for i in range(0, n, batch)])
    mp, c = p.max(1)
    hist = torch.bincount(c, minlength=10).tolist()
    present = sum(h > 0 for h in hist)
    res = {"model": model, "checkpoint": checkpoint, **({"overrides": overrides} if overrides else {}), "n": n,
           "seed": seed, "params": params or {},
           "classes_present": present, "class_histogram": hist, "mean_max_prob": round(float(mp.mean()), 4),
           "pass": present == 10 and float(mp.mean()) >= 0.8}
    if fd_ref is not None:
        res.update(fd_lenet_of(raw, (lo, hi), fd_ref, crop))
    return res


def fd_lenet_of(x: torch.Tensor, data_range, ref, crop: bool | None = None) -> dict:
    """FD-LeNet of samples ``x`` (data range ``data_range``) to ``ref`` (MNIST idx file, folder or stats), exactly as
    ``gpm fid SAMPLES.npz REF --features lenet`` measures it (same uint8 quantisation and pipeline); ``crop``:
    :func:`lenet_frame`'s (default :data:`CROP`)."""
    from gpmcli.metrics.api import fid
    from gpmcli.metrics.sources import TensorSource, _to_uint8_nchw

    hw = tuple(x.shape[-2:])
    x = lenet_frame(x.reshape(x.shape[0], -1, *x.shape[-2:]), crop)
    u8 = _to_uint8_nchw(x.cpu().numpy(), tuple(data_range), "samples")
    r = fid(TensorSource(torch.from_numpy(u8)), str(ref), features="lenet")
    shown = str(ref)
    try:  # ../shared/... rather than this machine's absolute path
        shown = "../" + str(Path(ref).resolve().relative_to(Path(__file__).resolve().parent.parent.parent))
    except ValueError:
        pass
    return {"fd_lenet": round(float(r.get("fd_lenet", r.get("fid"))), 3), "fd_ref": shown, "fd_n_ref": r["n_ref"],
            "frame": frame_label(hw, crop)}


def frame_label(hw: tuple[int, int], crop: bool | None = None) -> str:
    """How samples of height x width ``hw`` reach the LeNet: 32x32 ones cropped to 28 or whole ("as sampled"),
    any other size as it is (28x28 samples are in the reference's frame already)."""
    if tuple(hw) == (32, 32):
        return "32px cropped to 28" if (CROP if crop is None else crop) else "as sampled"
    return f"{hw[0]}x{hw[1]} native"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--param", action="append", default=[], help="sampler option key=value (numbers parsed)")
    ap.add_argument("--score", default=None, help="replace the bundle's score (any reference form, as gpm sample)")
    ap.add_argument("--discriminator", default=None, help="replace the bundle's discriminator")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="cpu", help="where the sampler runs (cpu, cuda, cuda:N)")
    ap.add_argument("-b", "--batch-size", type=int, default=250)
    ap.add_argument("--fd-ref", default=str(MNIST_TEST) if MNIST_TEST.is_file() else None,
                    help="FD-LeNet of the same samples to this reference (default: the MNIST test set of "
                         "../shared/assets/mnist; 'none' to skip)")
    ap.add_argument("--no-crop", action="store_true", help="feed 32x32 samples to the LeNet as they are (the "
                    "protocol before 2026-12-04, biased by the 2-pixel padding; see CROP)")
    a = ap.parse_args(argv)
    params = parse_params(a.param)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    fd_ref = None if a.fd_ref in (None, "none") else a.fd_ref
    overrides = {k: v for k, v in (("score", a.score), ("discriminator", a.discriminator)) if v}
    res = evaluate(a.model, a.checkpoint, a.n, params, a.seed, batch=a.batch_size, fd_ref=fd_ref,
                   overrides=overrides or None, device=a.device, crop=not a.no_crop)
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{a.model} {a.checkpoint or '(default)'}: {res['classes_present']} classes {res['class_histogram']}, "
              f"mean max-prob {res['mean_max_prob']:.4f} ({'pass' if res['pass'] else 'FAIL'})"
              + (f"; FD-LeNet {res['fd_lenet']} to {res['fd_ref']} (N = {a.n})" if "fd_lenet" in res else ""))
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    from gpmcli.hostmem import tune_malloc

    tune_malloc()  # as the gpm command does: reuse activation buffers (gpmcli/hostmem.py)
    sys.exit(main())
