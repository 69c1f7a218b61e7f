"""Precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020) from k-NN balls.

Each real (resp. fake) feature gets a ball whose radius is the distance to its k-th nearest neighbour in its own set
(the point itself counts as the 0-th). A point is "inside" a ball when its distance is strictly smaller than the radius.
  precision = share of fakes inside some real ball          (k = 3)
  recall    = share of reals inside some fake ball          (k = 3)
  density   = (1/k) mean over fakes of the number of real balls containing it   (k = 5)
  coverage  = share of reals whose ball contains at least one fake              (k = 5)
Distances are computed in row chunks, so memory stays O(chunk x N).
"""

from __future__ import annotations

import numpy as np
import torch

from gpmcli.errors import UsageError


def _as_tensor(a, device):
    t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    if not t.is_floating_point():
        t = t.float()
    return t.to(device) if device is not None else t


def _kth_radii(x: torch.Tensor, ks: tuple[int, ...], chunk: int) -> dict[int, torch.Tensor]:
    kmax = max(ks)
    if x.shape[0] <= kmax:
        raise UsageError(f"k-NN metrics need more than {kmax} samples per set, got {x.shape[0]}")
    out = {k: [] for k in ks}
    for i in range(0, x.shape[0], chunk):
        d = torch.cdist(x[i:i + chunk], x)
        vals = torch.topk(d, kmax + 1, dim=1, largest=False).values  # sorted ascending, self at 0
        for k in ks:
            out[k].append(vals[:, k])
    return {k: torch.cat(v) for k, v in out.items()}


@torch.inference_mode()
def prdc(real, fake, *, k_pr: int = 3, k_dc: int = 5, chunk: int = 2048, device=None) -> dict[str, float]:
    """``{"precision", "recall", "density", "coverage"}`` of ``fake`` against ``real`` features (N, D)."""
    r = _as_tensor(real, device)
    f = _as_tensor(fake, device).to(r.dtype)
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1]:
        raise UsageError(f"precision/recall: feature shapes {tuple(r.shape)} and {tuple(f.shape)} do not match")
    rr = _kth_radii(r, tuple(sorted({k_pr, k_dc})), chunk)
    rf = _kth_radii(f, (k_pr,), chunk)[k_pr]
    r_pr, r_dc = rr[k_pr], rr[k_dc]
    in_any_real = torch.zeros(f.shape[0], dtype=torch.bool, device=r.device)
    density_count = torch.zeros((), dtype=torch.float64, device=r.device)
    for j in range(0, f.shape[0], chunk):
        d = torch.cdist(f[j:j + chunk], r)  # (c, Nr)
        in_any_real[j:j + chunk] = (d < r_pr[None, :]).any(1)
        density_count += (d < r_dc[None, :]).sum(dtype=torch.float64)
    recalled = torch.zeros(r.shape[0], dtype=torch.bool, device=r.device)
    covered = torch.zeros(r.shape[0], dtype=torch.bool, device=r.device)
    for i in range(0, r.shape[0], chunk):
        d = torch.cdist(r[i:i + chunk], f)  # (c, Nf)
        recalled[i:i + chunk] = (d < rf[None, :]).any(1)
        covered[i:i + chunk] = d.min(1).values < r_dc[i:i + chunk]
    return {
        "precision": float(in_any_real.double().mean()),
        "recall": float(recalled.double().mean()),
        "density": float(density_count / (k_dc * f.shape[0])),
        "coverage": float(covered.double().mean()),
    }
