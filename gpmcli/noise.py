"""Per-sample random streams.

Sample ``i`` of a run seeded with ``seed`` owns one ``torch.Generator`` seeded from ``(seed, i)``. Every random draw of
its chain (initial noise, every step's noise, a MALA uniform) comes from that generator, in the order the sampler asks
for it. A batch therefore produces the same rows whatever other samples share it, which makes output independent of
the batch size and of the number of processes (docs/interfaces.md#determinism).

Samplers never call ``torch.randn`` themselves: they take a :class:`BatchNoise` and call :meth:`BatchNoise.randn`.

Two engines give each sample its own stream:

- ``generator`` (CPU and MPS): one ``torch.Generator`` per sample, one call per sample and draw.
- ``philox`` (CUDA): Philox4x32-10 (Salmon et al. 2011, the counter-based generator of Random123 and of CUDA's
  curand), written with int64 tensor operations. Sample ``i``'s key is its 63-bit seed; the counter is
  ``(block, draw, 0, 0)``, ``draw`` counting that sample's draws; each counter gives four 32-bit words, turned into
  uniforms on (0, 1) with 24-bit resolution and, for normals, pairwise Box-Muller. A draw for the whole batch is one
  sequence of about a hundred elementwise kernels instead of one kernel launch per sample, which on an H200 cost
  as much as the denoiser's own forward pass at batch 2000 (benchmarks/README.md).

Both make a sample's draws a function of (seed, index, draw number) only, so the batch size and the number of
processes do not change them; the two engines (hence CPU and CUDA runs) draw different numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def sample_seed(seed: int, index: int) -> int:
    """The 63-bit seed of sample ``index`` in a run with global seed ``seed`` (SeedSequence mixing, no collisions
    between nearby (seed, index) pairs)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, int(index)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


_M32 = 0xFFFFFFFF
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)


