"""``gpm train discriminator --for diffflow``: the logistic, noise-conditioned discriminator of DiffFlow
(ALGORITHMS.md section 5).

``d(x, sigma)`` is trained with the logistic loss ``softplus(-d(real)) + softplus(d(fake))`` on real data noised to
``sigma_k`` against particles at step ``k`` of the flow, so that ``d`` estimates ``log q_sigma_k / p_k`` and
``grad d`` the log-density-ratio gradient DiffFlow adds to the score. Each sample of a batch gets its own random
step ``k``. Training particles:

- ``--family ve``: states of the ``l = 1`` sampler (the VE reverse-diffusion predictor with the score checkpoint
  ``--score``; no discriminator in the loop), simulated once per ``--refresh-every`` steps for a pool of
  ``--pool`` trajectories; with ``--lam L`` (L < 1) states of the ``l = L`` sampler itself, the current
  discriminator in its loop (re-simulated every ``--refresh-every`` steps, default 20), so that ``d`` estimates the
  log-ratio of the data to the particles of the sampler it will correct rather than to those of the ``l = 1`` one; with ``--fake samples`` instead that sampler's final samples noised to ``sigma_k`` with
  fresh noise each time (Discriminator Guidance, Kim et al. 2023: ``d`` then estimates ``log q_sigma / p_sigma`` for
  the model's own noised law rather than for the sampler's state at step ``k``);
- ``--family kl``: states of the ``l = 0`` flow ``x <- x + eta_k grad d`` with the current discriminator (a
  noise-annealed Discriminator Flow, as in section 4), re-simulated every ``--refresh-every`` steps.

The checkpoint's config is what :func:`gpmcli.fields.discriminator.discriminator_from_component` and
:mod:`gpmcli.samplers.diffflow` read: ``loss: vanilla``, ``output: logit``, ``time: {kind: sigma, family, sigmas
(the grid, no trailing 0), n_steps, prior_std[, etas]}``; sampling then uses exactly the training grid.
"""

from __future__ import annotations

import copy
import math

import torch
from torch.nn import functional as F

