"""Analytic targets: Gaussian mixtures whose noised density, score and denoiser are exact at every sigma.

``q_sigma = sum_k w_k N(mu_k, Sigma_k + sigma^2 I)``, so ``D(x, sigma) = E[x0 | x]`` is available in closed form:
``D = sum_k r_k(x) (mu_k + Sigma_k (Sigma_k + sigma^2 I)^{-1} (x - mu_k))`` with ``r_k`` the posterior weights.
Computations run in float64 and return the input dtype.

Built-in names (``toy:NAME``): ``pentagon`` (GPM: 5 modes on a circle of radius 3, std 0.5, one at (3, 0)), ``8gaussians`` (radius 2,
std 0.1), ``25gaussians`` (5x5 grid with spacing 2 centred on 0, std 0.1), ``gaussian`` (2-D, mean (1, -0.5),
covariance [[1, 0.6], [0.6, 0.5]]). ``toy:PATH.json`` reads ``{"weights": [...], "means": [[...]], "covs": [...]}``;
a cov may be a full matrix, a per-dimension variance list or a scalar variance.

``sigma_max`` is EDM's 80, or 10x the target's extent (largest mode norm + its largest std) when that is larger, so
that the samplers' prior N(0, sigma_max^2 I) stays close to the noised target (the VE samplers' default top, 50,
scales by the same factor).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.base import Denoiser


SIGMA_MAX_PER_SPREAD = 10.0


class GaussianMixture(Denoiser):
    """An exact denoiser for a Gaussian mixture target (any dimension)."""

    def __init__(self, weights, means, covs, name: str = "mixture"):
        super().__init__()
        w = torch.as_tensor(weights, dtype=torch.float64)
        mu = torch.as_tensor(means, dtype=torch.float64)
        if mu.ndim != 2:
            raise UsageError("toy target: 'means' must be a list of K vectors")
        k, d = mu.shape
        if w.shape != (k,) or (w < 0).any() or float(w.sum()) <= 0:
            raise UsageError("toy target: 'weights' must be K non-negative numbers with a positive sum")
        cov = torch.as_tensor(covs, dtype=torch.float64)
        if cov.ndim == 1 and cov.shape[0] == k:  # scalar variance per component
            cov = cov[:, None, None] * torch.eye(d, dtype=torch.float64)
        elif cov.ndim == 2 and cov.shape == (k, d):  # diagonal
            cov = torch.diag_embed(cov)
        if cov.shape != (k, d, d):
            raise UsageError(f"toy target: 'covs' must be K scalars, K x D variances or K x D x D matrices (K={k}, D={d})")
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        evals, evecs = torch.linalg.eigh(cov)
        if (evals < -1e-12).any():
            raise UsageError("toy target: every covariance must be positive semi-definite")
        self.name = name
        self.register_buffer("weights", w / w.sum())
        self.register_buffer("means", mu)
        self.register_buffer("covs", cov)
        self.register_buffer("evals", evals.clamp_min(0))
        self.register_buffer("evecs", evecs)
        # The samplers start from N(0, sigma_max^2 I), which matches the noised target only while the target's extent
        # is small against sigma_max: a mode at distance r from the origin shifts the noised density by r / sigma_max
        # standard deviations. EDM's 80 keeps that below 0.1 up to an extent of 8 (the pentagon's is 3.5); wider
        # targets get sigma_max = 10 x their extent (largest |mu_k| + sqrt of the largest covariance eigenvalue).
        self.spread = float((mu.norm(dim=1) + self.evals.max(-1).values.sqrt()).max())
        self.sigma_min, self.sigma_max = 0.002, max(80.0, SIGMA_MAX_PER_SPREAD * self.spread)
        self.sigma_data = float(math.sqrt((self.second_moment()).clamp_min(1e-12)))

    @property
    def ve_sigma_max(self) -> float:
        """The VE samplers' default top level: score_sde's 50 clipped to sigma_max, scaled like sigma_max above 80."""
        return 50.0 * self.sigma_max / 80.0 if self.sigma_max > 80.0 else min(50.0, self.sigma_max)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def second_moment(self) -> torch.Tensor:
        """Average per-dimension second moment E|x|^2 / D (used as sigma_data)."""
        m2 = (self.means**2).sum(-1) + self.evals.sum(-1)
        return (self.weights * m2).sum() / self.dim

    def mean(self) -> torch.Tensor:
        return (self.weights[:, None] * self.means).sum(0)

    def covariance(self, sigma: float = 0.0) -> torch.Tensor:
        m = self.mean()
        dm = self.means - m
        c = (self.weights[:, None, None] * (self.covs + dm[:, :, None] * dm[:, None, :])).sum(0)
        return c + sigma**2 * torch.eye(self.dim, dtype=c.dtype, device=c.device)

    def _posterior(self, x: torch.Tensor, sigma: torch.Tensor):
        """Per-component quantities at noise ``sigma`` (shape (B,)): log N terms, and (Sigma_k + s^2)^-1 (x - mu_k)."""
        x64 = x.reshape(x.shape[0], -1).to(torch.float64)
        s2 = sigma.to(torch.float64).reshape(-1, 1, 1) ** 2  # (B,1,1)
        lam = self.evals[None] + s2  # (B,K,D)
        diff = x64[:, None, :] - self.means[None]  # (B,K,D)
        proj = torch.einsum("bkd,kde->bke", diff, self.evecs)  # coordinates in each eigenbasis
        maha = (proj**2 / lam).sum(-1)  # (B,K)
        logdet = torch.log(lam).sum(-1)
        logn = -0.5 * (maha + logdet + self.dim * math.log(2 * math.pi))
        prec_diff = torch.einsum("bke,kde->bkd", proj / lam, self.evecs)  # (Sigma+s2)^-1 (x-mu)
        return x64, logn, prec_diff

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float = 0.0) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).expand(x.shape[0])
        _, logn, _ = self._posterior(x, sigma)
        return torch.logsumexp(logn + torch.log(self.weights)[None], dim=1).to(x.dtype)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x64, logn, prec_diff = self._posterior(x, sigma)
        r = torch.softmax(logn + torch.log(self.weights)[None], dim=1)  # (B,K)
        s2 = sigma.to(torch.float64).reshape(-1, 1) ** 2
        score = -(r[:, :, None] * prec_diff).sum(1)
        return (x64 + s2 * score).to(x.dtype).reshape(x.shape)

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        _, logn, prec_diff = self._posterior(x, sigma)
        r = torch.softmax(logn + torch.log(self.weights)[None], dim=1)
        return (-(r[:, :, None] * prec_diff).sum(1)).to(x.dtype).reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator | None = None, sigma: float = 0.0) -> torch.Tensor:
        """``n`` exact samples of ``q_sigma`` (float64)."""
        dev = self.means.device
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, dtype=torch.float64, generator=generator, device=dev)
        scale = torch.sqrt(self.evals[comp] + sigma**2)
        return self.means[comp] + torch.einsum("nde,ne->nd", self.evecs[comp], scale * z)

    def to_json(self) -> dict:
        return {"weights": self.weights.tolist(), "means": self.means.tolist(), "covs": self.covs.tolist()}


def _circle(k: int, radius: float, std: float, phase: float = 0.0) -> GaussianMixture:
    ang = [phase + 2 * math.pi * i / k for i in range(k)]
    means = [[radius * math.cos(a), radius * math.sin(a)] for a in ang]
    return GaussianMixture([1.0] * k, means, [std**2] * k)


def _builtin(name: str) -> GaussianMixture:
    if name == "pentagon":
        gm = _circle(5, 3.0, 0.5)  # GPM's orientation: a vertex at (3, 0)
    elif name == "8gaussians":
        gm = _circle(8, 2.0, 0.1)
    elif name == "25gaussians":
        means = [[2.0 * i, 2.0 * j] for i in range(-2, 3) for j in range(-2, 3)]
        gm = GaussianMixture([1.0] * 25, means, [0.01] * 25)
    elif name == "gaussian":
        gm = GaussianMixture([1.0], [[1.0, -0.5]], [[[1.0, 0.6], [0.6, 0.5]]])
    else:
        raise UsageError(f"unknown toy target {name!r}; built-in: {', '.join(BUILTIN_TOYS)} or toy:PATH.json")
    gm.name = name
    return gm


BUILTIN_TOYS = ("pentagon", "8gaussians", "25gaussians", "gaussian")


def load_toy(spec: str) -> GaussianMixture:
    """``pentagon`` / ``8gaussians`` / ... or a path to a JSON file with ``weights``, ``means``, ``covs``."""
    if spec.endswith(".json") or "/" in spec:
        p = Path(spec)
        if not p.is_file():
            raise UsageError(f"toy target file not found: {spec}")
        try:
            data = json.loads(p.read_text())
            gm = GaussianMixture(data["weights"], data["means"], data["covs"], name=p.stem)
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"toy target {spec}: expected JSON with 'weights', 'means', 'covs' ({e})") from None
        return gm
    return _builtin(spec)


def toy_config(gm: GaussianMixture, ref: str) -> dict:
    """A gpm config for an analytic target, so it can stand wherever a score checkpoint can."""
    return {
        "gpm_format": 1,
        "role": "score",
        "arch": {"name": "toy-gaussian-mixture", "kwargs": gm.to_json()},
        "parameterization": {"type": "analytic", "sigma_min": gm.sigma_min, "sigma_max": gm.sigma_max,
                             "sigma_data": gm.sigma_data},
        "data": {"shape": [gm.dim], "range": None, "dataset": ref},
        "provenance": {"source": ref, "license": "n/a (analytic)"},
    }
