"""gpm: sample from pretrained generative particle models (diffusion, GAN, Discriminator Flow, DiffFlow, DDLS).

Public API::

    import gpmcli
    gpmcli.sample("edm", checkpoint="toy:pentagon", n=256, out_dir="out/")
    bundle = gpmcli.load_bundle("toy-pentagon")
"""

from gpmcli.version import __version__

_EXPORTS = {
    "sample": "gpmcli.api", "load_checkpoint": "gpmcli.checkpoint", "save_checkpoint": "gpmcli.checkpoint",
    "load_bundle": "gpmcli.registry", "load_component": "gpmcli.registry", "BatchNoise": "gpmcli.noise",
    "GpmError": "gpmcli.errors", "UsageError": "gpmcli.errors", "NotAvailableError": "gpmcli.errors",
    "DownloadError": "gpmcli.errors", "IntegrityError": "gpmcli.errors", "UnsafeFileError": "gpmcli.errors",
    "NumericalError": "gpmcli.errors", "Interrupted": "gpmcli.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    """The public names are imported on first use, so ``import gpmcli`` (and starting ``gpm``) does not load torch."""
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gpmcli' has no attribute {name!r}")
