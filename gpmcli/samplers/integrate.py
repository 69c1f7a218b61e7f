"""Where the samplers' shared pieces live (kept for imports): :func:`em_step` is :mod:`gpmcli.integrate`'s, the noise
ladders (:func:`edm_sigmas` and the others) are :mod:`gpmcli.fields.schedules`'."""

from gpmcli.fields.schedules import edm_sigmas
from gpmcli.integrate import em_step

__all__ = ["edm_sigmas", "em_step"]
