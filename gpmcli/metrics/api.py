"""Library API behind ``gpm fid`` and ``gpm stats``."""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np
import torch

from gpmcli.errors import UsageError
from gpmcli.metrics.features import Pipeline, make_pipeline, pipeline_id
from gpmcli.metrics.frechet import MetricWarning, frechet_distance
from gpmcli.metrics.sources import ImageSource, Stats, default_workers, open_source
from gpmcli.version import versions

log = logging.getLogger("gpm")


class _Moments:
    """Streaming mean / covariance in float64, shifted by the first batch's mean (no catastrophic cancellation)."""

    def __init__(self):
        self.n = 0
        self.shift = self.s1 = self.s2 = None

    def add(self, f: torch.Tensor) -> None:
        f = f.double()
        if self.shift is None:
            self.shift = f.mean(0)
            self.s1 = torch.zeros_like(self.shift)
            self.s2 = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64, device=f.device)
        c = f - self.shift
        self.s1 += c.sum(0)
        self.s2 += c.T @ c
        self.n += f.shape[0]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n < 2:
            raise UsageError(f"need at least 2 images to fit feature statistics, got {self.n}")
        m = self.s1 / self.n
        cov = (self.s2 - self.n * torch.outer(m, m)) / (self.n - 1)
        return (m + self.shift).cpu().numpy(), cov.cpu().numpy()


def extract(source: ImageSource, pipeline: Pipeline, *, n: int | None = None, batch_size: int = 100,
            workers: int | None = None, keep: bool = False, progress=None) -> tuple[_Moments, np.ndarray | None]:
    """Run ``pipeline`` over ``source`` (first ``n`` images); returns moments and, with ``keep``, all features."""
    workers = default_workers() if workers is None else workers
    total = min(n or len(source), len(source))
    from gpmcli.distributed import context

    dist = context()
    if dist.enabled:
        return _extract_sharded(dist, source, pipeline, total, batch_size, workers, keep, progress)
    mom, kept = _Moments(), []
    for imgs in source.batches(batch_size, total, workers):
        f = pipeline(imgs)
        if not torch.isfinite(f).all():
            from gpmcli.errors import NumericalError

            raise NumericalError(f"{source.name}: non-finite features")
        mom.add(f)
        if keep:
            kept.append(f.cpu())
        if progress is not None:
            progress(f.shape[0])
    feats = torch.cat(kept).numpy() if keep else None
    return mom, feats


