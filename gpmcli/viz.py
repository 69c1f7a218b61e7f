"""Pictures of particle flows: trajectory animations (GIF/WebP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_trajectory(out_dir: Path, frames: np.ndarray, data_range, target=None) -> Path:
    """Animation of the particles along the flow (frames: (T, N, *shape))."""
    from gpmcli.errors import NotAvailableError

    raise NotAvailableError("--trajectory is not available yet")
