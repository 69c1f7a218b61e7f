"""Random-weight replicas of the public Hub repositories in gpm's model zoo (``checkpoints/registry.toml``).

Each replica has the published repository's file layout, ``config.json`` (the UNet2DModel config the repository
publishes), scheduler config and state-dict key layout, with random weights: the Hub cannot be reached from CI, so the
stand-in Hub (``tests/hubserver.py``) serves these under the real repository names. ``width_div`` divides every
channel count (at least 32, the attention GroupNorm's group count) for the fast twins the test suite uses;
``scripts/make_replicas.py`` writes the full-size ones.

The 2022 ``google/ddpm-*`` / ``google/ncsnpp-*`` repositories keep the UNet at the repository root and their weights
as ``diffusion_pytorch_model.bin`` with the pre-0.14 attention names (``query``/``key``/``value``/``proj_attn``);
the replicas do the same.
"""

from __future__ import annotations

import io
import json

import torch

DDPM_SCHEDULER = {"_class_name": "DDPMScheduler", "_diffusers_version": "0.1.1", "beta_end": 0.02,
                  "beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": True, "num_train_timesteps": 1000,
                  "trained_betas": None, "variance_type": "fixed_small"}

_DDPM_UNET = {"_class_name": "UNet2DModel", "_diffusers_version": "0.0.4", "act_fn": "silu",
              "attention_head_dim": None, "center_input_sample": False, "downsample_padding": 0,
              "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3, "layers_per_block": 2,
              "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32, "out_channels": 3,
              "time_embedding_type": "positional"}

DDPM_CIFAR10_UNET = {**_DDPM_UNET, "sample_size": 32, "block_out_channels": [128, 256, 256, 256],
                     "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
                     "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]}

DDPM_256_UNET = {**_DDPM_UNET, "sample_size": 256, "block_out_channels": [128, 128, 256, 256, 512, 512],
                 "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D",
                                      "DownBlock2D"],
                 "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D",
                                    "UpBlock2D"]}

NCSNPP_256_UNET = {"_class_name": "UNet2DModel", "_diffusers_version": "0.0.4", "act_fn": "silu",
                   "attention_head_dim": None, "block_out_channels": [128, 128, 256, 256, 256, 256, 256],
                   "center_input_sample": False,
                   "down_block_types": ["SkipDownBlock2D", "SkipDownBlock2D", "SkipDownBlock2D", "SkipDownBlock2D",
                                        "AttnSkipDownBlock2D", "SkipDownBlock2D", "SkipDownBlock2D"],
                   "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 3,
                   "layers_per_block": 2, "mid_block_scale_factor": 1.41421356237, "norm_eps": 1e-06,
                   "norm_num_groups": None, "out_channels": 3, "sample_size": 256, "time_embedding_type": "fourier",
                   "up_block_types": ["SkipUpBlock2D", "SkipUpBlock2D", "AttnSkipUpBlock2D", "SkipUpBlock2D",
                                      "SkipUpBlock2D", "SkipUpBlock2D", "SkipUpBlock2D"]}

NCSNPP_CELEBAHQ_SCHEDULER = {"_class_name": "ScoreSdeVeScheduler", "_diffusers_version": "0.1.1",
                             "correct_steps": 1, "num_train_timesteps": 2000, "sampling_eps": 1e-05,
                             "sigma_max": 348.0, "sigma_min": 0.01, "snr": 0.15}

# repository -> (UNet config, scheduler config, pipeline class)
REPOS = {
    "google/ddpm-cifar10-32": (DDPM_CIFAR10_UNET, DDPM_SCHEDULER, "DDPMPipeline"),
    "google/ddpm-ema-church-256": (DDPM_256_UNET, DDPM_SCHEDULER, "DDPMPipeline"),
    "google/ddpm-celebahq-256": (DDPM_256_UNET, DDPM_SCHEDULER, "DDPMPipeline"),
    "google/ncsnpp-celebahq-256": (NCSNPP_256_UNET, NCSNPP_CELEBAHQ_SCHEDULER, "ScoreSdeVePipeline"),
}

_OLD = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def old_attention_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if ".attentions." in k:
            for new, old in _OLD.items():
                k = k.replace(f".{new}.", f".{old}.")
        out[k] = v
    return out


def unet_config(repo_id: str, width_div: int = 1) -> dict:
    cfg = json.loads(json.dumps(REPOS[repo_id][0]))
    cfg["block_out_channels"] = [max(32, c // width_div) for c in cfg["block_out_channels"]]
    return cfg


def build_unet(repo_id: str, width_div: int = 1, seed: int = 0):
    """The replica UNet2DModel (random weights, perturbed so that no layer is an exact zero)."""
    import diffusers

    torch.manual_seed(seed)
    cfg = unet_config(repo_id, width_div)
    unet = diffusers.UNet2DModel.from_config({k: v for k, v in cfg.items() if not k.startswith("_")}).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return unet, cfg


def replica_files(repo_id: str, width_div: int = 1, seed: int = 0) -> tuple[dict[str, bytes], object]:
    """``{path: bytes}`` of the replica repository, and the UNet2DModel it holds."""
    unet, cfg = build_unet(repo_id, width_div, seed)
    _, sched, pipe = REPOS[repo_id]
    buf = io.BytesIO()
    torch.save(old_attention_names(unet.state_dict()), buf)
    index = {"_class_name": pipe, "_diffusers_version": "0.1.1", "unet": ["diffusers", "UNet2DModel"],
             "scheduler": ["diffusers", sched["_class_name"]]}
    files = {"config.json": json.dumps(cfg, indent=2).encode(),
             "scheduler_config.json": json.dumps(sched, indent=2).encode(),
             "model_index.json": json.dumps(index, indent=2).encode(),
             "diffusion_pytorch_model.bin": buf.getvalue(),
             "README.md": f"# {repo_id} (random-weight replica: published config and key layout)\n".encode()}
    return files, unet
