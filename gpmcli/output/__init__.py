"""Sample output: per-sample PNGs, grid, ``samples.npz``, scatter plot for low-dimensional data, ``run.json``.

Every file is written through a hidden temp file and a rename, so no truncated file is ever visible under its final
name. Resumable state lives in ``DIR/.gpm-parts/``: one ``.npz`` per written batch (its global indices, float32 rows
and the count of values that were outside the data range, written after the batch's PNGs), ``manifest.json`` (what
the samples depend on: model, checkpoints, seed, resolved parameters, data shape) and ``lock`` (the writer's
``flock``, with its pid). ``run.json`` is removed when a run starts and written last, so it exists only for a finished
run. ``samples.npz`` is assembled from the parts a chunk of rows at a time, so memory does not grow with ``n``.

The pieces: :mod:`.images` (PNG, grid, scatter), :mod:`.npz` (reproducible and streamed ``.npz``), :mod:`.lock`
(the folder lock, Ctrl-C deferral, one-line I/O errors), :mod:`.parts` (the stored batches); this module holds
:class:`SampleWriter`, which ties them together.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from gpmcli.checkpoint import atomic_write_bytes, atomic_write_text
from gpmcli.errors import UsageError
from gpmcli.output.images import grid_image, is_image_shape, png_bytes, scatter_image, to_uint8
from gpmcli.output.lock import FolderLock, OutputError, _os_error, deferred_sigint
from gpmcli.output.npz import write_npz, write_npz_stream
from gpmcli.output.parts import Finished, assemble, finished_rows, held_up_to, part_files, sources

__all__ = ["FolderLock", "OutputError", "SampleWriter", "deferred_sigint", "grid_image", "is_image_shape",
           "png_bytes", "scatter_image", "to_uint8", "write_npz", "write_npz_stream"]

_SAMPLE_PNG = re.compile(r"^\d{6,}\.png$")

def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str, sort_keys=True))


SCATTER_MAX = 10_000  # scatter.png shows the first this many samples


class SampleWriter:
    """Writes the samples of one run into ``out_dir``.

    ``pending()`` lists the global indices still to produce (all of them unless ``resume``); ``write(indices, x)``
    stores one batch (PNGs first, then its part file); ``finish(run_info)`` writes the grid / scatter, ``samples.npz``
    and, last, ``run.json``. Memory stays bounded by a batch and a chunk of rows, whatever ``n`` is.

    ``clamp`` (default) clips values to ``data_range`` before anything is written and counts the values that were
    outside it (``out_of_range`` in ``run.json``); ``clamp=False`` keeps the raw values.

    ``identity`` is what the samples depend on (model, checkpoint hashes, seed, resolved parameters); it is kept in
    ``.gpm-parts/manifest.json`` and a ``resume`` with a different identity is refused instead of mixing samples of two
    runs. ``primary=False`` (other processes of a distributed run) skips the lock, the clean-up and the manifest, which
    the primary process owns. Call ``close()`` when the run ends (it releases the folder's lock).
    """

    def __init__(self, out_dir: str | Path, n: int, data_shape: tuple[int, ...], data_range: tuple[float, float] | None,
                 formats: tuple[str, ...] = ("png", "npz"), resume: bool = False, target: np.ndarray | None = None,
                 identity: dict[str, Any] | None = None, primary: bool = True, clamp: bool = True):
        self.dir = Path(out_dir)
        self.n = n
        self.shape = tuple(data_shape)
        self.range = data_range
        self.clamp = bool(clamp) and data_range is not None
        self.image = is_image_shape(self.shape)
        self.formats = set(formats) if self.image else {"npz"}
        self.target = target
        self.resume = resume
        self.primary = primary
        extra = {"raw_values": True} if (data_range is not None and not clamp) else {}
        self.identity = _jsonable({**(identity or {}), **extra, "data_shape": list(self.shape),
                                   "data_range": list(data_range) if data_range else None})
        self.previous: dict[str, Any] | None = None  # run.json of the run being resumed, if it had finished
        self.outside: int | None = None  # values outside the data range (set by finalize)
        self.lock: FolderLock | None = None
        self.written = 0  # samples written by this run
        if self.dir.exists() and not self.dir.is_dir():
            raise OutputError(f"-o {self.dir}: exists and is not a directory")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {self.dir}: {e.strerror or e}") from None
        self.parts = self.dir / ".gpm-parts"
        self.manifest = self.parts / "manifest.json"
        if primary:
            try:
                self.parts.mkdir(exist_ok=True)
                self.lock = FolderLock(self.parts / "lock")
                self.lock.acquire()
                self._prepare()
            except OSError as e:
                self.close()
                raise _os_error(e, self.parts) from None
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()

    # ---- start of a run ------------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        import logging

        log = logging.getLogger("gpm")
        if self.lock and self.lock.took_over:
            log.info("%s: taking over from pid %d, which is no longer running", self.dir, self.lock.took_over)
        was_gpm_dir = (self.dir / "run.json").is_file() or self.manifest.is_file() or any(self._part_files())
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
                try:
                    old = json.loads(self.manifest.read_text())
                except ValueError:
                    raise UsageError(f"--resume: {self.manifest} is unreadable, so the samples in {self.dir} cannot be "
                                     "matched to this run; drop --resume to start over") from None
                self._check_identity(old)
            self._check_resume_n()
        run_json.unlink(missing_ok=True)  # from now on the folder does not claim a finished run
        if not self.resume:
            for name in ("samples.npz", "grid.png", "scatter.png"):
                (self.dir / name).unlink(missing_ok=True)
            for p in self.parts.iterdir():
                if p.name != "lock":
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

    def _check_resume_n(self) -> None:
        """A resume never drops samples: -n below what the folder holds is refused."""
        held = held_up_to(self.parts, self.dir / "samples.npz" if self.manifest.is_file() else None)
        if held >= self.n:
            raise UsageError(f"--resume with -n {self.n}: {self.dir} already holds samples up to index {held}; "
                             f"pass -n {held + 1} or more (or drop --resume to start over)")

    # ---- bookkeeping ---------------------------------------------------------------------------------------------
    def _part_files(self):
        """(path, first index, last index) of every stored batch, in index order of their first sample."""
        return part_files(self.parts)

    def _sources(self) -> list:
        """The stored batches and, when extending a finished run, its ``samples.npz`` (:func:`sources`)."""
        rows = finished_rows(self.dir / "samples.npz") if self.resume and self.manifest.is_file() else None
        recorded = ((self.previous or {}).get("out_of_range") or {}).get("values")
        return sources(self.parts, rows, recorded, self._clip)

    def _done_mask(self) -> np.ndarray:
        done = np.zeros(self.n, dtype=bool)
        for s in self._sources():
            if isinstance(s, Finished):
                done[: min(self.n, s.last + 1)] = True
                continue
            with np.load(s.path) as z:
                idx = z["indices"]
            done[idx[idx < self.n]] = True
        if "png" in self.formats:
            pngs = np.zeros(self.n, dtype=bool)
            with os.scandir(self.dir) as it:  # streamed: no list of every file name
                for e in it:
                    if _SAMPLE_PNG.match(e.name) and int(e.name[:-4]) < self.n:
                        pngs[int(e.name[:-4])] = True
            done &= pngs
        return done

    def done_indices(self) -> set[int]:
        return {int(i) for i in np.flatnonzero(self._done_mask())}

    def pending(self):
        """The indices still to produce, in increasing order: ``range(n)`` for a fresh run, else an int64 array."""
        if not self.resume:
            return range(self.n)
        return np.flatnonzero(~self._done_mask())

    def _part(self, indices) -> Path:
        import zlib

        crc = zlib.crc32(np.asarray(indices, dtype=np.int64).tobytes())
        return self.parts / f"b{int(indices[0]):06d}-{int(indices[-1]):06d}-{crc:08x}.npz"

    def _clip(self, x: np.ndarray) -> tuple[int, np.ndarray]:
        """(number of values outside the data range, x clipped to it unless the raw values are kept)."""
        if self.range is None:
            return 0, x
        lo, hi = self.range
        k = int(np.count_nonzero((x < lo) | (x > hi)))
        if self.clamp and k:
            x = np.clip(x, lo, hi)
        return k, x

    # ---- writing -------------------------------------------------------------------------------------------------
    def write(self, indices, x: np.ndarray) -> None:
        """Store one batch: rows ``x[r]`` are samples ``indices[r]`` (float32)."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape != (len(indices), *self.shape):
            raise ValueError(f"batch of shape {x.shape} for {len(indices)} samples of shape {self.shape}")
        outside, x = self._clip(x)
        path = self.dir
        with deferred_sigint():  # a Ctrl-C now takes effect once the batch is stored
            try:
                if "png" in self.formats:
                    imgs = to_uint8(x, self.range)
                    for r, i in enumerate(indices):
                        path = self.dir / f"{int(i):06d}.png"
                        atomic_write_bytes(path, png_bytes(imgs[r]))
                path = self._part(indices)
                write_npz(path, indices=np.asarray(indices, dtype=np.int64), x=x,
                          outside=np.asarray(outside, np.int64))
            except OSError as e:
                raise _os_error(e, path) from None
            self.written += len(indices)

    def chunks(self):
        """``(first index, rows)`` covering samples ``0 … n-1`` in order, read from the stored batches a chunk at a
        time (:func:`assemble`); counts the values outside the data range into ``self.outside``."""
        self.outside = yield from assemble(self._sources(), self.n, self.shape, self.dir)

    def finalize(self) -> dict[str, str]:
        """``samples.npz``, ``grid.png`` or ``scatter.png`` from the stored batches; returns the files written."""
        files = {}
        head: list[np.ndarray] = []  # the first samples, for the grid or the scatter plot
        keep = 64 if self.image else SCATTER_MAX

        def rows():
            got = 0
            for _, buf in self.chunks():
                if got < keep:
                    head.append(buf[: keep - got].copy())
                    got += len(head[-1])
                yield buf

        try:
            if "npz" in self.formats:
                path = self.dir / "samples.npz"
                write_npz_stream(path, "samples", (self.n, *self.shape), rows())
                files["npz"] = str(path)
            else:
                for _ in rows():
                    pass
            first = np.concatenate(head)
            if self.image:
                path = self.dir / "grid.png"
                atomic_write_bytes(path, png_bytes(grid_image(to_uint8(first, self.range))))
                files["grid"] = str(path)
                if "png" in self.formats:
                    files["png"] = str(self.dir / "NNNNNN.png")
            elif len(self.shape) == 1 and self.shape[0] >= 2:
                path = self.dir / "scatter.png"
                atomic_write_bytes(path, png_bytes(scatter_image(first, self.target)))
                files["scatter"] = str(path)
        except OSError as e:
            raise _os_error(e, path) from None
        return files

    def out_of_range(self) -> dict[str, Any] | None:
        """What ``run.json`` reports under ``out_of_range`` (None when the data has no range)."""
        if self.range is None or self.outside is None:
            return None
        total = self.n * int(np.prod(self.shape, dtype=np.int64))
        return {"range": list(self.range), "values": int(self.outside), "fraction": self.outside / max(total, 1),
                "clamped": self.clamp}

    def write_run_json(self, run_info: dict[str, Any]) -> None:
        """The last file of a run. The per-batch parts are dropped once ``samples.npz`` holds every sample."""
        try:
            atomic_write_text(self.dir / "run.json", json.dumps(run_info, indent=2, default=str) + "\n")
        except OSError as e:
            raise _os_error(e, self.dir / "run.json") from None
        if "npz" in self.formats:
            for p, _, _ in self._part_files():
                p.unlink(missing_ok=True)

    def finish(self, run_info: dict[str, Any]) -> dict[str, str]:
        files = self.finalize()
        self.write_run_json({**run_info, "files": files, "out_of_range": self.out_of_range()})
        return files