def _extract_sharded(dist, source, pipeline, total, batch_size, workers, keep, progress):
    """:func:`extract` over N processes: batch j (as one process cuts them) on rank j % N; each round's features are
    gathered and added to the moments in batch order, so every rank ends with the statistics of a 1-process run."""
    from gpmcli.errors import NumericalError

    mom, kept = _Moments(), []
    mine = source.batches(batch_size, total, workers, shard=(dist.rank, dist.world))
    n_batches = -(-total // batch_size)
    for _, j in dist.rounds(n_batches):
        f = None
        with dist.collective():
            if j is not None:
                f = pipeline(next(mine))
                if not torch.isfinite(f).all():
                    raise NumericalError(f"{source.name}: non-finite features")
                f = f.cpu()
        for g in dist.all_gather(f):  # rank order = batch order within the round
            if g is None:
                continue
            mom.add(g.to(pipeline.device) if pipeline.device is not None else g)
            if keep:
                kept.append(g)
            if progress is not None:
                progress(g.shape[0])
    feats = torch.cat(kept).numpy() if keep else None
    return mom, feats


def compute_stats(src, *, features: str = "inception", inception_weights=None, lenet_weights=None,
                  resize: str = "tf1", n: int | None = None, batch_size: int = 100, device=None,
                  workers: int | None = None, pipeline: Pipeline | None = None, progress=None) -> Stats:
    """Feature statistics (mu, sigma, N, pipeline tag, weights sha256) of an image folder / samples.npz / array."""
    source = open_source(src)
    if isinstance(source, Stats):
        raise UsageError(f"{src} already holds statistics")
    pipeline = pipeline or make_pipeline(features, inception_weights=inception_weights, lenet_weights=lenet_weights,
                                         resize_mode=resize, device=device)
    mom, _ = extract(source, pipeline, n=n, batch_size=batch_size, workers=workers, progress=progress)
    mu, sigma = mom.result()
    meta = {"source": source.name, **pipeline.describe(), "versions": versions(("torch", "numpy"))}
    shape = image_shape(source)
    if shape:
        meta["image_shape"] = list(shape)
    return Stats(mu, sigma, mom.n, pipeline.id, pipeline.weights_sha256, meta)


def image_shape(source) -> tuple[int, ...] | None:
    """(C, H, W) of a source's images (the first image of a folder; recorded in statistics files), or None."""
    from gpmcli.metrics.sources import FolderSource, _decode

    if isinstance(source, Stats):
        shape = source.meta.get("image_shape")
        return tuple(shape) if shape else None
    if isinstance(source, FolderSource):
        return tuple(_decode(source.files[0]).shape)
    images = getattr(source, "images", None)
    return tuple(images.shape[1:]) if images is not None else None


def _check_compatible(a: Stats, b: Stats, an: str, bn: str) -> None:
    if a.dim != b.dim:
        raise UsageError(f"feature sizes differ: {an} has {a.dim}-d features, {bn} {b.dim}-d")
    if a.pipeline and b.pipeline and a.pipeline != b.pipeline:
        raise UsageError(f"pipelines differ: {an} was made with {a.pipeline}, {bn} with {b.pipeline}; "
                         "recompute one side with the same --features/--resize")
    if a.weights_sha256 and b.weights_sha256 and a.weights_sha256 != b.weights_sha256:
        raise UsageError(f"feature network weights differ: {an} sha256 {a.weights_sha256[:12]}…, "
                         f"{bn} sha256 {b.weights_sha256[:12]}…")


def fid(gen, ref, *, features: str = "inception", inception_weights=None, lenet_weights=None, resize: str = "tf1",
        n: int | None = None, batch_size: int = 100, device=None, workers: int | None = None, kid: bool = False,
        prdc: bool = False, kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0,
        pipeline: Pipeline | None = None, progress=None) -> dict[str, Any]:
    """Fréchet distance of GEN vs REF (folders, samples.npz, stats .npz, arrays), optionally KID and P/R/D/C.

    Returns a dict with ``fid`` (or ``fd_lenet``), ``n_gen``, ``n_ref``, the pipeline, weights sha256 and versions.
    """
    t0 = time.perf_counter()
    srcs = {"GEN": open_source(gen), "REF": open_source(ref)}
    want_id = pipeline.id if pipeline is not None else pipeline_id(features, resize)
    need_feats = kid or prdc
    if all(isinstance(s, Stats) for s in srcs.values()):
        _check_compatible(srcs["GEN"], srcs["REF"], "GEN", "REF")
    for name, s in srcs.items():
        if isinstance(s, Stats):
            if need_feats:
                raise UsageError(f"{name} is a statistics file: --kid/--prdc need images or samples on both sides")
            if s.pipeline and s.pipeline != want_id:
                raise UsageError(f"pipelines differ: {name} statistics were made with {s.pipeline}, but this run "
                                 f"uses {want_id}; pass the matching --features/--resize")
    if pipeline is None and not all(isinstance(s, Stats) for s in srcs.values()):
        pipeline = make_pipeline(features, inception_weights=inception_weights, lenet_weights=lenet_weights,
                                 resize_mode=resize, device=device)
    stats, feats = {}, {}
    for name, s in srcs.items():
        if isinstance(s, Stats):
            stats[name] = s
            continue
        mom, f = extract(s, pipeline, n=n, batch_size=batch_size, workers=workers, keep=need_feats, progress=progress)
        mu, sigma = mom.result()
        stats[name] = Stats(mu, sigma, mom.n, pipeline.id, pipeline.weights_sha256)
        feats[name] = f
    _check_compatible(stats["GEN"], stats["REF"], "GEN", "REF")
    g, r = stats["GEN"], stats["REF"]
    t1 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricWarning)
        fd = frechet_distance(g.mu, g.sigma, r.mu, r.sigma, n1=g.n or None, n2=r.n or None)
    msgs = [str(w.message) for w in caught if issubclass(w.category, MetricWarning)]
    shapes = {name: image_shape(s) for name, s in srcs.items()}
    if shapes["GEN"] and shapes["REF"] and shapes["GEN"] != shapes["REF"]:
        fmt = {k: "x".join(map(str, v)) for k, v in shapes.items()}
        msgs.append(f"GEN images are {fmt['GEN']} and REF images {fmt['REF']} (channels x height x width): the "
                    "feature network converts both to its own input, so the distance also measures that difference"
                    + (" (gpm's 32x32 MNIST is the 28x28 digits padded by 2: 10,000 such training digits measure "
                       "FD-LeNet 11.5 against the 28x28 test set this way, 1.2 cropped back to 28x28 as "
                       "scripts/eval_mnist_lenet.py does)"
                       if shapes["GEN"][-2:] == (32, 32) and shapes["REF"][-2:] == (28, 28) else ""))
    for m in msgs:
        log.warning("warning: %s", m)
    key = "fd_lenet" if (g.pipeline or want_id).startswith("lenet") else "fid"
    out: dict[str, Any] = {key: fd, "n_gen": g.n, "n_ref": r.n, "pipeline": g.pipeline or r.pipeline or want_id,
                           "dim": g.dim, "weights_sha256": g.weights_sha256 or r.weights_sha256,
                           "weights": pipeline.weights_ref if pipeline is not None else None}
    if kid:
        from gpmcli.metrics.kid import kid as _kid

        with warnings.catch_warnings(record=True) as kc:
            warnings.simplefilter("always", MetricWarning)
            km, ks = _kid(feats["GEN"], feats["REF"], subsets=kid_subsets, subset_size=kid_subset_size, seed=seed,
                          device=pipeline.device)
        msgs += [str(w.message) for w in kc if issubclass(w.category, MetricWarning)]
        out.update(kid_mean=km, kid_std=ks, kid_subsets=kid_subsets,
                   kid_subset_size=min(kid_subset_size, len(feats["GEN"]), len(feats["REF"])))
    if prdc:
        from gpmcli.metrics.knn import prdc as _prdc

        out.update(_prdc(feats["REF"], feats["GEN"], device=pipeline.device))
        out.update(k_pr=3, k_dc=5)
    out["warnings"] = msgs
    out["seconds"] = {"features": round(t1 - t0, 3), "total": round(time.perf_counter() - t0, 3)}
    out["versions"] = versions(("torch", "numpy"))
    return out
