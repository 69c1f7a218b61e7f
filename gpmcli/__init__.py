"""gpm: sample from pretrained generative particle models (diffusion, GAN, Discriminator Flow, DiffFlow, DDLS).

Public API::

    import gpmcli
    gpmcli.sample("edm", checkpoint="toy:pentagon", n=256, out_dir="out/")
    bundle = gpmcli.load_bundle("toy-pentagon")
"""

__version__ = "0.1.0"

from gpmcli.api import sample  # noqa: E402
from gpmcli.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from gpmcli.errors import (  # noqa: E402
    DownloadError,
    GpmError,
    IntegrityError,
    NotAvailableError,
    NumericalError,
    UnsafeFileError,
    UsageError,
)
from gpmcli.noise import BatchNoise  # noqa: E402
from gpmcli.registry import load_bundle, load_component  # noqa: E402

__all__ = [
    "__version__", "sample", "load_checkpoint", "save_checkpoint", "load_bundle", "load_component", "BatchNoise",
    "GpmError", "UsageError", "NotAvailableError", "DownloadError", "IntegrityError", "UnsafeFileError",
    "NumericalError",
]
