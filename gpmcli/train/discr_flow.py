"""``gpm train discriminator --for discr-flow``: the time-conditioned discriminator of GPM's Discriminator Flow
(ALGORITHMS.md section 4).

One optimiser step per data batch: particles ``z_0 ~ N(0, I)`` are moved by the *current* discriminator,
``z_{k+1} = z_k + (eta / N) v(z_k, k / N)`` for ``k = 0..N-2`` (no graph through the trajectory; the sampler's own
velocity field, :class:`~gpmcli.fields.discriminator.NetDiscriminator`), one random step ``k_i`` is picked per sample,
and the discriminator minimises ``mean a(f(z_i, t_i)) - mean b(f(x_i, t_i)) + lambda_GP mean (|grad f(x_hat_i, t_i)| -
center)^2`` with the real sample at the same ``t_i = k_i / N``. ``--refresh-every K`` simulates a trajectory pool of
``--pool`` particles once every K steps and draws the (particle, step) pairs of K optimiser steps from it (cheaper, and
recorded in the config). The flow time is embedded with Fourier features whose frequencies are a saved buffer.
The config's ``time`` block carries ``n_steps`` (N) and ``eta`` that ``gpm sample --model discr-flow`` must use.
"""

from __future__ import annotations

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.discriminator import NetDiscriminator
from gpmcli.integrate import em_step
from gpmcli.train import Opt, RoleSpec, register_role
from gpmcli.train.adversarial import LOSSES, adam, build_net, disc_config, discriminator_loss, gradient_penalty
from gpmcli.train.common import RoleTrainer


def default_flow_net(shape: tuple[int, ...], width: int | None = None, depth: int = 3, fourier_scale: float = 1.0):
    """``(f(x, t), arch)``: a time-conditioned MLP for vectors, a time-conditioned DCGAN discriminator for images."""
    if len(shape) == 1:
        return build_net("mlp", in_dim=shape[0], out_dim=1, hidden=width or 128, depth=depth, conditional=True,
                         cond_dim=32, fourier_scale=fourier_scale, act="lrelu")
    c, h, w = shape
    if h != w or h < 8 or h & (h - 1):
        raise UsageError(f"the DCGAN networks need square power-of-two images (>= 8 px), not {h}x{w}")
    return build_net("time-dcgan-discriminator", nc=c, ndf=width or 32, image_size=h, cond_dim=32,
                     fourier_scale=fourier_scale)


