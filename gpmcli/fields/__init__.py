"""Fields: the vector fields particles follow (data score, discriminator gradient, latent energy)."""

from gpmcli.fields.base import Bundle, Component, Denoiser, expand_sigma

__all__ = ["Bundle", "Component", "Denoiser", "expand_sigma"]
