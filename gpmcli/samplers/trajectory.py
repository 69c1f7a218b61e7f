"""Trajectory thinning, written once: a sampling-loop callback that keeps a bounded number of frames.

Every loop calls ``callback({"i": i, "x": x, ...})`` with ``i`` the number of steps done (0: the starting
particles); ``final=True`` marks the state the loop returns. :class:`Trajectory` keeps the start, every k-th step
(``k = max(1, n_steps // max_frames)``) and the final state, or exactly the steps in ``at``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class Trajectory:
    def __init__(self, n_steps: int, max_frames: int = 60, *, transform: Callable | None = None,
                 at: Iterable[int] | None = None):
        self.every = max(1, n_steps // max_frames)
        self.transform = transform
        self.at = set(at) if at is not None else None
        self.frames: list[torch.Tensor] = []

    def __call__(self, info: dict[str, Any]) -> None:
        i = info["i"]
        keep = (i in self.at) if self.at is not None else (i % self.every == 0 or info.get("final", False))
        if keep:
            x = info["x"] if self.transform is None else self.transform(info["x"])
            self.frames.append(x.detach().to(torch.float32).clone())


def recorder(enabled: bool, n_steps: int, **kw) -> Trajectory | None:
    """A :class:`Trajectory` when frames were asked for, else None (the loops then skip the callback)."""
    return Trajectory(n_steps, **kw) if enabled else None


def frames_of(rec: Trajectory | None) -> list[torch.Tensor] | None:
    return rec.frames if rec is not None else None
