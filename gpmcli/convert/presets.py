"""Presets: known checkpoints whose architecture gpm declares from their state-dict layout (``--from NAME``).

A preset is data: a role, a help line, the original's license and source, and a function from the state dict to
``(arch name, arch kwargs, role config)``. Adding a known checkpoint family means adding one builder and one row of
:data:`PRESETS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpmcli.convert.common import (Converted, Options, deep_update, load_strict, provenance, read_state, sha256_file,
                                   source_file, write)
from gpmcli.errors import UsageError

_CSINVA = "github.com/csinva/gan-vae-pretrained-pytorch@9b6401e122fa186a3a57f97c5df57e3603121fba"
_RYHAN = "github.com/Ryhan9834/Digit-Generation-WGAN-GP@2edf71e3a2c1191715371c5838d44d222bda5078"
_PTEX = "pytorch/examples DCGAN layout"


@dataclass
class Preset:
    name: str
    role: str
    help: str
    build: Callable[[dict[str, torch.Tensor], bool], tuple[str, dict[str, Any], dict[str, Any]]]
    """state dict, keep_sigmoid -> (arch name, arch kwargs, role config incl. data)"""
    license: str = "unknown"
    source: str = ""
    prepare: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    """optional state-dict rewrite before building (e.g. folding spectral normalisation)"""


def _n_conv(sd, prefix="main.") -> list[str]:
    keys = [k for k, v in sd.items() if k.startswith(prefix) and k.endswith(".weight") and v.ndim == 4]
    return sorted(keys, key=lambda k: int(k.split(".")[1]))


def _mlp_g(sd, keep):
    z, h, o = sd["0.weight"].shape[1], sd["0.weight"].shape[0], sd["4.weight"].shape[0]
    if o == 1:  # the discriminator has the same three layers, ending in one unit
        raise UsageError(f"the file's last layer has 1 output unit and {z} inputs: a csinva-mlp-gan-d "
                         "(discriminator) layout, not a generator; use --from csinva-mlp-gan-d")
    shape = [1, 28, 28] if o == 784 else [o]
    return "csinva-mlp-gan-g", {"z_dim": z, "hidden": h, "out_shape": shape}, {
        "latent": {"dim": z, "distribution": "normal", "shape": [z]},
        "data": {"shape": shape, "range": [-1.0, 1.0], "dataset": "mnist"}}


def _mlp_d(sd, keep):
    i, h = sd["0.weight"].shape[1], sd["0.weight"].shape[0]
    if sd["4.weight"].shape[0] != 1:
        raise UsageError(f"the file's last layer has {sd['4.weight'].shape[0]} output units: a csinva-mlp-gan-g "
                         "(generator) layout, not a discriminator (one logit); use --from csinva-mlp-gan-g")
    shape = [1, 28, 28] if i == 784 else [i]
    return "csinva-mlp-gan-d", {"in_dim": i, "hidden": h, "prob": keep}, {
        "output": "prob" if keep else "logit", "loss": "vanilla", "time": None,
        "data": {"shape": shape, "range": [-1.0, 1.0], "dataset": "mnist"}}


def _wgan_g(sd, keep):
    w0 = sd["gen.0.0.weight"]
    z, hidden, c = w0.shape[0], w0.shape[1] // 4, sd["gen.3.0.weight"].shape[1]
    return "wgangp-generator", {"z_dim": z, "hidden": hidden, "im_chan": c}, {
        "latent": {"dim": z, "distribution": "normal", "shape": [z]},
        "data": {"shape": [c, 28, 28], "range": [-1.0, 1.0], "dataset": "mnist"}}


def _wgan_c(sd, keep):
    w0 = sd["crit.0.0.weight"]
    return "wgangp-critic", {"im_chan": w0.shape[1], "hidden": w0.shape[0]}, {
        "output": "critic", "loss": "ipm", "time": None,
        "data": {"shape": [w0.shape[1], 28, 28], "range": [-1.0, 1.0], "dataset": "mnist"}}


def _lenet(sd, keep):
    n = sd["fc.f7.weight"].shape[0]
    return "lenet5", {"n_classes": n}, {
        "output": "log_softmax", "classes": n,
        "features": {"dim": sd["fc.f6.weight"].shape[0], "layer": "f6", "method": "features",
                     "description": "f6 activations after ReLU"},
        "data": {"shape": [1, 32, 32], "range": [0.0, 1.0], "dataset": "mnist",
                 "preprocess": {"resize": [32, 32], "mode": "bilinear", "from_shape": [1, 28, 28],
                                "note": "trained on 28x28 digits resized bilinearly to 32x32, no normalisation"}}}


def _dcgan_convs(sd, what: str):
    """First and last convolution weights of a DCGAN ``main`` stack, and its number of layers after the first."""
    convs = _n_conv(sd)
    if not convs or convs[0] != "main.0.weight":
        raise UsageError(f"not a DCGAN {what} state dict (expected keys main.0.weight ...)")
    return sd[convs[0]], sd[convs[-1]], len(convs) - 1


def _dcgan_d_kwargs(sd, keep):
    w0, wl, L = _dcgan_convs(sd, "discriminator")
    return {"nc": int(w0.shape[1]), "ndf": int(w0.shape[0]), "n_layers": L, "final_kernel": int(wl.shape[-1]),
            "bias": "main.0.bias" in sd, "prob": keep}


def _dcgan_d(sd, keep):
    kw = _dcgan_d_kwargs(sd, keep)
    kw.update(final_stride=1, final_padding=0)
    size = 4 * 2 ** kw["n_layers"]
    return "dcgan-discriminator", kw, {
        "output": "prob" if keep else "logit", "loss": "vanilla", "time": None,
        "data": {"shape": [kw["nc"], size, size], "range": [-1.0, 1.0], "dataset": None}}


def _csinva_dcgan_d(sd, keep):
    kw = _dcgan_d_kwargs(sd, keep)
    kw.update(final_stride=2, final_padding=1)
    return "dcgan-discriminator", kw, {
        "output": "prob" if keep else "logit", "loss": "vanilla", "time": None,
        "data": {"shape": [kw["nc"], 28, 28], "range": [0.0, 1.0], "dataset": "mnist",
                 "note": "trained on inputs in [0, 1] (mean D(real) 0.94 in [0, 1], 0.37 in [-1, 1])"}}


def _dcgan_g(sd, keep):
    w0, wl, L = _dcgan_convs(sd, "generator")
    kw = {"nz": int(w0.shape[0]), "ngf": int(wl.shape[0]), "nc": int(wl.shape[1]), "n_layers": L,
          "final_kernel": int(wl.shape[-1]), "final_stride": 2, "final_padding": 1, "bias": "main.0.bias" in sd}
    return "dcgan-generator", kw, {
        "latent": {"dim": kw["nz"], "distribution": "normal", "shape": [kw["nz"]]},
        "data": {"range": [-1.0, 1.0], "dataset": None}}


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("csinva-mlp-gan-g", "generator", "csinva MNIST MLP GAN generator (G--300.ckpt)", _mlp_g, "MIT",
           f"{_CSINVA}/mnist_gan_mlp/weights/G--300.ckpt"),
    Preset("csinva-mlp-gan-d", "discriminator", "csinva MNIST MLP GAN discriminator (D--300.ckpt), logit output",
           _mlp_d, "MIT", f"{_CSINVA}/mnist_gan_mlp/weights/D--300.ckpt"),
    Preset("ryhan-wgangp-g", "generator", "Ryhan9834 MNIST WGAN-GP generator (generator.pth)", _wgan_g, "MIT",
           f"{_RYHAN}/models/generator.pth"),
    Preset("ryhan-wgangp-critic", "discriminator", "Ryhan9834 MNIST WGAN-GP critic (critic.pth)", _wgan_c, "MIT",
           f"{_RYHAN}/models/critic.pth"),
    Preset("csinva-lenet", "classifier", "csinva MNIST LeNet-5 (classifier; 84-d f6 features)", _lenet, "MIT",
           f"{_CSINVA}/mnist_classifier/weights/lenet_epoch=12_test_acc=0.991.pth"),
    Preset("csinva-dcgan-d", "discriminator", "csinva MNIST DCGAN discriminator (netD_epoch_99.pth), inputs in [0,1]",
           _csinva_dcgan_d, "MIT", f"{_CSINVA}/mnist_dcgan/weights/netD_epoch_99.pth"),
    Preset("dcgan-g", "generator", "pytorch/examples DCGAN generator of any width/depth (keys main.i)", _dcgan_g,
           "unknown", _PTEX),
    Preset("dcgan-d", "discriminator", "pytorch/examples DCGAN discriminator of any width/depth (keys main.i)",
           _dcgan_d, "unknown", _PTEX),
]}


def convert_preset(src: str | Path, out: str | Path, fmt: str, opts: Options, presets: dict[str, Preset] | None = None
                   ) -> Converted:
    """Convert a state dict with a preset's declared architecture (keys and shapes must fit exactly)."""
    preset = (presets or PRESETS)[fmt]
    role = opts.role
    if role and role != preset.role and not (preset.role == "classifier" and role == "features"):
        raise UsageError(f"--from {fmt} makes a {preset.role}, not a {role}")
    if opts.module:
        raise UsageError(f"--module is for --from state-dict/score-sde; --from {fmt} knows its architecture")
    srcp = source_file(src)
    digest = sha256_file(srcp)
    _, sd = read_state(srcp, opts.trust_pickle, opts.key)
    try:
        if preset.prepare is not None:
            sd = preset.prepare(sd)
        arch_name, arch_kw, role_cfg = preset.build(sd, opts.keep_sigmoid)
    except KeyError as e:
        raise UsageError(f"{srcp.name} does not look like a {fmt} state dict (no key {e})") from None
    arch_kw.update(opts.kwargs)
    from gpmcli.nets import build_arch

    net = build_arch({"name": arch_name, "kwargs": arch_kw})
    load_strict(net, sd, f"{srcp.name} (--from {fmt})")
    net.eval()
    role_cfg = deep_update(role_cfg, opts.meta)
    if preset.role == "generator" and not role_cfg.get("data", {}).get("shape"):
        with torch.no_grad():
            y = net(torch.zeros(1, *role_cfg["latent"]["shape"]))
        role_cfg.setdefault("data", {})["shape"] = list(y.shape[1:])
    prov = provenance(srcp, digest, opts.license or preset.license, opts.source or preset.source, fmt)
    return write(Path(out), net, {"name": arch_name, "kwargs": arch_kw}, role or preset.role, role_cfg, prov, fmt,
                 srcp.name, force=opts.force)