from gpmcli.errors import UsageError
from gpmcli.fields.discriminator import input_grad
from gpmcli.samplers.diffflow import diffflow_kl_step, diffflow_ve_step
from gpmcli.fields.schedules import edm_sigmas
from gpmcli.train import Opt, RoleSpec, register_role
from gpmcli.train.common import RoleTrainer
from gpmcli.train.diffflow_disc_net import build_disc_net, init_component
from gpmcli.train.sigma_bands import accuracy_by_band, accuracy_table


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
        init = init_component(a, self.family, tuple(data.shape), dev) if a["init"] else None
        if init is not None:  # the grid is the one the network was trained on
            t = init.config["time"]
            self.sigmas = [float(v) for v in t["sigmas"] if float(v) > 0]
            self.rho = float(t.get("rho", a["rho"]))
        else:
            smin = a["sigma_min"] or (self.den.sigma_min if self.den is not None else 0.01)
            smax = a["sigma_max"] or (self.den.sigma_max if self.den is not None else 10.0)
            if not 0 < smin < smax:
                raise UsageError("--sigma-min must be positive and below --sigma-max")
            n = 64 if a["n_steps"] is None else a["n_steps"]
            if n < 2:
                raise UsageError("--n-steps must be >= 2")
            self.sigmas = edm_sigmas(n, smin, smax, a["rho"], append_zero=False).tolist()
            self.rho = a["rho"]
        sd = a["sigma_data"] or (self.den.sigma_data if self.den is not None else 0.5)
        self.sigma_data = float(sd)
        if a["fake"] == "samples" and self.family != "ve":
            raise UsageError("--fake samples is for --family ve (the score's own samples); kl trains on its flow")
        self.lam = float(a["lam"])
        if not 0.0 <= self.lam <= 1.0 or self.lam != self.lam:
            raise UsageError(f"--lam must be in [0, 1] (got {a['lam']})")
        if self.lam != 1.0 and (self.family != "ve" or a["fake"] == "samples"):
            raise UsageError("--lam is for --family ve with --fake trajectories (the l = L sampler's own states)")
        if a["eval_pool"] < 0:
            raise UsageError("--eval-pool must be >= 0")
        if self.family == "ve":
            self.prior_std = float(a["prior_std"] or self.sigmas[0])
            self.etas = None
        else:
            self.prior_std = float(a["prior_std"] or math.sqrt(self.sigmas[0] ** 2 + self.sigma_data**2))
            if a["eta"] <= 0:
                raise UsageError("--eta must be positive")
            self.eta = a["eta"]
            self.etas = [a["eta"] * s**2 for s in self.sigmas]
        if init is not None:  # the whole time variable comes from --init: prior, and for kl the step sizes
            t = init.config["time"]
            if t.get("prior_std") and not a["prior_std"]:
                self.prior_std = float(t["prior_std"])
            if self.etas is not None and t.get("etas"):
                self.eta, self.etas = t.get("eta", self.eta), [float(e) for e in t["etas"]][:len(self.sigmas)]
            self.net, self.arch = copy.deepcopy(init.module).train().requires_grad_(True), init.config["arch"]
            self.init_ref = init.ref
        else:
            self.net, self.arch = build_disc_net(tuple(data.shape), a, self.sigma_data)
            self.init_ref = None
        self.net.to(dev)
        self.opt = self.ctx.adam(self.net.parameters(), betas=(a["beta1"], 0.999))
        self.pool = None  # (n_steps, P, *shape) particles before each step, or (P, *shape) final samples
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
    def simulate(self, n: int, g: torch.Generator, finals: bool = False) -> torch.Tensor:
        """States ``x_0 .. x_{N-1}`` of ``n`` trajectories (CPU tensor ``(N, n, *shape)``); with ``finals`` (``ve``
        only) the trajectories' final samples instead (``(n, *shape)``: the noise-free last step to sigma = 0, as the
        sampler returns them)."""
        shape, bs = tuple(self.ctx.data.shape), self.args["sim_batch"]
        out = torch.empty(n, *shape) if finals else torch.empty(len(self.sigmas), n, *shape)
        grid = self.sigmas + [0.0]
        for lo in range(0, n, bs):
            m = min(bs, n - lo)
            x = self.prior_std * self.ctx.randn(m, *shape, generator=g)
            for k, sigma in enumerate(self.sigmas):
                last = k == len(self.sigmas) - 1
                if not finals:
                    out[k, lo:lo + m] = x.cpu()
                    if last:
                        break
                xi = None if last else self.ctx.randn(m, *shape, generator=g)
                if self.family == "ve":  # float32 as gpm sample runs it (--precision bf16 is for the discriminator)
                    s = self.den.score(x, sigma).float()
                    gd = self._disc_grad(x, sigma) if self.lam != 1.0 else None
                    x, x_mean = diffflow_ve_step(x, s, gd, sigma**2 - grid[k + 1] ** 2, self.lam,
                                                 xi if self.lam > 0 else None)
                else:
                    gd = self._disc_grad(x, sigma)
                    x, x_mean = diffflow_kl_step(x, torch.zeros_like(x), gd, self.etas[k], 0.0, None)
            if finals:
                out[lo:lo + m] = x_mean.cpu()
        return out

    def noised(self, x0: torch.Tensor, k: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``x0 + sigma_k eps`` with fresh noise, and the per-row ``sigma_k``."""
        sig = torch.tensor(self.sigmas, dtype=torch.float32)[k].to(self.ctx.device)
        return x0 + sig.reshape(-1, *([1] * (x0.ndim - 1))) * self.ctx.randn(*x0.shape, generator=g), sig

    def pool_size(self, pool: torch.Tensor) -> int:
        return pool.shape[0] if self.args["fake"] == "samples" else pool.shape[1]

    def fakes(self, pool: torch.Tensor, k: torch.Tensor, j: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Training particles at levels ``k`` from pool entries ``j``: trajectory states, or final samples noised to
        ``sigma_k`` with fresh noise."""
        if self.args["fake"] != "samples":
            return pool[k, j].to(self.ctx.device)
        return self.noised(pool[j].to(self.ctx.device), k, g)[0]

    def train_step(self, batch):
        a = self.args
        step = self.ctx.step
        refresh = a["refresh_every"] or (0 if self.family == "ve" and self.lam == 1.0 else 20)
        if self.pool is None or (refresh > 0 and step - self.pool_step >= refresh):
            self.pool = self.simulate(a["pool"], self.ctx.generator(1), finals=a["fake"] == "samples")
            self.pool_step = step
        g = self.ctx.generator()
        b, n = batch.shape[0], len(self.sigmas)
        k = torch.randint(0, n, (b,), generator=g)
        j = torch.randint(0, self.pool_size(self.pool), (b,), generator=g)
        fake = self.fakes(self.pool, k, j, g)
        real, sig = self.noised(batch, k, g)
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

    @torch.no_grad()
    def evaluate(self, modules):
        """Accuracy per sigma band on particles the network never saw: ``--eval-pool`` fresh trajectories (their
        states, or their final samples noised to each level, as in training) against fresh data batches noised to
        the same levels; every level of the grid is scored on the same number of pairs."""
        a, net = self.args, modules["net"]
        m = a["eval_pool"]
        if m == 0:
            return None
        g = torch.Generator().manual_seed(self.ctx.opts.seed + 7919)
        pool = self.simulate(m, g, finals=a["fake"] == "samples")
        real0 = self.ctx.data.batch(m, seed=self.ctx.opts.seed + 7919, step=0).to(self.ctx.device)
        n = len(self.sigmas)
        hits = torch.zeros(n, 2)
        for k in range(n):
            kk = torch.full((m,), k)
            fake = self.fakes(pool, kk, torch.arange(m), g)
            real, sig = self.noised(real0, kk, g)
            with self.ctx.autocast():
                hits[k, 0] = (net(real, sig).float().reshape(-1) > 0).float().mean()
                hits[k, 1] = (net(fake, sig).float().reshape(-1) < 0).float().mean()
        return {"accuracy_by_sigma": accuracy_by_band(self.sigmas, hits), "pairs_per_level": m, "fake": a["fake"],
                "note": "held-out: fresh trajectories of the score and fresh noise on data batches"}

    def exports(self):
        a = self.args
        time = {"kind": "sigma", "family": self.family, "sigmas": [float(s) for s in self.sigmas],
                "n_steps": len(self.sigmas), "prior_std": self.prior_std, "rho": self.rho}
        if self.etas is not None:
            time["etas"] = [float(e) for e in self.etas]
            time["eta"] = self.eta
        return {"": ("net", {
            "role": "discriminator", "arch": self.arch, "output": "logit", "loss": "vanilla", "real": "high",
            "time": time,
            "objective": {"name": "logistic", "real": "data noised to sigma_k", "fake": (
                "final samples of the l = 1 sampler (VE reverse diffusion with the score) noised to sigma_k"
                if a["fake"] == "samples" else
                "states of the l = 1 sampler (VE reverse diffusion with the score)"
                if self.family == "ve" and self.lam == 1.0 else
                f"states of the l = {self.lam:g} sampler with the current discriminator" if self.family == "ve"
                else "states of the l = 0 flow with the current discriminator"),
                "lambda": self.lam if self.family == "ve" else 0.0,
                "score": getattr(self, "score_ref", None), "pool": a["pool"], "refresh_every": a["refresh_every"],
                "gp": a["gp"], **({"init": self.init_ref} if self.init_ref else {})},
        })}

    def card(self, name, config):
        t = config["time"]
        text = (f"Logistic DiffFlow discriminator, family `{t['family']}`, {t['n_steps']} noise levels from "
                f"{t['sigmas'][0]:.4g} to {t['sigmas'][-1]:.4g} (rho {t['rho']}); trained against "
                f"{config['objective']['fake']} (score: `{config['objective']['score']}`). Sample with "
                "`gpm sample --model diffflow --checkpoint BUNDLE --lambda L` (the grid comes from this config).")
        if config.get("evaluation"):
            text += "\n\n" + accuracy_table(config["evaluation"])
        return text


register_role(RoleSpec("discriminator:diffflow", DiffFlowDiscTrainer,
                       "logistic sigma-conditioned discriminator for DiffFlow (ALGORITHMS.md section 5)", options=[
    Opt("family", str, "ve", "ve (particles of the l = 1 sampler) | kl (the l = 0 flow)", ("ve", "kl")),
    Opt("score", str, None, "score checkpoint (required for ve): registry name, directory, hf: or toy:"),
    Opt("n_steps", int, None, "number of noise levels of the flow (the sampler's steps; default 64)"),
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
    Opt("fake", str, "trajectories", "ve: trajectories (the l = 1 sampler's state at each level) | samples (its "
        "final samples noised to each level: Discriminator Guidance)", ("trajectories", "samples")),
    Opt("lam", float, 1.0, "ve: lambda of the sampler whose states are the fake particles (1: the score alone; "
        "L < 1: the l = L sampler with the current discriminator, re-simulated every --refresh-every steps)"),
    Opt("pool", int, 2048, "trajectories simulated per refresh"),
    Opt("refresh_every", int, 0, "re-simulate the pool every N steps (0: once for ve at --lam 1, else every 20)"),
    Opt("sim_batch", int, 512, "batch size of the simulation"),
    Opt("gp", float, 0.0, "zero-centred gradient penalty weight on noised real data"),
    Opt("beta1", float, 0.5, "Adam beta1"),
    Opt("init", str, None, "start from this DiffFlow discriminator (registry name, directory or hf:): its weights, "
        "architecture and noise grid, for kl its step sizes (--arch/--ch/--mults/--n-steps/--sigma-min/--sigma-max/--eta are "
        "then not used)"),
    Opt("eval_pool", int, 256, "fresh trajectories for the held-out accuracy per sigma band in the card (0: none)"),
]))
