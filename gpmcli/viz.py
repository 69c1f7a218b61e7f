"""Pictures of particle flows: trajectory animations (GIF, or WebP when asked for).

``frames`` is ``(T, N, *shape)``: T snapshots of N particles along the flow. Low-dimensional data becomes a scatter
per frame (first two coordinates, target samples in grey, a fixed axis range over the last frames so the picture
does not jump); image data becomes an image grid per frame (at most 64 images).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from gpmcli.checkpoint import atomic_write_bytes
from gpmcli.output import grid_image, is_image_shape, scatter_image, to_uint8


def trajectory_frames(frames: np.ndarray, data_range=None, target=None, size: int = 384,
                      max_images: int = 64) -> list[np.ndarray]:
    """RGB uint8 pictures, one per frame."""
    frames = np.asarray(frames)
    if frames.ndim < 3:
        raise ValueError("frames must be (T, N, *shape)")
    shape = frames.shape[2:]
    out = []
    if is_image_shape(shape):
        for f in frames:
            imgs = to_uint8(f[:max_images], data_range)
            g = grid_image(imgs)
            out.append(np.repeat(g, 3, axis=-1) if g.shape[-1] == 1 else g[..., :3])
        return out
    pts = frames.reshape(frames.shape[0], frames.shape[1], -1)
    if pts.shape[-1] < 2:
        pts = np.concatenate([pts, np.zeros_like(pts)], -1)
    ref = pts[-1] if target is None else np.concatenate([pts[-1, :, :2], np.asarray(target)[:, :2]])
    finite = ref[np.isfinite(ref).all(1)][:, :2]
    lim = max(float(np.quantile(np.abs(finite), 0.995)) * 1.3, 1e-3) if len(finite) else 1.0
    for f in pts:
        out.append(scatter_image(f, target, size=size, lim=lim))
    return out


def write_trajectory(out_dir: Path, frames: np.ndarray, data_range, target=None, fmt: str = "gif",
                     duration_ms: int = 80) -> Path:
    """Write ``out_dir/trajectory.gif`` (or ``.webp``): the particles along the flow, last frame held longer."""
    import io

    pics = [Image.fromarray(p) for p in trajectory_frames(frames, data_range, target)]
    if not pics:
        raise ValueError("no frames to write")
    durations = [duration_ms] * len(pics)
    durations[-1] = max(1000, duration_ms)
    buf = io.BytesIO()
    if fmt == "webp":
        pics[0].save(buf, format="WEBP", save_all=True, append_images=pics[1:], duration=durations, loop=0,
                     lossless=True)
    elif fmt == "gif":
        pics = [p.convert("P", palette=Image.ADAPTIVE, colors=64) for p in pics]
        pics[0].save(buf, format="GIF", save_all=True, append_images=pics[1:], duration=durations, loop=0,
                     optimize=False, disposal=1)
    else:
        raise ValueError(f"unknown animation format {fmt!r}")
    path = Path(out_dir) / f"trajectory.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path
