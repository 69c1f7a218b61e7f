"""``--model gan`` and ``--model score-gan``: Int-PM generators (docs/algorithms.md#6-gans-and-score-gan).

A GAN and a Score GAN were trained by moving their *generator* along the particle field; sampling is one pass
``x = G(z)``, ``z ~ N(0, I)`` of the checkpoint's latent shape, generator in eval mode (saved BatchNorm statistics).
"""

from __future__ import annotations

import torch

from gpmcli.fields.base import Bundle
from gpmcli.fields.latent import GeneratorMap, latent_shape_of
from gpmcli.noise import BatchNoise
from gpmcli.samplers import SampleResult, SamplerSpec, register_kind


class GeneratorSampler:
    def __init__(self, gen: GeneratorMap, data_range, resolved):
        self.gen, self.data_shape, self.data_range, self.resolved = gen, gen.data_shape, data_range, resolved

    def __call__(self, noise: BatchNoise, *, trajectory: bool = False) -> SampleResult:
        with torch.inference_mode():
            z = noise.randn(*self.gen.latent_shape)
            x = self.gen(z)
        return SampleResult(x, 1, [x] if trajectory else None)


def build(bundle: Bundle, params: dict) -> GeneratorSampler:
    comp = bundle["generator"]
    lat = latent_shape_of(comp)
    gen = GeneratorMap(comp.module, lat, comp.data_shape)
    ignored = sorted(k for k, v in params.items() if v is not None)
    resolved = {"latent_shape": list(lat), "latent_distribution": "normal", "generator_mode": "eval"}
    if ignored:
        resolved["ignored_options"] = ignored
    return GeneratorSampler(gen, comp.data_range, resolved)


register_kind(SamplerSpec("gan", ("generator",), build, "GAN generator: one pass x = G(z)", options=()))
register_kind(SamplerSpec("score-gan", ("generator",), build, "Score GAN generator: one pass x = G(z)", options=()))
