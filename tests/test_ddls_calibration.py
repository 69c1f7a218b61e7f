"""DDLS calibration of a pretrained pair (gpm train discriminator --for ddls --init ... --train last|all) and the
sampler's calibration warning, on a pair whose log density ratio is known in closed form.

Generator x = z (z ~ N(0, I_2), i.e. p_g = N(0, I)); data q = N(mu, I). Then log q/p_g (x) = mu.x - |mu|^2 / 2, and
E_{p_g} exp(log q/p_g) = 1. The "pretrained" discriminator is a one-hidden-layer LeakyReLU MLP whose two hidden units
are lrelu(+u.x) and lrelu(-u.x) with u = mu/|mu| (their difference is 1.2 u.x), so the exact log-ratio is a linear
function of its penultimate features: a last-layer re-fit can reach it exactly. Its initial last layer is 4x too
steep and offset by +3 (uncalibrated: log mean exp d(G(z)) = 3 + |4 mu|^2/2 - ... far from 0).
"""

import logging

import pytest
import torch

from gpmcli.checkpoint import load_checkpoint, save_checkpoint
from gpmcli.data import TensorDataset
from gpmcli.fields.base import Bundle
from gpmcli.nets.mlp import MLP
from gpmcli.noise import BatchNoise
from gpmcli.samplers import get_kind
from gpmcli.samplers.ddls import CALIBRATION_LIMIT, log_mean_exp
from gpmcli.train import get_role
from gpmcli.train.common import Loop, TrainOptions

from _onethread import one_thread  # noqa: F401

MU = torch.tensor([1.0, 0.5])


def _identity_generator(path):
    g = MLP(in_dim=2, out_dim=2, depth=0, conditional=False)
    with torch.no_grad():
        g.net[0].weight.copy_(torch.eye(2))
        g.net[0].bias.zero_()
    save_checkpoint(path, g, {"role": "generator", "arch": {"name": "mlp", "kwargs": {
        "in_dim": 2, "out_dim": 2, "depth": 0, "conditional": False}}, "latent": {"dim": 2, "distribution": "normal"},
        "data": {"shape": [2], "range": None}})


def _uncalibrated_discriminator(path, output="logit"):
    kw = {"in_dim": 2, "out_dim": 1, "hidden": 2, "depth": 1, "conditional": False, "act": "lrelu"}
    d = MLP(**kw)
    u = MU / MU.norm()
    with torch.no_grad():
        d.net[0].weight.copy_(torch.stack([u, -u]))
        d.net[0].bias.zero_()
        w = 4 * float(MU.norm()) / 1.2  # 4x the calibrated slope
        d.net[2].weight.copy_(torch.tensor([[w, -w]]))
        d.net[2].bias.fill_(3.0)
    save_checkpoint(path, d, {"role": "discriminator", "arch": {"name": "mlp", "kwargs": kw}, "output": output,
                              "loss": "vanilla" if output == "logit" else "ipm", "time": None,
                              "data": {"shape": [2], "range": None}})
    return d


def exact_log_ratio(x):
    return x @ MU - 0.5 * float(MU @ MU)


def _calibrate(tmp_path, train: str, steps: int = 600):
    real = MU + torch.randn(20000, 2, generator=torch.Generator().manual_seed(0))
    spec = get_role("discriminator:ddls")
    args = {o.name: o.default for o in spec.options}
    args.update(generator=str(tmp_path / "g"), init=str(tmp_path / "d0"), train=train)
    lp = Loop(spec.trainer, "discriminator:ddls", args, TensorDataset(real, "n(mu,I)", data_range=None),
              TrainOptions(steps=steps, batch_size=512, lr=2e-2, seed=0, device="cpu", ema=0.9), tmp_path / f"d-{train}")
    lp.run()
    return load_checkpoint(tmp_path / f"d-{train}")


@pytest.fixture
def pair(tmp_path):
    _identity_generator(tmp_path / "g")
    _uncalibrated_discriminator(tmp_path / "d0")
    return tmp_path


