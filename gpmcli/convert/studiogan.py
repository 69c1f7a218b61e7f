"""``--from studiogan-g`` / ``studiogan-d``: PyTorch-StudioGAN's 32x32 ResNet generator and discriminator (the
``resnet`` backbone its CIFAR-10 SNGAN uses: conditional BatchNorm generator, projection discriminator with spectral
normalisation), architecture declared from the state-dict layout (:mod:`gpmcli.nets.studiogan`).

StudioGAN's weight files are ``{"state_dict": ..., "step": ..., ...}`` dicts; spectral-normalised layers
(``weight_orig``, ``weight_u``, ``weight_v``) are folded into plain weights W / (u^T W v), which is what spectral norm
computes in eval mode. Label policy: the generator draws a uniform class from one extra latent coordinate
(``--kwargs '{"label": 3}'`` fixes it), the discriminator's logit is ``log mean_y exp D(x, y)`` (``"label": k`` uses
class k). The discriminator output is the adversarial logit (``output: logit``); StudioGAN trains SNGAN with the hinge
loss, so it is an uncalibrated logit.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gpmcli.convert.common import Converted, Options
from gpmcli.convert.presets import Preset, convert_preset

_SOURCE = ("huggingface.co/Mingguksky/PyTorch-StudioGAN studiogan_official_ckpt/CIFAR10_tailored/"
           "CIFAR10-SNGAN-train-2022_03_06_02_24_46")


def fold_spectral_norm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``X.weight_orig`` + ``X.weight_u`` + ``X.weight_v`` -> ``X.weight = weight_orig / (u . (W v))``."""
    out = {}
    for k, v in sd.items():
        if k.endswith((".weight_u", ".weight_v")):
            continue
        if k.endswith(".weight_orig"):
            base = k[: -len("_orig")]
            u, vv = sd[base + "_u"].double(), sd[base + "_v"].double()
            w = v.double()
            sigma = torch.dot(u, w.reshape(w.shape[0], -1) @ vv)
            out[base] = (w / sigma).to(v.dtype)
        else:
            out[k] = v
    return out


def _g(sd, keep):
    z, c = sd["linear0.weight"].shape[1], sd["conv2d5.weight"].shape[1]
    k = sd["blocks.0.0.bn1.embed0.weight"].shape[0]
    n = len({key.split(".")[1] for key in sd if key.startswith("blocks.")})
    kw = {"z_dim": int(z), "channels": int(c), "num_classes": int(k), "n_blocks": n, "label": "uniform"}
    return "studiogan-resnet32-g", kw, {
        "latent": {"dim": z + 1, "distribution": "normal", "shape": [z + 1],
                   "note": "the last coordinate picks the class: floor(Phi(u) K)"},
        "label_policy": "uniform class from the last latent coordinate",
        "data": {"shape": [3, 32, 32], "range": [-1.0, 1.0], "dataset": "cifar10"}}


def _d(sd, keep):
    c, k = sd["linear1.weight"].shape[1], sd["embedding.weight"].shape[0]
    return "studiogan-resnet32-d", {"channels": int(c), "num_classes": int(k), "label": "marginal"}, {
        "output": "logit", "loss": "hinge", "time": None,
        "label_policy": "log-mean-exp of D(x, y) over the classes",
        "data": {"shape": [3, 32, 32], "range": [-1.0, 1.0], "dataset": "cifar10"}}


PRESETS = {p.name: p for p in [
    Preset("studiogan-g", "generator", "StudioGAN 32x32 ResNet generator (CIFAR-10 SNGAN), uniform class label",
           _g, "MIT", f"{_SOURCE}/model=G-best-weights-step=88000.pth", prepare=fold_spectral_norm),
    Preset("studiogan-d", "discriminator", "StudioGAN 32x32 ResNet projection discriminator (CIFAR-10 SNGAN), "
           "spectral norm folded, class-marginal logit", _d, "MIT",
           f"{_SOURCE}/model=D-best-weights-step=88000.pth", prepare=fold_spectral_norm),
]}


def convert_studiogan(src: str | Path, out: str | Path, fmt: str, opts: Options) -> Converted:
    return convert_preset(src, out, fmt, opts, presets=PRESETS)
