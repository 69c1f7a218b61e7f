"""Held-out accuracy of a noise-conditioned discriminator, grouped by noise band: the figures a DiffFlow
discriminator's card and ``config["evaluation"]`` carry (:mod:`gpmcli.train.diffflow_disc`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: sigma bands of the accuracy report (upper edges; the last band is open)
BANDS = (0.05, 0.5, 5.0)


def accuracy_by_band(sigmas: Sequence[float], hits: torch.Tensor, edges: Sequence[float] = BANDS) -> list[dict]:
    """``hits[k] = (fraction of real particles called real, fraction of fake called fake)`` at level ``sigmas[k]``
    (decreasing), averaged over the levels of each band ``[lo, hi)`` (the top band closed); empty bands are left
    out."""
    cuts = [sigmas[-1]] + [e for e in edges if sigmas[-1] < e < sigmas[0]] + [sigmas[0]]
    bands = []
    for i in range(len(cuts) - 1):
        lo, hi, top = cuts[i], cuts[i + 1], i == len(cuts) - 2
        idx = [k for k, s in enumerate(sigmas) if lo <= s < hi or (top and s == hi)]
        if idx:
            h = hits[idx].mean(0)
            bands.append({"sigma": [round(lo, 6), round(hi, 6)], "levels": len(idx), "real": round(float(h[0]), 4),
                          "fake": round(float(h[1]), 4), "accuracy": round(float(h.mean()), 4)})
    return bands


def accuracy_table(evaluation: dict) -> str:
    """The model card's markdown for an ``evaluation`` holding ``accuracy_by_sigma`` and ``pairs_per_level``."""
    m = evaluation["pairs_per_level"]
    head = (f"Held-out accuracy per noise band (measured when training finished, {m} real and {m} fake particles per "
            "level; 0.5 is chance):\n\n| sigma band | levels | real (d > 0) | fake (d < 0) | accuracy |\n"
            "|---|---|---|---|---|\n")
    return head + "\n".join(f"| [{b['sigma'][0]:.3g}, {b['sigma'][1]:.3g}] | {b['levels']} | {b['real']:.3f} | "
                            f"{b['fake']:.3f} | {b['accuracy']:.3f} |" for b in evaluation["accuracy_by_sigma"])
