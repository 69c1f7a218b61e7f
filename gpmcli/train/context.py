"""What a training role works with: the common options, the per-step context (devices, generators, optimiser
updates), the :class:`RoleTrainer` interface and the EMA of its networks (the loop is :mod:`gpmcli.train.common`)."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gpmcli.data import Dataset, step_generator

PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainOptions:
    """Options every role takes (``gpm train`` common flags)."""

    steps: int = 1000
    batch_size: int = 128
    lr: float = 2e-4
    ema: float | None = None          # EMA decay of the exported networks (None: no EMA)
    warmup: int = 0                   # linear learning-rate warm-up steps
    seed: int = 0
    device: str | None = None
    precision: str = "fp32"
    save_every: int = 0               # 0: only at the end
    resume: bool = False
    command: str = ""
    grad_clip: float | None = None
    max_minutes: float | None = None  # stop (checkpoint + train_state.pt at the step reached) after this wall time


class TrainContext:
    """What the common loop gives a role: options, data, device, autocast, per-step random streams and the
    optimiser helpers."""

    def __init__(self, opts: TrainOptions, data: Dataset, device: torch.device):
        self.opts, self.data, self.device = opts, data, device
        self.step = 0

    def autocast(self):
        """Mixed precision for network evaluations (``--precision bf16``); particles and losses stay float32."""
        if self.opts.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def generator(self, stream: int = 0) -> torch.Generator:
        """A CPU generator owned by the current step (``stream`` > 0 for independent uses; 1 and 2 are the data's)."""
        return step_generator(self.opts.seed, self.step, stream=10 + stream)

    def randn(self, *shape, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(self.device)

    def rand(self, *shape, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(*shape, generator=generator).to(self.device)

    def adam(self, params, lr: float | None = None, betas=(0.9, 0.999)) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=lr if lr is not None else self.opts.lr, betas=betas)

    def lr_scale(self) -> float:
        w = self.opts.warmup
        return min(1.0, (self.step + 1) / w) if w > 0 else 1.0

    def update(self, opt: torch.optim.Optimizer, loss: torch.Tensor, params=None) -> None:
        """``zero_grad``, backward, optional gradient clipping, warm-up learning rate, step."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.opts.grad_clip:
            torch.nn.utils.clip_grad_norm_(params if params is not None else
                                           [p for g in opt.param_groups for p in g["params"]], self.opts.grad_clip)
        scale = self.lr_scale()
        for g in opt.param_groups:
            g.setdefault("base_lr", g["lr"])
            g["lr"] = g["base_lr"] * scale
        opt.step()


class RoleTrainer:
    """Base class of a role module's trainer. Subclasses set ``role`` (checkpoint role) and implement
    :meth:`setup`, :meth:`train_step`, :meth:`exports`; see :mod:`gpmcli.train`."""

    role = "score"

    def __init__(self, ctx: TrainContext, args: dict[str, Any]):
        self.ctx, self.args = ctx, args

    def setup(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        """Every trained network by name (saved in ``train_state.pt``)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, batch: torch.Tensor) -> dict[str, float]:  # pragma: no cover - interface
        raise NotImplementedError

    def exports(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Checkpoints to write: ``{subdir: (module name, config)}``; subdir ``""`` is the output folder itself. The
        config holds ``role``, ``arch`` and the role data; the loop adds ``data``, ``provenance`` and ``training``."""
        raise NotImplementedError

    def card(self, name: str, config: dict[str, Any]) -> str:
        """Role-specific paragraph for the model card (optional)."""
        return ""

    def evaluate(self, modules: dict[str, nn.Module]) -> dict[str, Any] | None:
        """Held-out figures of the finished networks (``modules``: the exported version of each, EMA where used),
        stored as ``config["evaluation"]`` of the final checkpoint (optional; not run for intermediate saves)."""
        return None

    def extra_state(self) -> dict[str, Any]:
        """Role state beyond networks/optimisers to save for ``--resume`` (tensors and plain types only)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass


class EMA:
    """Exponential moving average of a module's parameters and buffers."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = float(decay)
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)
        self._params = list(self.shadow.parameters())

    def decay_at(self, step: int) -> float:
        """The decay used after step ``step`` (0-based): ``min(decay, (1 + step) / (10 + step))``, so the average
        forgets the random initialisation early in short runs."""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        d = self.decay_at(step)
        # one fused update of every parameter (on an accelerator a kernel per parameter tensor costs more than the
        # arithmetic)
        torch._foreach_lerp_(self._params, [p.detach() for p in module.parameters()], 1.0 - d)
        for s, b in zip(self.shadow.buffers(), module.buffers()):
            s.copy_(b)
