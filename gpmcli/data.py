"""Training data by name or path, as ``gpm train --data`` takes it.

- a toy target name (``pentagon``, ``8gaussians``, ... or ``toy:NAME`` / ``toy:PATH.json``): exact draws from the
  analytic mixture of :mod:`gpmcli.fields.toy` (an infinite stream, never the same point twice);
- ``mnist``: the idx files (``train-images-idx3-ubyte[.gz]``) from ``--data-dir``, else ``$GPM_DATA``, else a
  ``shared/assets/mnist`` folder next to (or inside) the source tree. MNIST as GPM uses it: padded by 2 to 32x32,
  scaled to [-1, 1], shape (1, 32, 32);
- ``hf:ORG/NAME[@REV][/SUBFOLDER]``: a Hub dataset repository downloaded through :mod:`gpmcli.hub`, then read as a
  folder (idx files or images);
- any folder of images (Pillow; grayscale when every image is, else RGB; all images must share one size unless
  ``image_size`` resizes them), scaled to [-1, 1].

Batches are a pure function of ``(seed, step)`` (:meth:`Dataset.batch`), so a resumed run sees exactly the batches an
uninterrupted one would have seen. Finite datasets are shuffled once per epoch with a permutation seeded from
``(seed, epoch)``; toy targets draw a fresh batch from a generator seeded from ``(seed, step)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from gpmcli.errors import UsageError
from gpmcli.noise import sample_seed

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
MNIST_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
MNIST_LABELS = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator owned by training step ``step`` (``stream`` separates independent uses within a step)."""
    g = torch.Generator()
    g.manual_seed(sample_seed(int(seed) + 7919 * int(stream), int(step)))
    return g


class Dataset:
    """A training dataset: ``shape`` of one sample, value ``range``, ``name`` (recorded in the checkpoint)."""

    name: str = "data"
    shape: tuple[int, ...] = ()
    range: tuple[float, float] | None = (-1.0, 1.0)

    def batch(self, batch_size: int, seed: int, step: int) -> torch.Tensor:  # pragma: no cover - interface
        """The float32 batch of training step ``step`` (deterministic in ``(seed, step)``)."""
        raise NotImplementedError

    def batches(self, batch_size: int, seed: int = 0, start: int = 0) -> Iterator[torch.Tensor]:
        """Infinite iterator over the batches of steps ``start, start + 1, ...``."""
        step = start
        while True:
            yield self.batch(batch_size, seed, step)
            step += 1

    def describe(self) -> dict:
        return {"shape": list(self.shape), "range": list(self.range) if self.range else None, "dataset": self.name}


class ToyDataset(Dataset):
    """Exact samples of an analytic Gaussian mixture (``gpmcli.fields.toy``)."""

    def __init__(self, spec: str):
        from gpmcli.fields.toy import load_toy

        self.target = load_toy(spec)
        self.name = f"toy:{spec}"
        self.shape = (self.target.dim,)
        self.range = None

    def batch(self, batch_size: int, seed: int, step: int) -> torch.Tensor:
        return self.target.sample(batch_size, step_generator(seed, step, stream=1)).float()


