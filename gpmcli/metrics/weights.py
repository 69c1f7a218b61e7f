"""The FID Inception-v3 weights, fetched once into gpm's cache when no ``--inception-weights`` is given.

The file is pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` from its public release (the same tensors
torch-fidelity ships); ``6726825d`` is the start of its sha256 (torch.hub's naming convention), checked on download
and on every use (:func:`gpmcli.fetch.download_url`). Offline and not cached: exit 3, naming the file and the folder to
put it in.
"""

from __future__ import annotations

from pathlib import Path

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{INCEPTION_FILE}"
INCEPTION_SHA256_PREFIX = "6726825d"


def default_inception_weights() -> Path:
    from gpmcli.fetch import download_url

    return download_url(INCEPTION_URL, INCEPTION_FILE, sha256=INCEPTION_SHA256_PREFIX,
                        hint="or pass --inception-weights PATH")
