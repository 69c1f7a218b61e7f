"""``gpm train discriminator --for diffflow``: the logistic, noise-conditioned discriminator of DiffFlow
(ALGORITHMS.md section 5).

``d(x, sigma)`` is trained with the logistic loss ``softplus(-d(real)) + softplus(d(fake))`` on real data noised to
``sigma_k`` against particles at step ``k`` of the flow, so that ``d`` estimates ``log q_sigma_k / p_k`` and
``grad d`` the log-density-ratio gradient DiffFlow adds to the score. Each sample of a batch gets its own random
step ``k``. Training particles:

- ``--family ve``: states of the ``l = 1`` sampler (the VE reverse-diffusion predictor with the score checkpoint
  ``--score``; no discriminator in the loop), simulated once per ``--refresh-every`` steps for a pool of
  ``--pool`` trajectories;
- ``--family kl``: states of the ``l = 0`` flow ``x <- x + eta_k grad d`` with the current discriminator (a
  noise-annealed Discriminator Flow, as in section 4), re-simulated every ``--refresh-every`` steps.

The checkpoint's config is what :func:`gpmcli.fields.discriminator.discriminator_from_component` and
:mod:`gpmcli.samplers.diffflow` read: ``loss: vanilla``, ``output: logit``, ``time: {kind: sigma, family, sigmas
(the grid, no trailing 0), n_steps, prior_std[, etas]}``; sampling then uses exactly the training grid.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from gpmcli.errors import UsageError
from gpmcli.fields.discriminator import input_grad
from gpmcli.nets import arch_config
from gpmcli.samplers.diffflow import diffflow_kl_step, diffflow_ve_step
from gpmcli.samplers.integrate import edm_sigmas
from gpmcli.train import Opt, RoleSpec, register_role
from gpmcli.train.common import RoleTrainer


def build_disc_net(shape: tuple[int, ...], args: dict, sigma_data: float):
    arch = args["arch"]
    if arch == "auto":
        arch = "mlp" if len(shape) == 1 else "convnet"
    if arch == "mlp":
        if len(shape) != 1:
            raise UsageError("--arch mlp is for low-dimensional data; use --arch convnet for images")
        inner = {"name": "mlp", "kwargs": dict(in_dim=shape[0], out_dim=1, hidden=args["hidden"], depth=args["depth"],
                                                cond_dim=32, conditional=True, act=args["act"],
                                                fourier_scale=args["fourier_scale"])}
    elif arch == "convnet":
        if len(shape) != 3:
            raise UsageError("--arch convnet needs image data (C, H, W)")
        inner = {"name": "cond-convnet", "kwargs": dict(in_ch=shape[0], ch=args["ch"], mults=list(args["mults"]),
                                                        blocks=1, emb=128)}
    else:
        raise UsageError(f"--arch must be auto, mlp or convnet, not {arch!r}")
    from gpmcli.nets.precond import SigmaPrecond

    net = SigmaPrecond(inner, sigma_data)
    return net, arch_config(net, inner=inner, sigma_data=sigma_data)


class DiffFlowDiscTrainer(RoleTrainer):
    role = "discriminator"

    def setup(self):
        from gpmcli.fields.score import denoiser_from_component
        from gpmcli.refs import parse_ref

        a, data, dev = self.args, self.ctx.data, self.ctx.device
        self.family = a["family"]
        self.den = None
        score_ref = a["score"]
        if score_ref:
            comp = parse_ref(score_ref).component("score", device=dev)
            if comp.data_shape and tuple(comp.data_shape) != tuple(data.shape):
                raise UsageError(f"--score {score_ref} is for data of shape {list(comp.data_shape)}, the data has "
                                 f"{list(data.shape)}")
            self.den = denoiser_from_component(comp).to(dev).eval().requires_grad_(False)
            self.score_ref = comp.ref
        elif self.family == "ve":
            raise UsageError("--family ve trains against the l = 1 sampler: pass --score REF (a score checkpoint)")
        smin = a["sigma_min"] or (self.den.sigma_min if self.den is not None else 0.01)
        smax = a["sigma_max"] or (self.den.sigma_max if self.den is not None else 10.0)
        if not 0 < smin < smax:
            raise UsageError("--sigma-min must be positive and below --sigma-max")
        n = a["n_steps"]
        if n < 2:
            raise UsageError("--n-steps must be >= 2")
        self.sigmas = edm_sigmas(n, smin, smax, a["rho"], append_zero=False).tolist()
        sd = a["sigma_data"] or (self.den.sigma_data if self.den is not None else 0.5)
        self.sigma_data = float(sd)
        if self.family == "ve":
            self.prior_std = float(a["prior_std"] or self.sigmas[0])
            self.etas = None
        else:
            self.prior_std = float(a["prior_std"] or math.sqrt(self.sigmas[0] ** 2 + self.sigma_data**2))
            if a["eta"] <= 0:
                raise UsageError("--eta must be positive")
            self.etas = [a["eta"] * s**2 for s in self.sigmas]
        self.net, self.arch = build_disc_net(tuple(data.shape), a, self.sigma_data)
        self.net.to(dev)
        self.opt = self.ctx.adam(self.net.parameters(), betas=(a["beta1"], 0.999))
        self.pool = None  # (n_steps, P, *shape) particles before each step
        self.pool_step = -1

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"net": self.opt}

    def extra_state(self):
        return {"pool": self.pool, "pool_step": self.pool_step} if self.pool is not None else {}

    def load_extra_state(self, state):
        if state.get("pool") is not None:
            self.pool, self.pool_step = state["pool"].cpu(), int(state["pool_step"])

    # ----- particles -----
    def _disc_grad(self, x, sigma):
        was = self.net.training
        self.net.eval()
        with self.ctx.autocast():
            g = input_grad(lambda xx: self.net(xx, torch.full((xx.shape[0],), sigma, device=xx.device))
                           .float().reshape(-1), x)[1]
        self.net.train(was)
        return g.float()

    @torch.no_grad()
    def simulate(self, n: int, g: torch.Generator) -> torch.Tensor:
        """States ``x_0 .. x_{N-1}`` of ``n`` trajectories (CPU tensor ``(N, n, *shape)``)."""
        shape, bs = tuple(self.ctx.data.shape), self.args["sim_batch"]
        out = torch.empty(len(self.sigmas), n, *shape)
        grid = self.sigmas + [0.0]
        for lo in range(0, n, bs):
            m = min(bs, n - lo)
            x = self.prior_std * self.ctx.randn(m, *shape, generator=g)
            for k, sigma in enumerate(self.sigmas):
                out[k, lo:lo + m] = x.cpu()
                if k == len(self.sigmas) - 1:
                    break
                xi = self.ctx.randn(m, *shape, generator=g)
                if self.family == "ve":
                    with self.ctx.autocast():
                        s = self.den.score(x, sigma).float()
                    x, _ = diffflow_ve_step(x, s, None, sigma**2 - grid[k + 1] ** 2, 1.0, xi)
                else:
                    gd = self._disc_grad(x, sigma)
                    x, _ = diffflow_kl_step(x, torch.zeros_like(x), gd, self.etas[k], 0.0, None)
        return out

    def train_step(self, batch):
        a = self.args
        step = self.ctx.step
        refresh = a["refresh_every"] or (0 if self.family == "ve" else 20)
        if self.pool is None or (refresh > 0 and step - self.pool_step >= refresh):
            self.pool = self.simulate(a["pool"], self.ctx.generator(1))
            self.pool_step = step
        g = self.ctx.generator()
        b, n = batch.shape[0], len(self.sigmas)
        k = torch.randint(0, n, (b,), generator=g)
        j = torch.randint(0, self.pool.shape[1], (b,), generator=g)
        fake = self.pool[k, j].to(self.ctx.device)
        sig = torch.tensor(self.sigmas, dtype=torch.float32)[k].to(self.ctx.device)
        eps = self.ctx.randn(*batch.shape, generator=g)
        real = batch + sig.reshape(-1, *([1] * (batch.ndim - 1))) * eps
        with self.ctx.autocast():
            d_real = self.net(real, sig).float().reshape(-1)
            d_fake = self.net(fake, sig).float().reshape(-1)
        loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        if a["gp"] > 0:  # zero-centred gradient penalty on noised real data (optional)
            with torch.enable_grad():
                xr = real.detach().requires_grad_(True)
                (gr,) = torch.autograd.grad(self.net(xr, sig).sum(), xr, create_graph=True)
            loss = loss + a["gp"] * gr.reshape(b, -1).square().sum(1).mean()
        self.ctx.update(self.opt, loss)
        acc = 0.5 * (float((d_real > 0).float().mean()) + float((d_fake < 0).float().mean()))
        return {"loss": float(loss.detach()), "acc": acc}

    def exports(self):
        a = self.args
        time = {"kind": "sigma", "family": self.family, "sigmas": [float(s) for s in self.sigmas],
                "n_steps": len(self.sigmas), "prior_std": self.prior_std, "rho": a["rho"]}
        if self.etas is not None:
            time["etas"] = [float(e) for e in self.etas]
            time["eta"] = a["eta"]
        return {"": ("net", {
            "role": "discriminator", "arch": self.arch, "output": "logit", "loss": "vanilla", "real": "high",
            "time": time,
            "objective": {"name": "logistic", "real": "data noised to sigma_k", "fake": (
                "states of the l = 1 sampler (VE reverse diffusion with the score)" if self.family == "ve"
                else "states of the l = 0 flow with the current discriminator"),
                "score": getattr(self, "score_ref", None), "pool": a["pool"], "refresh_every": a["refresh_every"],
                "gp": a["gp"]},
        })}

    def card(self, name, config):
        t = config["time"]
        return (f"Logistic DiffFlow discriminator, family `{t['family']}`, {t['n_steps']} noise levels from "
                f"{t['sigmas'][0]:.4g} to {t['sigmas'][-1]:.4g} (rho {t['rho']}); trained against "
                f"{config['objective']['fake']} (score: `{config['objective']['score']}`). Sample with "
                "`gpm sample --model diffflow --checkpoint BUNDLE --lambda L` (the grid comes from this config).")


register_role(RoleSpec("discriminator:diffflow", DiffFlowDiscTrainer,
                       "logistic sigma-conditioned discriminator for DiffFlow (ALGORITHMS.md section 5)", options=[
    Opt("family", str, "ve", "ve (particles of the l = 1 sampler) | kl (the l = 0 flow)", ("ve", "kl")),
    Opt("score", str, None, "score checkpoint (required for ve): registry name, directory, hf: or toy:"),
    Opt("n_steps", int, 64, "number of noise levels of the flow (the sampler's steps)"),
    Opt("sigma_min", float, None, "smallest noise level (default: the score checkpoint's)"),
    Opt("sigma_max", float, None, "largest noise level (default: the score checkpoint's)"),
    Opt("rho", float, 7.0, "EDM rho of the noise grid"),
    Opt("prior_std", float, None, "std of the initial particles (ve: sigma_max)"),
    Opt("eta", float, 0.1, "kl: eta_k = eta * sigma_k^2"),
    Opt("sigma_data", float, None, "input scaling of the network (default: the score's sigma_data)"),
    Opt("arch", str, "auto", "auto | mlp | convnet", ("auto", "mlp", "convnet")),
    Opt("hidden", int, 128, "MLP width"),
    Opt("depth", int, 3, "MLP hidden layers"),
    Opt("act", str, "lrelu", "MLP activation", ("silu", "relu", "lrelu")),
    Opt("fourier_scale", float, 4.0, "MLP: scale of the Fourier features of ln(sigma)/4"),
    Opt("ch", int, 32, "convnet base channels"),
    Opt("mults", list, [1, 2, 2], "convnet channel multipliers"),
    Opt("pool", int, 2048, "trajectories simulated per refresh"),
    Opt("refresh_every", int, 0, "re-simulate the pool every N steps (0: once for ve, every 20 steps for kl)"),
    Opt("sim_batch", int, 512, "batch size of the simulation"),
    Opt("gp", float, 0.0, "zero-centred gradient penalty weight on noised real data"),
    Opt("beta1", float, 0.5, "Adam beta1"),
]))
