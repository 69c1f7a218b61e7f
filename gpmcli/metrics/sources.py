"""Inputs of ``gpm fid`` / ``gpm stats``: image folders (PNG/JPEG), ``samples.npz`` and statistics ``.npz`` files.

Images reach the feature pipelines as uint8 tensors (B, C, H, W) with C = 1 (grayscale) or 3 (RGB). Folders are read
in sorted file-name order (top level only), decoded by a pool of worker processes.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from gpmcli.errors import UsageError

log = logging.getLogger("gpm")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class Stats:
    """Gaussian statistics of one feature set and the pipeline that produced them."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    pipeline: str
    weights_sha256: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def save_stats(path: str | Path, stats: Stats) -> Path:
    """Write ``mu``, ``sigma`` (float64), ``n``, ``pipeline``, ``weights_sha256`` and JSON ``meta`` atomically."""
    from gpmcli.checkpoint import atomic_write_bytes
    import io

    p = Path(path)
    if p.suffix != ".npz":
        raise UsageError(f"statistics file must end in .npz: {p}")
    buf = io.BytesIO()
    np.savez(buf, mu=stats.mu.astype(np.float64), sigma=stats.sigma.astype(np.float64), n=np.int64(stats.n),
             pipeline=np.array(stats.pipeline), weights_sha256=np.array(stats.weights_sha256),
             meta=np.array(json.dumps(stats.meta, sort_keys=True)))
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(p, buf.getvalue())
    return p


def is_stats_file(path: Path) -> bool:
    if path.suffix != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return "mu" in z.files and "sigma" in z.files
    except Exception:
        return False


