"""Is a GAN bundle's discriminator a density ratio for its generator? Re-weight generator samples by exp(d) and compare.

    python scripts/ddls_importance_check.py toy-pentagon-gan toy-pentagon-ddls --target pentagon

DDLS samples ``p_g(x) exp(d(x))``. Drawing 200,000 generator samples, resampling 5,000 of them with weights
``softmax(d)`` draws (approximately) from that same target without any Langevin chain, so the sliced Wasserstein
distance of the resampled set to the data separates "the discriminator is not the ratio" from "the chain does not
mix". Prints, per bundle: SW ratio of the generator alone, of the re-weighted samples (same protocol as
scripts/eval_toy.py: N = 5,000, 256 projections, noise floor of two exact sample sets), the logit range and the
effective sample size of the weights. A bundle without a discriminator of its own can take one with
``--discriminator REF``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_toy import noise_floor  # noqa: E402
from gpmcli.api import resolve_bundle  # noqa: E402
from gpmcli.fields.discriminator import discriminator_from_component  # noqa: E402
from gpmcli.fields.latent import GeneratorMap, latent_shape_of  # noqa: E402
from gpmcli.fields.toy import load_toy  # noqa: E402
from gpmcli.metrics.sliced import sliced_wasserstein  # noqa: E402


def check(bundle_ref: str, target: str, pool: int = 200_000, n: int = 5000, discriminator: str | None = None) -> dict:
    gm = load_toy(target)
    floor = noise_floor(gm, n)
    fresh = gm.sample(n, torch.Generator().manual_seed(99))
    b = resolve_bundle("ddls", bundle_ref, {"discriminator": discriminator}, device="cpu")
    gc = b["generator"]
    G = GeneratorMap(gc.module, latent_shape_of(gc), gc.data_shape)
    D = discriminator_from_component(b["discriminator"])
    with torch.no_grad():
        z = torch.randn(pool, *latent_shape_of(gc), generator=torch.Generator().manual_seed(0))
        x = G(z)
        d = D.realness(x).reshape(-1)
        w = torch.softmax(d, 0)
        idx = torch.multinomial(w, n, replacement=True, generator=torch.Generator().manual_seed(1))
    proj = lambda a: sliced_wasserstein(a, fresh, 256, torch.Generator().manual_seed(7))  # noqa: E731
    return {"bundle": bundle_ref, "discriminator": discriminator or "bundle's", "noise_floor": round(floor, 5),
            "generator_ratio": round(proj(x[:n]) / floor, 3), "reweighted_ratio": round(proj(x[idx]) / floor, 3),
            "logit_min": round(float(d.min()), 3), "logit_max": round(float(d.max()), 3),
            "ess": round(float(1 / (w**2).sum()), 1), "pool": pool}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--target", default="pentagon")
    ap.add_argument("--discriminator", default=None, help="use this discriminator instead of the bundle's")
    a = ap.parse_args(argv)
    for ref in a.bundles:
        print(json.dumps(check(ref, a.target, discriminator=a.discriminator)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
