"""Field interfaces shared by every sampler.

A *denoiser* ``D(x, sigma)`` works in sigma-space (the VE view: ``x = x0 + sigma * eps``). Every score
parameterisation (``edm``, ``score``, ``eps``, ``x0``, analytic targets) reduces to it, and the data score is
``(D(x, sigma) - x) / sigma**2`` (docs/algorithms.md#1-score-parameterisations). Samplers only ever see a :class:`Denoiser`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn


def expand_sigma(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Sigma as a tensor broadcastable against ``x`` (shape ``(B, 1, ..., 1)``), in x's dtype and device."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    return s.reshape(-1, *([1] * (x.ndim - 1)))


class Denoiser(nn.Module):
    """``D(x, sigma)``: the posterior mean of clean data given ``x = x0 + sigma * eps``.

    Subclasses implement :meth:`forward` with ``sigma`` a tensor of shape ``(B,)``. ``sigma_min``/``sigma_max`` give
    the noise range the network was trained on (samplers take their default grid from it).
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if s.ndim == 0:
            s = s.expand(x.shape[0])
        return self(x, s)

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """``grad log q_sigma(x) = (D(x, sigma) - x) / sigma^2``."""
        s = expand_sigma(sigma, x)
        return (self.denoise(x, sigma) - x) / s**2


@dataclass
class Component:
    """One loaded network (or analytic object) with its gpm config.

    ``module`` is the raw network as rebuilt from ``config["arch"]`` (or the analytic object for ``toy:`` targets);
    samplers wrap it into a field according to ``role`` and the role data in ``config``.
    """

    role: str
    module: Any
    config: dict
    ref: str
    path: Path | None = None
    sha256: str | None = None

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.config.get("data", {}).get("shape", ()))

    @property
    def data_range(self) -> tuple[float, float] | None:
        r = self.config.get("data", {}).get("range")
        return (float(r[0]), float(r[1])) if r else None


@dataclass
class Bundle:
    """Components by role (``score``, ``discriminator``, ``generator``, ...), as a registry bundle names them."""

    name: str
    components: dict[str, Component] = field(default_factory=dict)
    #: sampler settings the registry gives this bundle, by ``--model`` kind (defaults below the user's own flags)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getitem__(self, role: str) -> Component:
        return self.components[role]

    def get(self, role: str) -> Component | None:
        return self.components.get(role)

    def __contains__(self, role: str) -> bool:
        return role in self.components