class DiscrFlowTrainer(RoleTrainer):
    role = "discriminator"

    def setup(self):
        a, shape = self.args, tuple(self.ctx.data.shape)
        if a["flow_steps"] < 1 or a["eta"] <= 0 or a["refresh_every"] < 1 or a["gp"] < 0:
            raise UsageError("--flow-steps and --refresh-every must be >= 1, --eta positive and --gp >= 0")
        self.n_steps, self.eta = int(a["flow_steps"]), float(a["eta"])
        self.pool_size = int(a["pool"] or self.ctx.opts.batch_size)
        self.reading = disc_config(a["loss"])
        self.D, self.arch = default_flow_net(shape, a["width"], a["depth"], a["fourier_scale"])
        self.D = self.D.to(self.ctx.device)
        self.opt = adam(self.D.parameters(), self.ctx.opts.lr, (a["beta1"], 0.999))
        self.time = {"kind": "flow-time", "n_steps": self.n_steps, "eta": self.eta,
                     "embedding": "Fourier features of t = k/N (frequencies saved with the weights)",
                     "refresh_every": int(a["refresh_every"]), "pool": self.pool_size}
        self.field = NetDiscriminator(self.D, output=self.reading["output"], loss=a["loss"], time=self.time,
                                      real=self.reading["real"], data_shape=shape)
        self.traj: torch.Tensor | None = None  # (N, pool, *shape): z_0..z_{N-1}

    def modules(self):
        return {"discriminator": self.D}

    def optimizers(self):
        return {"discriminator": self.opt}

    def f(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with self.ctx.autocast():
            return self.D(x, t).reshape(x.shape[0]).float()

    @torch.no_grad()
    def simulate(self, z: torch.Tensor) -> torch.Tensor:
        """``z_0..z_{N-1}`` of the flow under the current discriminator (eval mode, no graph), ``(N, B, ...)``."""
        was = self.D.training
        self.D.eval()
        n, dt = self.n_steps, self.eta / self.n_steps
        zs = [z]
        for k in range(n - 1):
            _, v = self.field.velocity(z, k=k, n=n)
            z, _ = em_step(z, v, dt)
            zs.append(z)
        self.D.train(was)
        return torch.stack(zs)

    def train_step(self, real):
        a, b, g = self.args, real.shape[0], self.ctx.generator()
        if self.traj is None or self.ctx.step % a["refresh_every"] == 0:
            self.traj = self.simulate(self.ctx.randn(self.pool_size, *self.ctx.data.shape, generator=g))
        if a["refresh_every"] == 1 and self.pool_size == b:
            idx = torch.arange(b, device=real.device)  # one trajectory per sample, as in section 4
        else:
            idx = torch.randint(self.pool_size, (b,), generator=g).to(real.device)
        k = torch.randint(self.n_steps, (b,), generator=g).to(real.device)
        fake = self.traj[k, idx]
        t = k.to(real.dtype) / self.n_steps
        loss = discriminator_loss(a["loss"], self.f(fake, t), self.f(real, t))
        if a["gp"]:
            loss = loss + a["gp"] * gradient_penalty(lambda x: self.f(x, t), real, fake,
                                                     self.ctx.rand(b, generator=g), a["gp_center"])
        self.ctx.update(self.opt, loss)
        return {"loss_d": float(loss.detach())}

    def extra_state(self):
        return {"traj": self.traj} if self.traj is not None else {}

    def load_extra_state(self, state):
        self.traj = state.get("traj")

    def exports(self):
        return {"": ("discriminator", {"role": "discriminator", "arch": self.arch, **self.reading,
                                       "time": self.time})}

    def card(self, name, config):
        a, t = self.args, self.time
        gp = f", gradient penalty {a['gp']} (centre {a['gp_center']})" if a["gp"] else ", no gradient penalty"
        pool = ("a fresh trajectory per sample every step" if a["refresh_every"] == 1 and self.pool_size ==
                self.ctx.opts.batch_size else f"a pool of {self.pool_size} trajectories re-simulated every "
                f"{a['refresh_every']} steps")
        return (f"Discriminator Flow discriminator ({a['loss']} loss{gp}), conditioned on the flow time k/N with "
                f"Fourier features. Sample with `gpm sample --model discr-flow --checkpoint DIR`: N = {t['n_steps']} "
                f"steps, eta = {t['eta']} (the sampler reads them from this config). Training particles: {pool}.")


register_role(RoleSpec("discriminator:discr-flow", DiscrFlowTrainer,
                       "time-conditioned discriminator for Discriminator Flow (ALGORITHMS.md section 4)", options=[
    Opt("loss", str, "vanilla", "vanilla | ipm | hinge", LOSSES),
    Opt("flow_steps", int, 56, "flow steps N (the sampler uses the same)"),
    Opt("eta", float, 20.0, "flow length eta (step eta/N; the sampler uses the same)"),
    Opt("gp", float, 0.0, "gradient penalty weight (GPM MNIST: 0.04 zero-centred)"),
    Opt("gp_center", float, 0.0, "gradient penalty centre"),
    Opt("refresh_every", int, 1, "simulate the particle trajectories every K steps and re-use them in between"),
    Opt("pool", int, None, "particles per simulated pool (default: the batch size)"),
    Opt("width", int, None, "MLP width (default 128) or DCGAN base channels (default 32)"),
    Opt("depth", int, 3, "MLP hidden layers"),
    Opt("fourier_scale", float, 1.0, "std of the Fourier frequencies of the flow time"),
    Opt("beta1", float, 0.5, "Adam beta1 (beta2 is 0.999)"),
]))