def test_last_layer_refit_recovers_the_closed_form_log_ratio(pair):
    comp = _calibrate(pair, "last")
    d0 = load_checkpoint(pair / "d0").module
    assert comp.config["calibrated_for"]["train"] == "last" and comp.config["output"] == "logit"
    # the body is untouched, only the last layer moved
    assert torch.equal(comp.module.net[0].weight, d0.net[0].weight)
    assert not torch.allclose(comp.module.net[2].weight, d0.net[2].weight)
    x = MU * torch.linspace(-1.0, 2.0, 13)[:, None] + torch.tensor([0.3, -0.6])
    with torch.no_grad():
        d = comp.module.eval()(x).reshape(-1)
        before = d0.eval()(x).reshape(-1)
    exact = exact_log_ratio(x)
    assert (before - exact).abs().max() > 3  # it was far off
    assert (d - exact).abs().max() < 0.15, (d, exact)
    # and it is normalised under the generator: E_{p_g} exp(d) = 1
    z = torch.randn(100000, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert abs(log_mean_exp(comp.module(z).reshape(-1))) < 0.05


def test_affine_platt_scaling_recovers_the_log_ratio_and_keeps_the_architecture(pair):
    """The uncalibrated output is exactly 4 (mu.x) + 3 = 4 log-ratio + 3 + 2|mu|^2: a scale 1/4 and an offset fix it."""
    comp = _calibrate(pair, "affine")
    d0 = load_checkpoint(pair / "d0").module
    assert comp.config["arch"]["name"] == "mlp" and torch.equal(comp.module.net[0].weight, d0.net[0].weight)
    ratio = (comp.module.net[2].weight / d0.net[2].weight).detach()  # the fold: one common scale on the last layer
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio)) and float(ratio.flatten()[0]) == pytest.approx(
        0.25, abs=0.02)
    x = MU * torch.linspace(-1.0, 2.0, 13)[:, None] + torch.tensor([0.3, -0.6])
    with torch.no_grad():
        d = comp.module.eval()(x).reshape(-1)
    assert (d - exact_log_ratio(x)).abs().max() < 0.15


def test_critic_init_and_full_fine_tune_also_calibrate(pair):
    _uncalibrated_discriminator(pair / "d0", output="critic")  # a WGAN critic: its raw score becomes the logit
    comp = _calibrate(pair, "all", steps=800)
    assert comp.config["calibrated_for"]["init_output"] == "critic" and comp.config["loss"] == "vanilla"
    x = MU * torch.linspace(-0.5, 1.5, 9)[:, None]
    with torch.no_grad():
        d = comp.module.eval()(x).reshape(-1)
    assert (d - exact_log_ratio(x)).abs().max() < 0.3


def _ddls(pair, disc_dir):
    bundle = Bundle("pair", {"generator": load_checkpoint(pair / "g"), "discriminator": load_checkpoint(disc_dir)})
    return get_kind("ddls").build(bundle, {"ddls_steps": 2})


def test_warning_fires_for_the_uncalibrated_and_not_for_the_calibrated(pair, caplog):
    comp_dir = pair / "d-last"
    _calibrate(pair, "last")
    s = _ddls(pair, pair / "d0")
    with caplog.at_level(logging.WARNING, logger="gpm"):
        res = s(BatchNoise(0, range(64)))
        s(BatchNoise(0, range(64, 128)))
    warned = [r for r in caplog.records if "not calibrated" in r.getMessage()]
    assert len(warned) == 1 and "\n" not in warned[0].getMessage()  # once, one line
    assert "--train last" in warned[0].getMessage()
    # the figure it reports is the closed form: log E exp(4 mu.x + 3 - ...) = 3 + 8 |mu|^2 for x ~ N(0, I)
    assert res.diagnostics["log_mean_exp_d_start"] > CALIBRATION_LIMIT
    caplog.clear()
    s = _ddls(pair, comp_dir)
    with caplog.at_level(logging.WARNING, logger="gpm"):
        res = s(BatchNoise(0, range(64)))
    assert not [r for r in caplog.records if "not calibrated" in r.getMessage()]
    assert abs(res.diagnostics["log_mean_exp_d_start"]) < 1.0


def test_small_batches_do_not_warn(pair, caplog):
    s = _ddls(pair, pair / "d0")
    with caplog.at_level(logging.WARNING, logger="gpm"):
        s(BatchNoise(0, range(8)))
    assert not [r for r in caplog.records if "not calibrated" in r.getMessage()]