def philox4x32(counter: Sequence[torch.Tensor], key: Sequence[torch.Tensor], rounds: int = 10):
    """Philox4x32-``rounds`` on int64 tensors holding 32-bit words (broadcast together): four counter words and two
    key words in, four words out. Products of two 32-bit words wrap modulo 2^64 in int64, which keeps both halves."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(rounds):
        p0, p1 = c0 * _PHILOX_M[0], c2 * _PHILOX_M[1]
        c0, c1, c2, c3 = ((p1 >> 32) & _M32) ^ c1 ^ k0, p1 & _M32, ((p0 >> 32) & _M32) ^ c3 ^ k1, p0 & _M32
        k0, k1 = (k0 + _PHILOX_W[0]) & _M32, (k1 + _PHILOX_W[1]) & _M32
    return c0, c1, c2, c3


def _uniform24(words: torch.Tensor) -> torch.Tensor:
    """32-bit words to float32 uniforms on (0, 1): the top 24 bits, centred in their bin (exact in float32)."""
    return ((words >> 8).to(torch.float32) + 0.5) * (1.0 / 16777216.0)


class BatchNoise:
    """Random streams for the samples ``indices`` of a run.

    ``randn(*shape)`` returns a tensor of shape ``(len(indices), *shape)`` whose row ``r`` is drawn from the stream
    of sample ``indices[r]``. Draws are made in float32 on the stream's device, then cast to ``dtype``. ``engine``:
    ``"generator"`` or ``"philox"`` (module docstring); by default Philox on CUDA, generators elsewhere.
    """

    def __init__(self, seed: int, indices: Sequence[int], device: torch.device | str = "cpu",
                 engine: str | None = None):
        self.seed = int(seed)
        self.indices = [int(i) for i in indices]
        self.device = torch.device(device)
        gen_device = self.device if self.device.type in ("cuda", "mps", "xpu") else torch.device("cpu")
        self._gen_device = gen_device
        self.engine = engine or ("philox" if gen_device.type == "cuda" else "generator")
        if self.engine not in ("philox", "generator"):
            raise ValueError(f"unknown noise engine {self.engine!r}")
        self._generators = []
        if self.engine == "generator":
            for i in self.indices:
                g = torch.Generator(device=gen_device)
                g.manual_seed(sample_seed(self.seed, i))
                self._generators.append(g)
        else:
            seeds = [sample_seed(self.seed, i) for i in self.indices]
            self._keys = torch.tensor([[s & _M32, s >> 32] for s in seeds], dtype=torch.int64,
                                      device=gen_device).reshape(-1, 2)
            # per row: draws made so far (the counter's second word), kept on the device so a draw never copies
            # counters from the host; ``_rows`` (None: all rows) selects the rows of a subset view
            self._draws = torch.zeros(len(self.indices), dtype=torch.int64, device=gen_device)
            self._rows = None

    def __len__(self) -> int:
        return len(self.indices)

    def _words(self, n: int) -> torch.Tensor:
        """``(rows, 4 * ceil(n / 4))`` Philox words of each row's next draw (advances the rows' draw counters)."""
        blocks = (n + 3) // 4
        dev = self._gen_device
        rows = self._rows
        if rows is None:
            draw, keys = self._draws.clone(), self._keys
            self._draws += 1
        else:
            draw, keys = self._draws[rows], self._keys[rows]
            self._draws[rows] += 1  # the rows of a view are distinct
        draw = draw.reshape(-1, 1)
        block = torch.arange(blocks, dtype=torch.int64, device=dev).reshape(1, -1)
        zero = torch.zeros((), dtype=torch.int64, device=dev)
        out = philox4x32((block, draw, zero, zero), (keys[:, :1], keys[:, 1:]))
        shape = torch.broadcast_shapes(block.shape, draw.shape)
        return torch.stack([o.expand(shape) for o in out], dim=-1).reshape(len(draw), 4 * blocks)

    def _philox_normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        n = math.prod(shape)
        u = _uniform24(self._words(n)).reshape(len(self), -1, 2)
        r = torch.sqrt(-2.0 * torch.log(u[..., 0]))
        theta = (2.0 * math.pi) * u[..., 1]
        z = torch.stack((r * torch.cos(theta), r * torch.sin(theta)), dim=-1)
        return z.reshape(len(self), -1)[:, :n].reshape(len(self), *shape)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
            shape = tuple(shape[0])
        if self.engine == "philox":
            return self._philox_normal(tuple(shape)).to(device=self.device, dtype=dtype)
        out = torch.empty((len(self.indices), *shape), device=self._gen_device, dtype=torch.float32)
        for r, g in enumerate(self._generators):
            torch.randn(shape, generator=g, device=self._gen_device, dtype=torch.float32, out=out[r])
        return out.to(device=self.device, dtype=dtype)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
            shape = tuple(shape[0])
        if self.engine == "philox":
            n = math.prod(shape)
            u = _uniform24(self._words(n))[:, :n].reshape(len(self), *shape)
            return u.to(device=self.device, dtype=dtype)
        out = torch.empty((len(self.indices), *shape), device=self._gen_device, dtype=torch.float32)
        for r, g in enumerate(self._generators):
            torch.rand(shape, generator=g, device=self._gen_device, dtype=torch.float32, out=out[r])
        return out.to(device=self.device, dtype=dtype)

    def subset(self, rows: Sequence[int]) -> "BatchNoise":
        """A view on some rows that shares (and advances) the same streams."""
        view = object.__new__(BatchNoise)
        view.seed, view.device, view._gen_device, view.engine = self.seed, self.device, self._gen_device, self.engine
        view.indices = [self.indices[r] for r in rows]
        view._generators = [self._generators[r] for r in rows] if self.engine == "generator" else []
        if self.engine == "philox":
            view._keys, view._draws = self._keys, self._draws
            mine = torch.arange(len(self._keys), device=self._gen_device) if self._rows is None else self._rows
            view._rows = mine[torch.tensor(list(rows), dtype=torch.int64, device=self._gen_device)]
        return view
