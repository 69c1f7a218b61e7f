"""Fréchet distance between Gaussians fitted to two feature sets, in float64.

    FD = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 sum_i sqrt(lambda_i(sqrt(S1) S2 sqrt(S1)))

``sqrt(S1)`` comes from a symmetric eigendecomposition of S1 and the eigenvalues of the symmetric matrix
``sqrt(S1) S2 sqrt(S1)`` from a second one; negative eigenvalues (round-off on rank-deficient covariances) are clipped
to 0. This equals tr sqrt(S1 S2) (S1 S2 is similar to the symmetric PSD matrix above) without ever taking the
eigenvalues of the non-symmetric product or a general matrix square root.
"""

from __future__ import annotations

import warnings

import numpy as np

from gpmcli.errors import NumericalError, UsageError


class MetricWarning(UserWarning):
    """A metric was computed, but under conditions that make it less reliable (few samples, degenerate features)."""


def feature_moments(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of an (N, D) feature matrix."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise UsageError(f"need at least 2 feature vectors to fit a Gaussian, got shape {f.shape}")
    mu = f.mean(0)
    c = f - mu
    sigma = c.T @ c / (f.shape[0] - 1)
    return mu, sigma


def _psd_eig(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = 0.5 * (s + s.T)
    w, v = np.linalg.eigh(s)
    return w, v


def _n_small(w: np.ndarray) -> int:
    """Number of eigenvalues that are zero up to round-off."""
    top = float(np.max(np.abs(w))) if w.size else 0.0
    return int(w.size) if top == 0.0 else int(np.sum(w <= top * w.size * np.finfo(np.float64).eps))


def frechet_distance(mu1, sigma1, mu2, sigma2, *, n1: int | None = None, n2: int | None = None,
                     warn: bool = True) -> float:
    """The Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2).

    ``n1``/``n2`` (sample counts behind each estimate) enable the warning when N <= feature dimension.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise UsageError(f"feature sizes differ: mean {mu1.shape} / {mu2.shape}, covariance {s1.shape} / {s2.shape}")
    for name, a in (("mu1", mu1), ("mu2", mu2), ("sigma1", s1), ("sigma2", s2)):
        if not np.all(np.isfinite(a)):
            raise NumericalError(f"Fréchet distance: {name} holds non-finite values")
    if warn:
        for i, n in ((1, n1), (2, n2)):
            if n is not None and n <= d:
                warnings.warn(f"set {i} has N = {n} <= feature dimension {d}: its covariance is singular and the "
                              "Fréchet distance is strongly biased; use more samples", MetricWarning, stacklevel=2)
    w1, v1 = _psd_eig(s1)
    sqrt_s1 = (v1 * np.sqrt(np.clip(w1, 0.0, None))) @ v1.T
    m = sqrt_s1 @ s2 @ sqrt_s1
    lam = np.linalg.eigvalsh(0.5 * (m + m.T))
    tr_covmean = float(np.sqrt(np.clip(lam, 0.0, None)).sum())
    if warn and not any(n is not None and n <= d for n in (n1, n2)):
        # Features that are constant in a set (dead ReLU units) make its covariance singular but add nothing to the
        # distance; warn only about a deficiency they do not explain, each covariance judged on its own eigenvalues
        # (those of M = sqrt(S1) S2 sqrt(S1) are products of both sets' scales: a unit nearly dead in both, as LeNet
        # has on MNIST, reads as a round-off zero there without being one in either set).
        w2 = np.linalg.eigvalsh(0.5 * (s2 + s2.T))
        small = (_n_small(w1) - int(np.sum(np.diag(s1) <= 0.0)), _n_small(w2) - int(np.sum(np.diag(s2) <= 0.0)))
        bad = 1 if small[0] > 0 else (2 if small[1] > 0 else 0)
        if bad:
            extra = small[bad - 1]
            warnings.warn(f"covariance {bad} is rank-deficient ({extra} zero eigenvalues besides constant features); "
                          "the Fréchet distance may be unreliable", MetricWarning, stacklevel=2)
    diff = mu1 - mu2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return fd