def test_bad_calibration_options_exit_2(cli, pair):
    code, _, err = cli("train", "discriminator", "--for", "ddls", "--data", "gaussian", "-o", pair / "x", "--steps",
                       "1", "--generator", pair / "g", "--train", "last")
    assert code == 2 and "--init" in err
    code, _, err = cli("train", "discriminator", "--for", "ddls", "--data", "gaussian", "-o", pair / "x", "--steps",
                       "1", "--generator", pair / "g", "--init", pair / "d0", "--train", "middle")
    assert code == 2 and "--train" in err
    code, _, err = cli("train", "discriminator", "--for", "ddls", "--data", "gaussian", "-o", pair / "x", "--steps",
                       "1", "--generator", pair / "g", "--init", pair / "d0", "--noise", "-0.1")
    assert code == 2 and "--noise" in err
    assert not (pair / "x" / "model.safetensors").exists()


def test_padded_mnist_is_cropped_back_to_the_generator_size():
    """--data mnist is GPM's 32x32 (padded by 2); against a 28x28 GAN the trainer crops 2 px per side, which must give
    back exactly the 28x28 digits in [-1, 1]."""
    import numpy as np

    from gpmcli.data import mnist_to_gpm
    from gpmcli.train.ddls_disc import _is_padded_mnist

    u8 = np.random.default_rng(0).integers(0, 256, size=(3, 1, 28, 28), dtype=np.uint8)
    x = mnist_to_gpm(u8)
    assert torch.allclose(x[..., 2:-2, 2:-2], torch.from_numpy(u8).float() / 127.5 - 1, atol=1e-6)

    class D:
        name, shape = "mnist", (1, 32, 32)

    assert _is_padded_mnist(D, (1, 28, 28)) and not _is_padded_mnist(D, (1, 32, 32))


def test_fresh_mlp_on_image_shaped_data_recovers_the_log_ratio(tmp_path):
    """``--arch mlp`` (no --init) on 3x3 "images", a size the DCGAN default refuses: with no hidden layer the MLP is a
    logistic regression on the flattened pixels, and the exact log-ratio of N(mu, I) to N(0, I) is linear in them."""
    mu = torch.linspace(-0.6, 0.8, 9)
    g = MLP(in_dim=9, out_dim=9, depth=0, conditional=False)
    with torch.no_grad():
        g.net[0].weight.copy_(torch.eye(9))
        g.net[0].bias.zero_()
    save_checkpoint(tmp_path / "g", g, {"role": "generator", "arch": {"name": "mlp", "kwargs": {
        "in_dim": 9, "out_dim": 9, "depth": 0, "conditional": False}}, "latent": {"dim": 9, "distribution": "normal"},
        "data": {"shape": [1, 3, 3], "range": None}})
    real = (mu + torch.randn(40000, 9, generator=torch.Generator().manual_seed(0))).reshape(-1, 1, 3, 3)
    spec = get_role("discriminator:ddls")

    def train(arch):
        args = {o.name: o.default for o in spec.options}
        args.update(generator=str(tmp_path / "g"), arch=arch, depth=0)
        Loop(spec.trainer, "discriminator:ddls", args, TensorDataset(real, "n(mu,I)", data_range=None),
             TrainOptions(steps=600, batch_size=512, lr=2e-2, seed=0, device="cpu", ema=0.9), tmp_path / "d").run()
        return load_checkpoint(tmp_path / "d")

    from gpmcli.errors import UsageError

    with pytest.raises(UsageError, match="power-of-two"):
        train(None)  # the default for images is the DCGAN discriminator
    comp = train("mlp")
    assert comp.config["arch"]["name"] == "mlp" and comp.config["data"]["shape"] == [1, 3, 3]
    x = (mu * torch.linspace(-1.0, 2.0, 7)[:, None] + 0.3).reshape(-1, 1, 3, 3)
    with torch.no_grad():
        d = comp.module.eval()(x).reshape(-1)
    exact = x.reshape(-1, 9) @ mu - 0.5 * float(mu @ mu)
    assert (d - exact).abs().max() < 0.15, (d, exact)


def test_arch_goes_only_with_a_fresh_network(cli, pair):
    code, _, err = cli("train", "discriminator", "--for", "ddls", "--data", "gaussian", "-o", pair / "x", "--steps",
                       "1", "--generator", pair / "g", "--init", pair / "d0", "--arch", "mlp")
    assert code == 2 and "--arch" in err
    code, _, err = cli("train", "discriminator", "--for", "ddls", "--data", "gaussian", "-o", pair / "x", "--steps",
                       "1", "--generator", pair / "g", "--arch", "resnet")
    assert code == 2 and "--arch" in err
    assert not (pair / "x" / "model.safetensors").exists()