def load_stats(path: str | Path) -> Stats:
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            mu = np.asarray(z["mu"], dtype=np.float64)
            sigma = np.asarray(z["sigma"], dtype=np.float64)
            n = int(z["n"]) if "n" in z.files else 0
            pipeline = str(z["pipeline"]) if "pipeline" in z.files else ""
            sha = str(z["weights_sha256"]) if "weights_sha256" in z.files else ""
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"{p}: not a readable statistics file ({e})") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise UsageError(f"{p}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
    if not pipeline:
        log.warning("%s carries no pipeline tag (not written by gpm stats?); assuming it matches", p)
    return Stats(mu, sigma, n, pipeline, sha, meta)


def _decode(path: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
                im = im.convert("L")
                return np.asarray(im, dtype=np.uint8)[None]
            im = im.convert("RGB")
            return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
    except (OSError, ValueError, SyntaxError) as e:  # PIL's UnidentifiedImageError is an OSError
        raise UsageError(f"{path}: not a readable image ({type(e).__name__}); remove or replace it") from None


def _decode_many(paths: list[str]) -> list[np.ndarray]:
    return [_decode(p) for p in paths]


class ImageSource:
    """Something that yields uint8 image batches (B, C, H, W)."""

    name: str

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def batches(self, batch_size: int, n: int | None = None, workers: int = 0,
                shard: tuple[int, int] | None = None) -> Iterator[torch.Tensor]:
        """Batches of ``batch_size`` images (the first ``n``); ``shard=(rank, world)`` yields only the batches ``j`` with
        ``j % world == rank`` (a process's share in a distributed run)."""
        raise NotImplementedError  # pragma: no cover


class FolderSource(ImageSource):
    def __init__(self, path: Path):
        self.path = path
        self.name = str(path)
        files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if (path / "run.json").is_file():  # a gpm sample folder: per-sample NNNNNN.png only (no grid, animation)
            files = [p for p in files if p.stem.isdigit()]
        self.files = sorted(str(p) for p in files)
        if not self.files:
            raise UsageError(f"{path}: no PNG/JPEG images in this folder")

    def __len__(self) -> int:
        return len(self.files)

    def batches(self, batch_size: int, n: int | None = None, workers: int = 0,
                shard: tuple[int, int] | None = None) -> Iterator[torch.Tensor]:
        files = self.files[: n or len(self.files)]
        chunks = [files[i:i + batch_size] for i in range(0, len(files), batch_size)]
        if shard is not None:
            chunks = chunks[shard[0]::shard[1]]
        shape = None

        def stack(imgs: list[np.ndarray], names: list[str]) -> torch.Tensor:
            nonlocal shape
            for im, name in zip(imgs, names):
                if shape is None:
                    shape = im.shape
                elif im.shape != shape:
                    raise UsageError(f"{name}: image of shape {im.shape[1:]}x{im.shape[0]} differs from the first "
                                     f"image's {shape[1:]}x{shape[0]}; all images in a folder must share one size and "
                                     "colour mode")
            return torch.from_numpy(np.stack(imgs))

        if workers <= 0:
            for c in chunks:
                yield stack(_decode_many(c), c)
            return
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            # split each batch into per-worker pieces; keep a bounded number of batches in flight
            def submit(c):
                step = max(1, -(-len(c) // workers))
                return [pool.submit(_decode_many, c[i:i + step]) for i in range(0, len(c), step)]

            pending = [submit(c) for c in chunks[:2]]
            for k, c in enumerate(chunks):
                futs = pending.pop(0)
                if k + 2 < len(chunks):
                    pending.append(submit(chunks[k + 2]))
                imgs = [im for f in futs for im in f.result()]
                yield stack(imgs, c)


def _to_uint8_nchw(x: np.ndarray, data_range: tuple[float, float] | None, name: str) -> np.ndarray:
    if x.ndim == 3:  # (N, H, W) grayscale
        x = x[:, None]
    if x.ndim != 4:
        raise UsageError(f"{name}: samples of shape {x.shape[1:]} are not images")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):  # NHWC
        x = x.transpose(0, 3, 1, 2)
    if x.shape[1] not in (1, 3):
        raise UsageError(f"{name}: images need 1 or 3 channels, got shape {x.shape[1:]}")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    lo, hi = data_range
    y = (x.astype(np.float64) - lo) / (hi - lo) * 255.0
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


class ArraySource(ImageSource):
    """``samples.npz`` (key ``samples``; float in the data range recorded in ``run.json`` beside it, or uint8)."""

    def __init__(self, path: Path, data_range: tuple[float, float] | None = None):
        self.path = path
        self.name = str(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                key = "samples" if "samples" in z.files else ("images" if "images" in z.files else None)
                if key is None:
                    raise UsageError(f"{path}: no 'samples' array (keys: {', '.join(z.files)})")
                x = z[key]
        except (OSError, ValueError) as e:
            raise UsageError(f"{path}: not a readable .npz file ({e})") from None
        if x.dtype != np.uint8:
            data_range = data_range or self._range_from_run_json(x)
        self.images = _to_uint8_nchw(x, data_range, str(path))

    def _range_from_run_json(self, x: np.ndarray) -> tuple[float, float]:
        rj = self.path.parent / "run.json"
        if rj.is_file():
            try:
                r = json.loads(rj.read_text()).get("data_range")
                if r:
                    return float(r[0]), float(r[1])
            except ValueError:
                pass
        guess = (0.0, 1.0) if float(np.nanmin(x)) >= 0.0 else (-1.0, 1.0)
        log.warning("%s: no data range recorded (no run.json beside it); assuming [%g, %g]", self.path, *guess)
        return guess

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batches(self, batch_size: int, n: int | None = None, workers: int = 0,
                shard: tuple[int, int] | None = None) -> Iterator[torch.Tensor]:
        n = min(n or len(self), len(self))
        rank, world = shard or (0, 1)
        for i in range(rank * batch_size, n, batch_size * world):
            yield torch.from_numpy(np.array(self.images[i:min(i + batch_size, n)]))


class TensorSource(ImageSource):
    """In-memory uint8 images (N, C, H, W) (library use and tests)."""

    def __init__(self, images, name: str = "<array>"):
        x = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        self.images = _to_uint8_nchw(x, (0.0, 1.0), name) if x.dtype != np.uint8 else _to_uint8_nchw(x, None, name)
        self.name = name

    def __len__(self) -> int:
        return int(self.images.shape[0])

    batches = ArraySource.batches


def read_idx_images(path: str | Path) -> np.ndarray:
    """An MNIST-style idx3 image file (optionally .gz) -> uint8 (N, 1, H, W)."""
    import gzip
    import struct

    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise UsageError(f"{p}: cannot read ({e})") from None
    if len(data) < 16:
        raise UsageError(f"{p}: not an idx3 image file")
    magic, n, h, w = struct.unpack(">IIII", data[:16])
    if magic != 0x803 or len(data) != 16 + n * h * w:
        raise UsageError(f"{p}: not an idx3 uint8 image file (magic {magic:#x})")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, 1, h, w)


class IdxSource(TensorSource):
    """MNIST-style ``*-idx3-ubyte[.gz]`` files."""

    def __init__(self, path: Path):
        super().__init__(read_idx_images(path), name=str(path))


def open_source(src, data_range: tuple[float, float] | None = None) -> ImageSource | Stats:
    """An image folder, ``samples.npz``, statistics ``.npz``, or an in-memory array / :class:`Stats`."""
    if isinstance(src, (Stats, ImageSource)):
        return src
    if isinstance(src, (np.ndarray, torch.Tensor)):
        return TensorSource(src)
    p = Path(src)
    if p.is_dir():
        # a gpm sample folder with samples.npz: read the array (same uint8 values as its PNGs, no decoding)
        if (p / "samples.npz").is_file() and ((p / "run.json").is_file() or not any(p.glob("*.png"))):
            return ArraySource(p / "samples.npz", data_range)
        return FolderSource(p)
    if not p.exists():
        raise UsageError(f"{p}: no such file or folder")
    if "idx3-ubyte" in p.name:
        return IdxSource(p)
    if p.suffix == ".npz":
        return load_stats(p) if is_stats_file(p) else ArraySource(p, data_range)
    raise UsageError(f"{p}: expected an image folder, samples.npz, a statistics .npz or an idx3-ubyte file")


def default_workers() -> int:
    return max(0, min(8, (os.cpu_count() or 1) - 1))