class TensorDataset(Dataset):
    """An in-memory float32 tensor ``(N, *shape)`` in ``range``, served in seeded per-epoch permutations."""

    def __init__(self, x: torch.Tensor, name: str, data_range=(-1.0, 1.0)):
        if len(x) == 0:
            raise UsageError(f"{name}: the dataset is empty")
        self.x = x.float().contiguous()
        self.name = name
        self.shape = tuple(x.shape[1:])
        self.range = tuple(data_range) if data_range else None
        self._perm_epoch, self._perm = -1, None

    def __len__(self) -> int:
        return len(self.x)

    def _permutation(self, seed: int, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            self._perm = torch.randperm(len(self.x), generator=step_generator(seed, epoch, stream=2))
            self._perm_epoch = epoch
        return self._perm

    def indices(self, batch_size: int, seed: int, step: int) -> torch.Tensor:
        n = len(self.x)
        start = step * batch_size
        out, filled = [], 0
        while filled < batch_size:
            epoch, pos = divmod(start + filled, n)
            take = min(batch_size - filled, n - pos)
            out.append(self._permutation(seed, epoch)[pos:pos + take])
            filled += take
        return torch.cat(out)

    def batch(self, batch_size: int, seed: int, step: int) -> torch.Tensor:
        return self.x[self.indices(batch_size, seed, step)]


def mnist_to_gpm(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 (N, 1, 28, 28) -> float32 (N, 1, 32, 32) in [-1, 1], zero-padded by 2 (background stays -1)."""
    x = torch.from_numpy(np.array(images_u8, copy=True)).float() / 127.5 - 1.0
    return torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _find_idx(folder: Path, split: str = "train", kind: str = "images") -> Path | None:
    stem = (MNIST_FILES if kind == "images" else MNIST_LABELS)[split]
    for base in (folder, folder / "mnist", folder / "MNIST" / "raw"):
        for name in (stem + ".gz", stem):
            if (base / name).is_file():
                return base / name
    return None


def mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the MNIST idx files: ``data_dir``, else ``$GPM_DATA``, else ``shared/assets/mnist`` found
    next to or inside the source tree. Raises a one-line :class:`UsageError` when none has them."""
    if data_dir is not None:
        p = Path(data_dir)
        if not p.is_dir():
            raise UsageError(f"--data-dir {p}: no such folder")
        if _find_idx(p) is None:
            raise UsageError(f"--data-dir {p}: no {MNIST_FILES['train']}[.gz] in it (nor in {p}/mnist)")
        return p
    env = os.environ.get("GPM_DATA")
    if env:
        p = Path(env)
        if _find_idx(p) is None:
            raise UsageError(f"$GPM_DATA={env}: no {MNIST_FILES['train']}[.gz] there; point it at the MNIST idx files")
        return p
    root = _repo_root()
    for cand in (root / "shared" / "assets" / "mnist", root.parent / "shared" / "assets" / "mnist"):
        if _find_idx(cand) is not None:
            return cand
    raise UsageError("MNIST not found: pass --data-dir DIR (with train-images-idx3-ubyte.gz) or set $GPM_DATA, or "
                     "--data hf:ORG/NAME for a Hub copy")


def load_mnist_images(data_dir: str | os.PathLike | None = None, split: str = "train") -> torch.Tensor:
    """MNIST ``split`` (train | test) as GPM uses it: float32 (N, 1, 32, 32) in [-1, 1]."""
    from gpmcli.metrics.sources import read_idx_images

    path = _find_idx(mnist_dir(data_dir), split)
    if path is None:
        raise UsageError(f"no MNIST {split} images ({MNIST_FILES[split]}[.gz]) in {mnist_dir(data_dir)}")
    return mnist_to_gpm(read_idx_images(path))


def load_mnist_labels(data_dir: str | os.PathLike | None = None, split: str = "train") -> np.ndarray:
    import gzip

    path = _find_idx(mnist_dir(data_dir), split, kind="labels")
    if path is None:
        raise UsageError(f"no MNIST {split} labels ({MNIST_LABELS[split]}[.gz]) in {mnist_dir(data_dir)}")
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    return np.frombuffer(raw, dtype=np.uint8, offset=8).copy()


def load_image_folder(folder: str | os.PathLike, image_size: int | None = None) -> torch.Tensor:
    """Every image under ``folder`` (recursive, sorted) as float32 (N, C, H, W) in [-1, 1]; C = 1 when all images
    are grayscale, else 3."""
    from PIL import Image

    root = Path(folder)
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UsageError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    imgs = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.load()
                imgs.append(im.copy())
        except OSError as e:
            raise UsageError(f"{p}: not a readable image ({e})") from None
    mode = "L" if all(im.mode in ("L", "1", "I;16", "I") for im in imgs) else "RGB"
    arrs = []
    for p, im in zip(paths, imgs):
        im = im.convert(mode)
        if image_size:
            im = im.resize((image_size, image_size), Image.BICUBIC)
        a = np.asarray(im, dtype=np.uint8)
        arrs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    sizes = {a.shape for a in arrs}
    if len(sizes) > 1:
        raise UsageError(f"{root}: images have different sizes {sorted(sizes)[:3]}; pass --image-size to resize them")
    x = torch.from_numpy(np.stack(arrs)).float() / 127.5 - 1.0
    return x


def load_dataset(spec: str, data_dir: str | os.PathLike | None = None, image_size: int | None = None) -> Dataset:
    """A :class:`Dataset` from a ``--data`` value (see the module docstring)."""
    from gpmcli.fields.toy import BUILTIN_TOYS

    if not spec:
        raise UsageError("--data is empty: give a toy name, mnist, hf:ORG/NAME or an image folder")
    if spec.startswith("toy:"):
        return ToyDataset(spec[4:])
    if spec in BUILTIN_TOYS:
        return ToyDataset(spec)
    if spec.lower() == "mnist":
        return TensorDataset(load_mnist_images(data_dir), "mnist")
    if spec.startswith("hf:"):
        from gpmcli.hub import download_repo

        folder = download_repo(spec)
        if _find_idx(folder) is not None:
            return TensorDataset(load_mnist_images(folder), spec)
        return TensorDataset(load_image_folder(folder, image_size), spec)
    p = Path(spec)
    if p.is_dir():
        if _find_idx(p) is not None:
            return TensorDataset(load_mnist_images(p), str(p))
        return TensorDataset(load_image_folder(p, image_size), str(p))
    if p.exists():
        raise UsageError(f"--data {spec}: expected a folder of images, not a file")
    raise UsageError(f"unknown --data {spec!r}: a toy name ({', '.join(BUILTIN_TOYS)}), mnist, hf:ORG/NAME or an "
                     "image folder")
