"""Adversarial losses and the shared machinery of gpm's GAN-family trainers (ALGORITHMS.md sections 4, 6 and 8).

Losses ``(a, b, c)`` of section 4: the discriminator minimises ``mean a(f(fake)) - mean b(f(real)) [+ GP]``; particles
and generators minimise ``mean c(f(x))``.

- ``vanilla``: ``a = softplus(u)``, ``b = -softplus(-u)``, ``c = softplus(-u)`` (logistic loss, non-saturating
  generator loss; ``f`` is the logit of "real", high on real data);
- ``ipm``: ``a = -u``, ``b = -u``, ``c = u`` (``f`` low on real data, as GPM trains it);
- ``hinge``: ``a = relu(1 + u)``, ``b = -relu(1 - u)``, ``c = -u`` (high on real).

:func:`disc_config` records the matching reading convention for :mod:`gpmcli.fields.discriminator` (``output``,
``loss``, ``real``), so a trained discriminator is read the way it was trained.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from gpmcli.errors import UsageError

LOSSES = ("vanilla", "ipm", "hinge")


def _check(loss: str) -> None:
    if loss not in LOSSES:
        raise UsageError(f"unknown adversarial loss {loss!r}; expected one of {', '.join(LOSSES)}")


def loss_a(loss: str, u: torch.Tensor) -> torch.Tensor:
    _check(loss)
    return {"vanilla": lambda: F.softplus(u), "ipm": lambda: -u, "hinge": lambda: F.relu(1 + u)}[loss]()


def loss_b(loss: str, u: torch.Tensor) -> torch.Tensor:
    _check(loss)
    return {"vanilla": lambda: -F.softplus(-u), "ipm": lambda: -u, "hinge": lambda: -F.relu(1 - u)}[loss]()


def loss_c(loss: str, u: torch.Tensor) -> torch.Tensor:
    _check(loss)
    return {"vanilla": lambda: F.softplus(-u), "ipm": lambda: u, "hinge": lambda: -u}[loss]()


def discriminator_loss(loss: str, f_fake: torch.Tensor, f_real: torch.Tensor) -> torch.Tensor:
    """``mean a(f(fake)) - mean b(f(real))``."""
    return loss_a(loss, f_fake).mean() - loss_b(loss, f_real).mean()


def particle_loss(loss: str, f_fake: torch.Tensor) -> torch.Tensor:
    """``mean c(f(x))``: what generators (and particles) minimise."""
    return loss_c(loss, f_fake).mean()


def gradient_penalty(fn: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor, center: float = 0.0) -> torch.Tensor:
    """``mean (|grad f(x_hat)| - center)^2`` at ``x_hat = alpha real + (1 - alpha) fake`` (``alpha`` per sample,
    in [0, 1]); ``center = 0`` is the zero-centred penalty GPM uses, ``1`` WGAN-GP's. Differentiable in the network."""
    a = alpha.reshape(-1, *([1] * (real.ndim - 1))).to(real.dtype)
    xh = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    out = fn(xh).reshape(-1)
    (g,) = torch.autograd.grad(out.sum(), xh, create_graph=True)
    return (g.reshape(g.shape[0], -1).norm(dim=1) - center).pow(2).mean()


def disc_config(loss: str) -> dict:
    """How :mod:`gpmcli.fields.discriminator` must read a network trained with ``loss``."""
    _check(loss)
    return {"output": "logit" if loss == "vanilla" else "critic", "loss": loss,
            "real": "low" if loss == "ipm" else "high"}


def optimal_vanilla_logit(log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """The logistic-loss optimum ``f* = log q - log p`` (real density q, fake density p), for tests and docs."""
    return log_q - log_p


# ---- shared machinery of the GAN-family trainers ---------------------------------------------------------------------

import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from torch import nn  # noqa: E402

STATE_FILE = "train_state.pt"


def build_net(name: str, **kwargs) -> tuple[nn.Module, dict]:
    """A registered architecture and its ``arch`` config entry."""
    from gpmcli.nets import build_arch

    arch = {"name": name, "kwargs": kwargs}
    return build_arch(arch), arch


def adam(params, lr: float = 2e-4, betas=(0.5, 0.999)) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas))


