"""Trajectory animations: one frame per snapshot, scatter for 2-D data, image grids for images."""

import numpy as np
from PIL import Image

from gpmcli.viz import trajectory_frames, write_trajectory


def test_scatter_animation(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.stack([rng.normal(size=(50, 2)) * (3 - k) for k in range(3)])
    p = write_trajectory(tmp_path, frames, None, target=rng.normal(size=(100, 2)))
    im = Image.open(p)
    assert p.name == "trajectory.gif" and im.n_frames == 3
    pics = trajectory_frames(frames, None)
    assert all(q.shape == pics[0].shape for q in pics)
    assert not np.array_equal(pics[0], pics[-1])  # the particles move


def test_image_grid_animation(tmp_path):
    frames = np.linspace(-1, 1, 4)[:, None, None, None, None] * np.ones((4, 9, 1, 8, 8))
    pics = trajectory_frames(frames, (-1.0, 1.0))
    assert len(pics) == 4 and pics[0].shape[-1] == 3
    assert pics[0][4, 4, 0] == 0 and pics[-1][4, 4, 0] == 255  # first frame black, last white (pixel inside a tile)
    p = write_trajectory(tmp_path, frames, (-1.0, 1.0), fmt="webp")
    assert Image.open(p).n_frames == 4
