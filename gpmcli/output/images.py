"""Images of samples: uint8 conversion, PNG bytes, the grid of the first samples and the 2-D scatter plot."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image


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
