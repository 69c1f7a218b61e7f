"""Per-sample random streams.

Sample ``i`` of a run seeded with ``seed`` owns one ``torch.Generator`` seeded from ``(seed, i)``. Every random draw of
its chain (initial noise, every step's noise, a MALA uniform) comes from that generator, in the order the sampler asks
for it. A batch therefore produces the same rows whatever other samples share it, which makes output independent of
the batch size and of the number of processes (docs/interfaces.md#determinism).

Samplers never call ``torch.randn`` themselves: they take a :class:`BatchNoise` and call :meth:`BatchNoise.randn`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def sample_seed(seed: int, index: int) -> int:
    """The 63-bit seed of sample ``index`` in a run with global seed ``seed`` (SeedSequence mixing, no collisions
    between nearby (seed, index) pairs)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, int(index)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class BatchNoise:
    """Random streams for the samples ``indices`` of a run.

    ``randn(*shape)`` returns a tensor of shape ``(len(indices), *shape)`` whose row ``r`` is drawn from the generator
    of sample ``indices[r]``. Draws are made in float32 on the generator's device, then cast to ``dtype``.
    """

    def __init__(self, seed: int, indices: Sequence[int], device: torch.device | str = "cpu"):
        self.seed = int(seed)
        self.indices = [int(i) for i in indices]
        self.device = torch.device(device)
        gen_device = self.device if self.device.type in ("cuda", "mps", "xpu") else torch.device("cpu")
        self._generators = []
        for i in self.indices:
            g = torch.Generator(device=gen_device)
            g.manual_seed(sample_seed(self.seed, i))
            self._generators.append(g)
        self._gen_device = gen_device

    def __len__(self) -> int:
        return len(self.indices)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
            shape = tuple(shape[0])
        out = torch.empty((len(self.indices), *shape), device=self._gen_device, dtype=torch.float32)
        for r, g in enumerate(self._generators):
            torch.randn(shape, generator=g, device=self._gen_device, dtype=torch.float32, out=out[r])
        return out.to(device=self.device, dtype=dtype)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
            shape = tuple(shape[0])
        out = torch.empty((len(self.indices), *shape), device=self._gen_device, dtype=torch.float32)
        for r, g in enumerate(self._generators):
            torch.rand(shape, generator=g, device=self._gen_device, dtype=torch.float32, out=out[r])
        return out.to(device=self.device, dtype=dtype)

    def subset(self, rows: Sequence[int]) -> "BatchNoise":
        """A view on some rows that shares (and advances) the same generators."""
        view = object.__new__(BatchNoise)
        view.seed, view.device, view._gen_device = self.seed, self.device, self._gen_device
        view.indices = [self.indices[r] for r in rows]
        view._generators = [self._generators[r] for r in rows]
        return view
