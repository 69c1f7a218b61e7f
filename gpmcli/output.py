"""Sample output: per-sample PNGs, grid, ``samples.npz``, scatter plot for low-dimensional data, ``run.json``.

Every file is written through a hidden temp file and a rename, so no truncated file is ever visible under its final
name. Resumable state lives in ``DIR/.gpm-parts/``: one ``.npz`` per written batch (its global indices and float32
rows, written after the batch's PNGs) and ``manifest.json`` (what the samples depend on: model, checkpoints, seed,
resolved parameters, data shape). ``run.json`` is removed when a run starts and written last, so it exists only for
a finished run.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gpmcli.checkpoint import atomic_open, atomic_write_bytes, atomic_write_text
from gpmcli.errors import UsageError


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


_SAMPLE_PNG = re.compile(r"^\d{6,}\.png$")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """An uncompressed ``.npz`` that ``np.load`` reads, written atomically and byte-for-byte reproducibly (fixed
    time stamps in the zip, unlike ``np.savez``)."""
    with atomic_open(path) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            arr = np.ascontiguousarray(arr)
            with z.open(info, "w", force_zip64=arr.nbytes > (1 << 31)) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str, sort_keys=True))


class SampleWriter:
    """Writes the samples of one run into ``out_dir``.

    ``pending()`` lists the global indices still to produce (all of them unless ``resume``); ``write(indices, x)``
    stores one batch (PNGs first, then its part file); ``finish(run_info)`` writes the grid / scatter, ``samples.npz``
    and, last, ``run.json``.

    ``identity`` is what the samples depend on (model, checkpoint hashes, seed, resolved parameters); it is kept in
    ``.gpm-parts/manifest.json`` and a ``resume`` with a different identity is refused instead of mixing samples of two
    runs. ``primary=False`` (other processes of a distributed run) skips the clean-up and the manifest, which the
    primary process owns.
    """

    def __init__(self, out_dir: str | Path, n: int, data_shape: tuple[int, ...], data_range: tuple[float, float] | None,
                 formats: tuple[str, ...] = ("png", "npz"), resume: bool = False, target: np.ndarray | None = None,
                 identity: dict[str, Any] | None = None, primary: bool = True):
        self.dir = Path(out_dir)
        self.n = n
        self.shape = tuple(data_shape)
        self.range = data_range
        self.image = is_image_shape(self.shape)
        self.formats = set(formats) if self.image else {"npz"}
        self.target = target
        self.resume = resume
        self.primary = primary
        self.identity = _jsonable({**(identity or {}), "data_shape": list(self.shape),
                                   "data_range": list(data_range) if data_range else None})
        self.previous: dict[str, Any] | None = None  # run.json of the run being resumed, if it had finished
        if self.dir.exists() and not self.dir.is_dir():
            raise UsageError(f"-o {self.dir}: exists and is not a directory")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.parts = self.dir / ".gpm-parts"
        self.manifest = self.parts / "manifest.json"
        if primary:
            self._prepare()

    # ---- start of a run ------------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        was_gpm_dir = self.parts.is_dir() or (self.dir / "run.json").is_file()
        self.parts.mkdir(exist_ok=True)
        for folder in (self.dir, self.parts):  # temp files of a killed run
            for p in folder.glob(".*.tmp"):
                p.unlink(missing_ok=True)
        run_json = self.dir / "run.json"
        if self.resume:
            if run_json.is_file():
                try:
                    self.previous = json.loads(run_json.read_text())
                except ValueError:
                    self.previous = None
            if self.manifest.is_file():
                self._check_identity(json.loads(self.manifest.read_text()))
        run_json.unlink(missing_ok=True)  # from now on the folder does not claim a finished run
        if not self.resume:
            for name in ("samples.npz", "grid.png", "scatter.png"):
                (self.dir / name).unlink(missing_ok=True)
            for p in self.parts.iterdir():
                p.unlink()
            if was_gpm_dir:
                for p in self.dir.iterdir():
                    if _SAMPLE_PNG.match(p.name):
                        p.unlink()
        atomic_write_text(self.manifest, json.dumps(self.identity, indent=2, sort_keys=True) + "\n")

    def _check_identity(self, old: dict[str, Any]) -> None:
        keys = sorted(set(old) | set(self.identity))
        diff = [k for k in keys if old.get(k) != self.identity.get(k)]
        if diff:
            detail = "; ".join(f"{k}: {json.dumps(old.get(k))[:60]} then, {json.dumps(self.identity.get(k))[:60]} now"
                               for k in diff[:3])
            raise UsageError(f"--resume: {self.dir} holds samples of a different run ({detail}); use another -o or "
                             "drop --resume to start over")

    # ---- bookkeeping ---------------------------------------------------------------------------------------------
    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("b*.npz"))

    def _sources(self):
        """(indices, rows loader) of every stored batch; a finished run's ``samples.npz`` counts as one."""
        for p in self._part_files():
            with np.load(p) as z:
                yield z["indices"], p
        npz = self.dir / "samples.npz"
        if self.resume and npz.is_file() and self.manifest.is_file():
            with np.load(npz) as z:
                m = int(z["samples"].shape[0])
            yield np.arange(m), npz

    def done_indices(self) -> set[int]:
        done: set[int] = set()
        for idx, _ in self._sources():
            done.update(int(i) for i in idx)
        if "png" in self.formats:
            pngs = {int(p[:-4]) for p in os.listdir(self.dir) if _SAMPLE_PNG.match(p)}
            done &= pngs
        return done

    def pending(self) -> list[int]:
        if not self.resume:
            return list(range(self.n))
        done = self.done_indices()
        return [i for i in range(self.n) if i not in done]

    def _part(self, indices: list[int]) -> Path:
        import zlib

        crc = zlib.crc32(np.asarray(indices, dtype=np.int64).tobytes())
        return self.parts / f"b{indices[0]:06d}-{indices[-1]:06d}-{crc:08x}.npz"

    # ---- writing -------------------------------------------------------------------------------------------------
    def write(self, indices: list[int], x: np.ndarray) -> None:
        """Store one batch: rows ``x[r]`` are samples ``indices[r]`` (float32, in the data range)."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape != (len(indices), *self.shape):
            raise ValueError(f"batch of shape {x.shape} for {len(indices)} samples of shape {self.shape}")
        if "png" in self.formats:
            imgs = to_uint8(x, self.range)
            for r, i in enumerate(indices):
                atomic_write_bytes(self.dir / f"{i:06d}.png", png_bytes(imgs[r]))
        write_npz(self._part(indices), indices=np.asarray(indices, dtype=np.int64), x=x)

    def collect(self) -> np.ndarray:
        """All ``n`` samples, row i = sample i."""
        out = np.empty((self.n, *self.shape), dtype=np.float32)
        seen = np.zeros(self.n, dtype=bool)
        for idx, path in self._sources():
            with np.load(path) as z:
                rows = z["x"] if "x" in z.files else z["samples"]
            keep = idx < self.n
            out[idx[keep]] = rows[keep]
            seen[idx[keep]] = True
        if not seen.all():
            missing = np.flatnonzero(~seen)
            raise RuntimeError(f"{len(missing)} samples were never written (first: {missing[0]})")
        return out

    def finalize(self) -> dict[str, str]:
        """``samples.npz``, ``grid.png`` or ``scatter.png`` from the stored batches; returns the files written."""
        allx = self.collect()
        files = {}
        if "npz" in self.formats:
            write_npz(self.dir / "samples.npz", samples=allx)
            files["npz"] = str(self.dir / "samples.npz")
        if self.image:
            grid = grid_image(to_uint8(allx[:min(self.n, 64)], self.range))
            atomic_write_bytes(self.dir / "grid.png", png_bytes(grid))
            files["grid"] = str(self.dir / "grid.png")
            if "png" in self.formats:
                files["png"] = str(self.dir / "NNNNNN.png")
        elif len(self.shape) == 1 and self.shape[0] >= 2:
            atomic_write_bytes(self.dir / "scatter.png", png_bytes(scatter_image(allx, self.target)))
            files["scatter"] = str(self.dir / "scatter.png")
        return files

    def write_run_json(self, run_info: dict[str, Any]) -> None:
        """The last file of a run. The per-batch parts are dropped once ``samples.npz`` holds every sample."""
        atomic_write_text(self.dir / "run.json", json.dumps(run_info, indent=2, default=str) + "\n")
        if "npz" in self.formats:
            for p in self._part_files():
                p.unlink(missing_ok=True)

    def finish(self, run_info: dict[str, Any]) -> dict[str, str]:
        files = self.finalize()
        self.write_run_json({**run_info, "files": files})
        return files
