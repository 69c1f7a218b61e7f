"""The package version (a leaf module, so that any module can read it without importing the package)."""

__version__ = "0.1.0"

PACKAGES = ("torch", "numpy", "safetensors", "huggingface-hub", "accelerate", "pillow", "typer")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Python, gpm and the installed versions of ``packages`` (for ``run.json`` and statistics files)."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version(), "gpm": __version__}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
