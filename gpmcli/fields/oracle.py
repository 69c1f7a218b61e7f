"""Exact log-density-ratio "discriminators" for analytic targets: DiffFlow and Discriminator Flow without training.

A logistic discriminator trained to optimality is ``d(x) = log q(x) / p(x)`` (real density ``q``, particle density
``p``). For a Gaussian-mixture target (:class:`~gpmcli.fields.toy.GaussianMixture`) ``log q_sigma`` is exact at every
noise level; the particle density is *fitted to the current particle ensemble* every time the field is evaluated:

- ``fit="gaussian"``: one Gaussian with the ensemble's mean and covariance. Exact whenever the particles are Gaussian,
  which they stay for a Gaussian target and a Gaussian prior (every drift is then linear in x).
- ``fit="mixture"``: a K-component Gaussian mixture (K = the target's components), started from the target's
  posterior responsibilities at the current noise level and refined by a few EM iterations. For mixture targets.

The ensemble is the batch the field is called with, so an oracle couples the samples of a batch: it is a testing
device, and the outputs of a run with an oracle depend on the batch (give the whole ensemble as one batch).
The fit is treated as a constant when differentiating (``grad d = grad log q_sigma - grad log p_fit``).
"""

from __future__ import annotations

import math

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.base import Component
from gpmcli.fields.discriminator import DiscriminatorField
from gpmcli.fields.toy import GaussianMixture


class EnsembleRatioOracle(DiscriminatorField):
    """``d(x, sigma) = log q_sigma(x) - log p_fit(x)`` with ``p_fit`` fitted to the ensemble ``x``.

    ``sigma``: a fixed noise level of the target (e.g. 0 for Discriminator Flow towards the clean target); None uses
    the noise level the sampler passes (DiffFlow). ``ridge`` is added to fitted covariances.
    """

    def __init__(self, target: GaussianMixture, *, fit: str = "gaussian", sigma: float | None = None,
                 loss: str = "vanilla", time: dict | None = None, em_iters: int = 1, ridge: float = 1e-9):
        super().__init__()
        if fit not in ("gaussian", "mixture"):
            raise UsageError(f"oracle fit must be gaussian or mixture, not {fit!r}")
        self.target, self.fit, self.fixed_sigma = target, fit, sigma
        self.loss, self.time = loss, time or {"kind": "sigma"}
        self.em_iters, self.ridge = int(em_iters), float(ridge)

    # -- fitting ---------------------------------------------------------------------------------------------------
    def _sigma(self, sigma, x: torch.Tensor) -> torch.Tensor:
        s = self.fixed_sigma if self.fixed_sigma is not None else sigma
        if s is None:
            raise UsageError("oracle discriminator: no noise level given")
        s = torch.as_tensor(s, dtype=torch.float64, device=x.device)
        return s.reshape(-1)[0] if s.ndim else s  # one ensemble, one noise level

    @staticmethod
    def _gauss_logpdf(x: torch.Tensor, m: torch.Tensor, c: torch.Tensor):
        """log N(x; m_k, C_k) for every k (x: (B,D), m: (K,D), c: (K,D,D)) and C_k^-1 (x - m_k): (B,K), (B,K,D)."""
        d = x.shape[1]
        chol = torch.linalg.cholesky(c)  # (K,D,D)
        diff = (x[:, None, :] - m[None]).transpose(0, 1)  # (K,B,D)
        sol = torch.cholesky_solve(diff.transpose(1, 2), chol)  # (K,D,B) = C^-1 (x - m)
        maha = (diff * sol.transpose(1, 2)).sum(-1)  # (K,B)
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (K,)
        logn = -0.5 * (maha + logdet[:, None] + d * math.log(2 * math.pi))
        return logn.T, sol.permute(2, 0, 1)

    def fit_params(self, x: torch.Tensor, sigma: torch.Tensor):
        """``(log weights (K,), means (K,D), covariances (K,D,D))`` of the particle fit (float64)."""
        x = x.reshape(x.shape[0], -1).to(torch.float64)
        b, d = x.shape
        eye = torch.eye(d, dtype=torch.float64, device=x.device)
        if self.fit == "gaussian":
            m = x.mean(0, keepdim=True)
            xc = x - m
            c = xc.T @ xc / (b - 1) + self.ridge * eye
            return torch.zeros(1, dtype=torch.float64, device=x.device), m, c[None]
        # mixture: responsibilities of the target's components at this noise level, then EM on the ensemble
        tgt = self.target
        logn, _ = self._gauss_logpdf(x, tgt.means, tgt.covs + sigma**2 * eye)
        resp = torch.softmax(logn + torch.log(tgt.weights)[None], dim=1)  # (B,K)
        for it in range(self.em_iters + 1):
            nk = resp.sum(0) + 1e-12  # (K,)
            logw = torch.log(nk / b)
            m = (resp.T @ x) / nk[:, None]
            xc = x[None] - m[:, None, :]  # (K,B,D)
            c = torch.einsum("kb,kbd,kbe->kde", resp.T, xc, xc) / nk[:, None, None] + self.ridge * eye
            if it < self.em_iters:
                logn, _ = self._gauss_logpdf(x, m, c)
                resp = torch.softmax(logn + logw[None], dim=1)
        return logw, m, c

    # -- the field -------------------------------------------------------------------------------------------------
    def _log_p_and_score(self, x: torch.Tensor, sigma: torch.Tensor):
        logw, m, c = self.fit_params(x, sigma)
        x64 = x.reshape(x.shape[0], -1).to(torch.float64)
        logn, sol = self._gauss_logpdf(x64, m, c)
        a = logn + logw[None]
        rho = torch.softmax(a, dim=1)
        return torch.logsumexp(a, dim=1), -(rho[:, :, None] * sol).sum(1)

    def realness(self, x, *, k=None, n=None, sigma=None):
        s = self._sigma(sigma, x)
        log_p, _ = self._log_p_and_score(x, s)
        return (self.target.log_prob(x.reshape(x.shape[0], -1).to(torch.float64), s) - log_p).to(x.dtype)

    def grad(self, x, *, k=None, n=None, sigma=None):
        s = self._sigma(sigma, x)
        log_p, score_p = self._log_p_and_score(x, s)
        # target log-density and score from one pass over its components
        x64, logn, prec_diff = self.target._posterior(x, s.expand(x.shape[0]))
        a = logn + torch.log(self.target.weights)[None]
        log_q = torch.logsumexp(a, dim=1)
        score_q = -(torch.softmax(a, dim=1)[:, :, None] * prec_diff).sum(1)
        return (log_q - log_p).to(x.dtype), (score_q - score_p).to(x.dtype).reshape(x.shape)


def oracle_component(target: GaussianMixture, *, fit: str = "gaussian", sigma: float | None = None,
                     loss: str = "vanilla", time: dict | None = None, ref: str = "oracle") -> Component:
    """A ``discriminator`` component holding an :class:`EnsembleRatioOracle` (for bundles in tests and scripts)."""
    oracle = EnsembleRatioOracle(target, fit=fit, sigma=sigma, loss=loss, time=time)
    config = {
        "gpm_format": 1, "role": "discriminator", "arch": {"name": "oracle", "kwargs": {"fit": fit}},
        "output": "logit", "loss": loss, "time": oracle.time,
        "data": {"shape": [target.dim], "range": None, "dataset": getattr(target, "name", "mixture")},
        "provenance": {"source": "analytic oracle", "license": "n/a (analytic)"},
    }
    return Component(role="discriminator", module=oracle, config=config, ref=ref)
