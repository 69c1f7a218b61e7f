"""Sample output: per-sample PNGs, grid, ``samples.npz``, scatter plot for low-dimensional data, ``run.json``.

Every file is written through a temp file and a rename (never a truncated file under its final name).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gpmcli.checkpoint import atomic_write_bytes, atomic_write_text


def is_image_shape(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[0] in (1, 3, 4)


def to_uint8(x: np.ndarray, data_range: tuple[float, float] | None) -> np.ndarray:
    """(N, C, H, W) float in ``data_range`` -> (N, H, W, C) uint8 (round half to even, clipped)."""
    lo, hi = data_range or (-1.0, 1.0)
    y = (x.astype(np.float64) - lo) / (hi - lo) * 255.0
    y = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1))


def png_bytes(img: np.ndarray) -> bytes:
    """(H, W, C) uint8 -> PNG bytes (deterministic: no time stamps)."""
    if img.shape[-1] == 1:
        pil = Image.fromarray(img[..., 0], mode="L")
    else:
        pil = Image.fromarray(img)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def grid_image(imgs: np.ndarray, ncol: int | None = None, pad: int = 2) -> np.ndarray:
    n, h, w, c = imgs.shape
    ncol = ncol or max(1, int(math.ceil(math.sqrt(n))))
    nrow = int(math.ceil(n / ncol))
    out = np.zeros((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = imgs[i]
    return out


def scatter_image(points: np.ndarray, target: np.ndarray | None = None, size: int = 512, lim: float | None = None) -> np.ndarray:
    """A 2-D scatter (first two coordinates) of ``points`` (blue) over ``target`` samples (grey), as RGB uint8."""
    from PIL import ImageDraw

    pts = points[:, :2].astype(np.float64)
    if lim is None:
        allp = pts if target is None else np.concatenate([pts, target[:, :2]])
        finite = allp[np.isfinite(allp).all(1)]
        lim = float(np.quantile(np.abs(finite), 0.995)) * 1.15 if len(finite) else 1.0
        lim = max(lim, 1e-3)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)

    def to_px(p):
        return (p[:, 0] / lim * 0.5 + 0.5) * (size - 1), (0.5 - p[:, 1] / lim * 0.5) * (size - 1)

    c = (size - 1) / 2
    draw.line([(0, c), (size - 1, c)], fill=(230, 230, 230))
    draw.line([(c, 0), (c, size - 1)], fill=(230, 230, 230))
    for arr, col, r in ((target, (170, 170, 170), 1), (pts, (31, 119, 180), 1.5)):
        if arr is None:
            continue
        xs, ys = to_px(arr[:, :2])
        for x, y in zip(xs, ys):
            if np.isfinite(x) and np.isfinite(y):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=col)
    return np.asarray(img)


class SampleWriter:
    """Writes the samples of one run into ``out_dir``.

    ``pending()`` lists the global indices still to produce (all of them unless ``resume``); ``write(indices, x)``
    stores one batch; ``finish(run_info)`` writes the grid / scatter, ``samples.npz`` and, last, ``run.json``.
    """

    def __init__(self, out_dir: str | Path, n: int, data_shape: tuple[int, ...], data_range: tuple[float, float] | None,
                 formats: tuple[str, ...] = ("png", "npz"), resume: bool = False, target: np.ndarray | None = None):
        self.dir = Path(out_dir)
        self.n = n
        self.shape = tuple(data_shape)
        self.range = data_range
        self.image = is_image_shape(self.shape)
        self.formats = set(formats) if self.image else {"npz"}
        self.target = target
        self.resume = resume
        self.dir.mkdir(parents=True, exist_ok=True)
        self.parts = self.dir / ".gpm-parts"
        self.parts.mkdir(exist_ok=True)
        if not resume:
            (self.dir / "run.json").unlink(missing_ok=True)
            for p in self.parts.glob("*.npy"):
                p.unlink()

    def _part(self, i: int) -> Path:
        return self.parts / f"{i:06d}.npy"

    def pending(self) -> list[int]:
        if not self.resume:
            return list(range(self.n))
        todo = []
        for i in range(self.n):
            done = self._part(i).is_file()
            if "png" in self.formats:
                done = done and (self.dir / f"{i:06d}.png").is_file()
            if not done:
                todo.append(i)
        return todo

    def write(self, indices: list[int], x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32)
        imgs = to_uint8(x, self.range) if ("png" in self.formats) else None
        for r, i in enumerate(indices):
            if imgs is not None:
                atomic_write_bytes(self.dir / f"{i:06d}.png", png_bytes(imgs[r]))
            buf = io.BytesIO()
            np.save(buf, x[r])
            atomic_write_bytes(self._part(i), buf.getvalue())

    def collect(self) -> np.ndarray:
        return np.stack([np.load(self._part(i)) for i in range(self.n)]).astype(np.float32)

    def finish(self, run_info: dict[str, Any]) -> dict[str, str]:
        allx = self.collect()
        files = {}
        if "npz" in self.formats:
            buf = io.BytesIO()
            np.savez(buf, samples=allx)
            atomic_write_bytes(self.dir / "samples.npz", buf.getvalue())
            files["npz"] = str(self.dir / "samples.npz")
        if self.image:
            grid = grid_image(to_uint8(allx[:min(self.n, 64)], self.range))
            atomic_write_bytes(self.dir / "grid.png", png_bytes(grid))
            files["grid"] = str(self.dir / "grid.png")
        elif self.shape and self.shape[-1] >= 2 and len(self.shape) == 1:
            atomic_write_bytes(self.dir / "scatter.png", png_bytes(scatter_image(allx, self.target)))
            files["scatter"] = str(self.dir / "scatter.png")
        run_info = {**run_info, "files": files}
        atomic_write_text(self.dir / "run.json", json.dumps(run_info, indent=2, default=str) + "\n")
        return files

