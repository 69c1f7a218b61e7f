"""Run pytorch-fid's InceptionV3 (reference implementation) on uint8 images; called by tests in the reference venv.

usage: python pytorch_fid_features.py WEIGHTS.pth IMAGES.npz OUT.npz
IMAGES.npz holds uint8 arrays (N, C, H, W) under any keys; OUT.npz gets features under the same keys; the weights download is replaced by the given local file.
The images go through what pytorch-fid's own loader does (PIL RGB conversion -> ToTensor: x / 255, gray tiled).
"""

import sys

import numpy as np
import torch

import pytorch_fid.inception as inc

weights, images, out = sys.argv[1:4]
inc.load_state_dict_from_url = lambda *a, **k: torch.load(weights, map_location="cpu", weights_only=True)
model = inc.InceptionV3([inc.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
result = {}
with np.load(images) as z:
    for key in z.files:
        x = torch.from_numpy(z[key])
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = x.float() / 255.0
        with torch.no_grad():
            result[key] = model(x)[0].squeeze(-1).squeeze(-1).numpy().astype(np.float64)
np.savez(out, **result)
