"""``gpm train score``: an EDM denoiser (ALGORITHMS.md section 8).

``sigma ~ LogNormal(P_mean, P_std)``, loss ``mean_batch[lambda(sigma) sum_dims (D(x + sigma eps, sigma) - x)^2]`` with
``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` and the EDM preconditioning of
:class:`gpmcli.fields.score.EDMDenoiser`, so the checkpoint's parameterisation is ``edm`` with its ``sigma_data``.
An MLP (``gpmcli.nets.mlp``) for low-dimensional data, a small UNet (``gpmcli.nets.unet``) for images.
"""

from __future__ import annotations

import math

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.score import EDMDenoiser
from gpmcli.nets import arch_config
from gpmcli.train import Opt, RoleSpec, register_role
from gpmcli.train.common import RoleTrainer


def edm_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2``."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(denoiser, x: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """Per-sample EDM loss ``lambda(sigma) sum_dims (D(x + sigma eps, sigma) - x)^2`` (shape ``(B,)``).

    With ``sigma_data`` equal to the data's per-dimension std and the optimal denoiser of Gaussian data, its
    expectation is exactly the number of dimensions for every sigma (the weighting's design property)."""
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    d = denoiser(x + s * eps, sigma)
    err = (d.float() - x).reshape(x.shape[0], -1).square().sum(1)
    return edm_weight(sigma, sigma_data) * err


def build_score_net(shape: tuple[int, ...], args: dict):
    """The network ``F(c_in x, c_noise)`` and its arch config, from the role options."""
    arch = args["arch"]
    if arch == "auto":
        arch = "mlp" if len(shape) == 1 else "unet"
    if arch == "mlp":
        if len(shape) != 1:
            raise UsageError("--arch mlp is for low-dimensional data; use --arch unet for images")
        kw = dict(in_dim=shape[0], out_dim=shape[0], hidden=args["hidden"], depth=args["depth"], cond_dim=32,
                  conditional=True, act=args["act"], fourier_scale=args["fourier_scale"])
        from gpmcli.nets.mlp import MLP

        net = MLP(**kw)
    elif arch == "unet":
        if len(shape) != 3:
            raise UsageError("--arch unet needs image data (C, H, W)")
        from gpmcli.nets.unet import UNet

        kw = dict(in_ch=shape[0], ch=args["ch"], mults=list(args["mults"]), blocks=args["blocks"],
                  attn=list(args["attn"]), img=shape[-1], emb=128, dropout=args["dropout"])
        net = UNet(**kw)
    else:
        raise UsageError(f"--arch must be auto, mlp or unet, not {arch!r}")
    return net, arch_config(net, **kw)


class ScoreTrainer(RoleTrainer):
    role = "score"

    def setup(self):
        a, data = self.args, self.ctx.data
        sd = a["sigma_data"]
        if sd is None or sd <= 0:
            if data.range is not None:  # images in [-1, 1]: the EDM default
                sd = 0.5
            else:  # low-D data: per-dimension RMS of a large batch
                x = data.batch(4096, self.ctx.opts.seed, 10**9)
                sd = float(x.square().mean().sqrt())
        self.sigma_data = float(sd)
        if a["sigma_min"] <= 0 or a["sigma_max"] <= a["sigma_min"]:
            raise UsageError("--sigma-min must be positive and below --sigma-max")
        self.net, self.arch = build_score_net(tuple(data.shape), a)
        self.net.to(self.ctx.device)
        self.den = EDMDenoiser(self.net, self.sigma_data, a["sigma_min"], a["sigma_max"])
        self.opt = self.ctx.adam(self.net.parameters())

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"net": self.opt}

    def train_step(self, batch):
        g = self.ctx.generator()
        b = batch.shape[0]
        sigma = (self.args["p_mean"] + self.args["p_std"] * self.ctx.randn(b, generator=g)).exp()
        eps = self.ctx.randn(*batch.shape, generator=g)
        with self.ctx.autocast():
            loss = edm_loss(self.den, batch, sigma, eps, self.sigma_data).mean()
        self.ctx.update(self.opt, loss)
        loss = float(loss.detach())
        return {"loss": loss, "loss_per_dim": loss / math.prod(batch.shape[1:])}

    def exports(self):
        a = self.args
        return {"": ("net", {
            "role": "score", "arch": self.arch,
            "parameterization": {"type": "edm", "sigma_data": self.sigma_data, "sigma_min": a["sigma_min"],
                                 "sigma_max": a["sigma_max"]},
            "objective": {"name": "edm", "p_mean": a["p_mean"], "p_std": a["p_std"],
                          "weight": "(sigma^2 + sigma_data^2) / (sigma sigma_data)^2"},
        })}

    def card(self, name, config):
        p = config["parameterization"]
        return (f"EDM denoiser (Karras et al. 2022 preconditioning, sigma_data {p['sigma_data']:.4g}), "
                f"sigma ~ LogNormal({self.args['p_mean']}, {self.args['p_std']}), noise range "
                f"[{p['sigma_min']}, {p['sigma_max']}]. Sample with `gpm sample --model edm --checkpoint DIR`.")


register_role(RoleSpec("score", ScoreTrainer, "EDM denoiser (MLP for low-D data, UNet for images)", options=[
    Opt("arch", str, "auto", "auto | mlp | unet", ("auto", "mlp", "unet")),
    Opt("hidden", int, 128, "MLP width"),
    Opt("depth", int, 3, "MLP hidden layers"),
    Opt("act", str, "lrelu", "MLP activation (silu learns the residual of the EDM preconditioning slowly at the "
        "default init)", ("silu", "relu", "lrelu")),
    Opt("fourier_scale", float, 4.0, "MLP: scale of the Fourier features of ln(sigma)/4"),
    Opt("ch", int, 16, "UNet base channels"),
    Opt("mults", list, [1, 2, 4], "UNet channel multipliers per resolution"),
    Opt("blocks", int, 1, "UNet residual blocks per resolution"),
    Opt("attn", list, [], "UNet resolutions with self-attention (the middle block always has one)"),
    Opt("dropout", float, 0.0, "UNet dropout"),
    Opt("sigma_data", float, None, "EDM sigma_data (default 0.5 for images, the data RMS for low-D data)"),
    Opt("sigma_min", float, 0.002, "smallest noise level the sampler should use (recorded in the config)"),
    Opt("sigma_max", float, 80.0, "largest noise level (recorded in the config)"),
    Opt("p_mean", float, -1.2, "log-normal noise distribution: mean of ln sigma"),
    Opt("p_std", float, 1.2, "log-normal noise distribution: std of ln sigma"),
]))