class AdversarialTrainer:
    """Base of the trainers: named modules and optimisers, one ``torch.Generator`` for every random draw (data batches,
    latents, noise, flow steps) so that a resumed run continues exactly where an uninterrupted one would be.

    Subclasses set ``self.modules`` / ``self.optims`` (dicts), implement :meth:`step` (one iteration, returns scalar
    logs) and :meth:`export` (write the gpm checkpoint(s) under ``out``)."""

    role = "gan"

    def __init__(self, data, *, seed: int = 0, device: str | torch.device = "cpu"):
        self.data, self.device = data, torch.device(device)
        self.rng = torch.Generator(device="cpu")
        self.rng.manual_seed(int(seed))
        self.modules: dict[str, nn.Module] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}
        self.iteration = 0

    # random draws on the CPU generator, moved to the device (reproducible across devices)
    def randn(self, *shape) -> torch.Tensor:
        return torch.randn(*shape, generator=self.rng).to(self.device)

    def rand(self, *shape) -> torch.Tensor:
        return torch.rand(*shape, generator=self.rng).to(self.device)

    def randint(self, high: int, shape) -> torch.Tensor:
        return torch.randint(high, tuple(shape), generator=self.rng).to(self.device)

    def real(self, n: int) -> torch.Tensor:
        return self.data.batch(n, self.rng).to(self.device)

    def step(self) -> dict[str, float]:  # pragma: no cover - interface
        raise NotImplementedError

    def export(self, out: Path, info: dict) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "rng": self.rng.get_state(),
                "modules": {k: m.state_dict() for k, m in self.modules.items()},
                "optims": {k: o.state_dict() for k, o in self.optims.items()}, "extra": self.extra_state()}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        self.rng.set_state(state["rng"])
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optims.items():
            o.load_state_dict(state["optims"][k])
        self.load_extra_state(state.get("extra") or {})


def save_state(trainer: AdversarialTrainer, out: Path) -> None:
    import io

    from gpmcli.checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(trainer.state_dict(), buf)
    atomic_write_bytes(Path(out) / STATE_FILE, buf.getvalue())


def load_state(trainer: AdversarialTrainer, out: Path) -> bool:
    p = Path(out) / STATE_FILE
    if not p.is_file():
        return False
    trainer.load_state_dict(torch.load(p, map_location=trainer.device, weights_only=True))
    return True


def fit(trainer: AdversarialTrainer, steps: int, out: str | Path, *, info: dict | None = None,
        save_every: int = 0, log_every: int = 0, resume: bool = False, log: Callable[[str], None] | None = None,
        keep_state: bool = True) -> dict:
    """Run ``trainer`` to ``steps`` iterations, exporting the checkpoint(s) every ``save_every`` iterations and at the
    end; ``resume`` continues from ``out/train_state.pt``. Returns the last logs plus ``wall_s``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info = dict(info or {})
    wall0 = 0.0
    if resume:
        if not load_state(trainer, out):
            raise UsageError(f"--resume: no {STATE_FILE} in {out}; train without --resume first")
        try:
            wall0 = float(json.loads((out / "train_meta.json").read_text())["wall_s"])
        except (OSError, ValueError, KeyError):
            wall0 = 0.0
    t0, logs = time.perf_counter(), {}
    while trainer.iteration < steps:
        logs = trainer.step()
        trainer.iteration += 1
        it = trainer.iteration
        if any(not math.isfinite(v) for v in logs.values()):
            from gpmcli.errors import NumericalError

            raise NumericalError(f"training diverged at iteration {it}: {logs}", step=it)
        if log and log_every and (it % log_every == 0 or it == steps):
            log(f"[{it}/{steps}] " + " ".join(f"{k} {v:.4g}" for k, v in logs.items()))
        if save_every and it % save_every == 0 and it < steps:
            _checkpoint(trainer, out, info, wall0 + time.perf_counter() - t0, keep_state)
    wall = wall0 + time.perf_counter() - t0
    _checkpoint(trainer, out, info, wall, keep_state)
    return {**logs, "wall_s": wall}


def _checkpoint(trainer: AdversarialTrainer, out: Path, info: dict, wall: float, keep_state: bool) -> None:
    meta = {**info, "iterations": trainer.iteration, "wall_s": round(wall, 1)}
    trainer.export(out, meta)
    if keep_state:
        save_state(trainer, out)
    (out / "train_meta.json").write_text(json.dumps({"iterations": trainer.iteration, "wall_s": wall}) + "\n")
