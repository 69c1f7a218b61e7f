"""diffusers scheduler configs -> gpm's parameterization of the network they drive.

Each known scheduler class maps to one reading: the DDPM family (``DDPMScheduler``, ``DDIMScheduler``, ...: an eps
network on a discrete beta schedule, called at the training timestep) and ``ScoreSdeVeScheduler`` (a VE score
network called at sigma, sigma_min/sigma_max from the config). A class gpm does not know is refused rather than read as
a DDPM: a wrong reading samples garbage without any error. A config without ``_class_name`` is read as a DDPM config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gpmcli.errors import UsageError
from gpmcli.fields import schedules


def parameterization_from_scheduler(scfg: dict[str, Any]) -> dict[str, Any]:
    """gpm's ``parameterization`` entry for the network a diffusers scheduler config drives."""
    cls = scfg.get("_class_name") or "DDPMScheduler"
    reader = SCHEDULERS.get(cls)
    if reader is None:
        raise UsageError(f"scheduler class {cls!r} is not one gpm can read (known: {', '.join(sorted(SCHEDULERS))}); "
                         "give the parameterization with --meta instead")
    return reader(scfg)


def data_range_from_scheduler(scfg: dict[str, Any] | None) -> list[float]:
    """The data range the network was trained on: [0, 1] for score_sde's VE models (data not centred, as
    ``ScoreSdeVePipeline`` clamps its output to [0, 1]), else [-1, 1]."""
    return [0.0, 1.0] if (scfg or {}).get("_class_name") == "ScoreSdeVeScheduler" else [-1.0, 1.0]


def score_sde_ve_parameterization(scfg: dict[str, Any]) -> dict[str, Any]:
    """``ScoreSdeVeScheduler``: the network returns the score at noise level sigma (NCSN++ divides its output by
    sigma itself) and is conditioned on sigma; the VE SDE runs from sigma_max down to sigma_min."""
    smin, smax = float(scfg.get("sigma_min", 0.01)), float(scfg.get("sigma_max", 1348.0))
    return {"type": "score", "noise_cond": "sigma", "sigma_min": smin, "sigma_max": smax, "sigma_data": 0.5,
            "sde": "ve",
            "score_sde": {"num_train_timesteps": int(scfg.get("num_train_timesteps", 2000)),
                          "snr": float(scfg.get("snr", 0.15)), "correct_steps": int(scfg.get("correct_steps", 1)),
                          "sampling_eps": float(scfg.get("sampling_eps", 1e-5))}}


def ddpm_parameterization(scfg: dict[str, Any]) -> dict[str, Any]:
    """``eps`` with the DDPM schedule (beta schedule + alphas_cumprod) of a diffusers scheduler config.

    The network is called as ``net(x_t, t)`` with ``t`` the (fractional) training timestep (``noise_cond``
    ``"timestep"``).
    """
    pred = scfg.get("prediction_type", "epsilon")
    if pred != "epsilon":
        raise UsageError(f"scheduler prediction_type {pred!r} is not supported (gpm reads epsilon-prediction "
                         "UNets); convert with --from state-dict and give --meta instead")
    kind = "eps"
    T = int(scfg.get("num_train_timesteps", 1000))
    bs = scfg.get("beta_schedule", "linear")
    b0, b1 = float(scfg.get("beta_start", 1e-4)), float(scfg.get("beta_end", 0.02))
    if scfg.get("trained_betas") is not None:
        betas = torch.tensor(scfg["trained_betas"], dtype=torch.float64)
    elif bs in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        betas = schedules.ddpm_betas(bs, T, b0, b1)
    else:
        raise UsageError(f"scheduler beta_schedule {bs!r} is not supported")
    ac = schedules.alphas_cumprod(betas)
    sig = ((1 - ac) / ac).sqrt()
    ddpm = {k: scfg[k] for k in ("variance_type", "clip_sample", "clip_sample_range") if k in scfg}
    return {"type": kind, "noise_cond": "timestep", **({"ddpm": ddpm} if ddpm else {}),
            "schedule": {"kind": bs, "beta_start": b0, "beta_end": b1, "num_train_timesteps": T,
                         "alphas_cumprod": [float(a) for a in ac]},
            "sigma_min": float(sig[0]), "sigma_max": float(sig[-1]), "sigma_data": 0.5}


_DDPM_FAMILY = ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "DPMSolverMultistepScheduler",
                "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "LMSDiscreteScheduler",
                "HeunDiscreteScheduler")

SCHEDULERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    **{name: ddpm_parameterization for name in _DDPM_FAMILY},
    "ScoreSdeVeScheduler": score_sde_ve_parameterization,
}
