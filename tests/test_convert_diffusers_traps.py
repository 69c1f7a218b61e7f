"""Converting the diffusers repositories people actually use: 2022-era ``.bin`` repositories with the old attention
names, VE (ScoreSdeVe) schedulers, and scheduler classes gpm does not know."""

from __future__ import annotations

import json

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from gpmcli.convert.schedulers import parameterization_from_scheduler  # noqa: E402
from gpmcli.errors import UsageError  # noqa: E402

NEW_TO_OLD = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def _old_names(sd):
    out = {}
    for k, v in sd.items():
        for new, old in NEW_TO_OLD.items():
            if f".{new}." in k and ".attentions." in k:
                k = k.replace(f".{new}.", f".{old}.")
        out[k] = v
    return out


def _attn_unet():
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D")).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return unet


def old_layout_files(unet, scheduler_config: dict) -> dict[str, bytes]:
    """A 2022 google/ddpm-* style repository: UNet at the root, weights only as a .bin with the old names."""
    import io

    buf = io.BytesIO()
    torch.save(_old_names(unet.state_dict()), buf)
    cfg = {"_class_name": "UNet2DModel", "_diffusers_version": "0.0.4",
           **{k: v for k, v in dict(unet.config).items() if not k.startswith("_")}}
    return {"config.json": json.dumps(cfg), "scheduler_config.json": json.dumps(scheduler_config),
            "diffusion_pytorch_model.bin": buf.getvalue(), "README.md": "# old repo\n",
            "model_index.json": json.dumps({"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"],
                                            "scheduler": ["diffusers", "DDPMScheduler"]})}


DDPM_2022 = {"_class_name": "DDPMScheduler", "_diffusers_version": "0.1.1", "beta_end": 0.02,
             "beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": True, "num_train_timesteps": 1000,
             "trained_betas": None, "variance_type": "fixed_small"}


def test_old_bin_repo_with_old_attention_names_converts_exactly(hub_server, cli, tmp_path):
    from gpmcli.checkpoint import load_checkpoint, sha256_file

    unet = _attn_unet()
    files = old_layout_files(unet, DDPM_2022)
    assert any(".query." in k for k in torch.load(__import__("io").BytesIO(files["diffusion_pytorch_model.bin"])))
    commit = hub_server.add_revision("google/tiny-old-ddpm", files)
    code, _, err = cli("-q", "convert", "hf:google/tiny-old-ddpm", "--from", "diffusers", "-o", tmp_path / "ck")
    assert code == 0, err
    comp = load_checkpoint(tmp_path / "ck")
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():
        assert torch.equal(comp.module(x, t), unet(x, t).sample)
    prov = comp.config["provenance"]
    assert prov["weights_file"] == "diffusion_pytorch_model.bin"
    assert prov["resolved"]["commit"] == commit
    blob = next(hub_server.cache_dir.rglob("diffusion_pytorch_model.bin"))
    assert prov["resolved"]["sha256"] == sha256_file(blob)
    assert comp.config["parameterization"]["type"] == "eps"


def test_safetensors_preferred_and_bin_not_downloaded_when_both_exist(hub_server, cli, tmp_path):
    from safetensors.torch import save

    unet = _attn_unet()
    files = old_layout_files(unet, DDPM_2022)
    files["diffusion_pytorch_model.safetensors"] = save({k: v.contiguous() for k, v in unet.state_dict().items()})
    hub_server.add_revision("google/tiny-both", files)
    code, _, err = cli("-q", "convert", "hf:google/tiny-both", "--from", "diffusers", "-o", tmp_path / "ck")
    assert code == 0, err
    got = [p for m, p in hub_server.requests if p.endswith(".bin")]
    assert got == [], got
    assert not list(hub_server.cache_dir.rglob("*.bin"))


def test_score_sde_ve_scheduler_is_a_sigma_conditioned_ve_score():
    cfg = dict(diffusers.ScoreSdeVeScheduler(sigma_max=348.0, sigma_min=0.01, num_train_timesteps=2000).config)
    cfg["_class_name"] = "ScoreSdeVeScheduler"
    p = parameterization_from_scheduler(cfg)
    assert p["type"] == "score" and p["noise_cond"] == "sigma" and p["sde"] == "ve"
    assert p["sigma_max"] == 348.0 and p["sigma_min"] == 0.01
    assert "schedule" not in p  # not read as a DDPM beta schedule (that gave sigma_max 157)
    assert p["score_sde"]["snr"] == pytest.approx(cfg["snr"])


@pytest.mark.parametrize("cls", ["KarrasVeScheduler", "FlowMatchEulerDiscreteScheduler", "SomethingNew"])
def test_unknown_scheduler_class_is_refused(cls):
    with pytest.raises(UsageError, match=cls):
        parameterization_from_scheduler({**DDPM_2022, "_class_name": cls})


def test_unknown_scheduler_class_exits_2_through_the_cli(tmp_path, cli):
    unet = _attn_unet()
    repo = tmp_path / "repo"
    unet.save_pretrained(repo)
    (repo / "scheduler_config.json").write_text(json.dumps({**DDPM_2022, "_class_name": "KarrasVeScheduler"}))
    code, _, err = cli("convert", repo, "--from", "diffusers", "-o", tmp_path / "ck")
    assert code == 2 and "KarrasVeScheduler" in err
    assert not (tmp_path / "ck").exists()
