"""gpm train: data loading, the EDM objective, the shared loop (round trip, resume, EMA) and each role on tiny nets."""

import gzip
import json
import math
import struct

import numpy as np
import pytest
import torch

from _onethread import one_thread  # noqa: F401
from gpmcli.data import TensorDataset, ToyDataset, load_dataset, load_mnist_images, mnist_to_gpm
from gpmcli.errors import UsageError
from gpmcli.train.score import edm_loss, edm_weight

TINY_MLP = ["--hidden", "16", "--depth", "1"]


def _write_idx(folder, images_u8):
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images_u8.shape
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, h, w) + images_u8.astype(np.uint8).tobytes())


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


# ----- data -----

def test_mnist_idx_is_padded_to_32_and_scaled_to_minus1_1(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    imgs[0, 0, 0], imgs[0, 0, 1] = 0, 255
    _write_idx(tmp_path / "m", imgs)
    x = load_mnist_images(tmp_path / "m")
    assert x.shape == (5, 1, 32, 32) and x.dtype == torch.float32
    assert torch.all(x[:, :, :2] == -1) and torch.all(x[:, :, -2:] == -1) and torch.all(x[..., :2] == -1)
    assert torch.allclose(x[:, 0, 2:30, 2:30], torch.from_numpy(imgs).float() / 127.5 - 1)
    assert float(x[0, 0, 2, 2]) == -1.0 and float(x[0, 0, 2, 3]) == 1.0
    monkeypatch.setenv("GPM_DATA", str(tmp_path / "m"))  # the environment variable finds the same files
    ds = load_dataset("mnist")
    assert ds.shape == (1, 32, 32) and ds.range == (-1.0, 1.0) and len(ds) == 5


def test_real_mnist_when_available(assets):
    x = mnist_to_gpm(np.zeros((1, 1, 28, 28), np.uint8))
    assert x.shape == (1, 1, 32, 32) and float(x.max()) == -1.0
    b = load_mnist_images(assets / "mnist", split="test")
    assert b.shape == (10000, 1, 32, 32)
    assert float(b.min()) >= -1 and float(b.max()) <= 1 and float(b.max()) > 0.9


def test_image_folder_and_batches_are_seeded_epoch_permutations(tmp_path):
    from PIL import Image

    for i in range(6):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8), mode="L").save(tmp_path / f"{i}.png")
    ds = load_dataset(str(tmp_path))
    assert ds.shape == (1, 8, 8) and len(ds) == 6
    vals = sorted(float(v) for v in ds.x[:, 0, 0, 0])
    assert vals == pytest.approx([40 * i / 127.5 - 1 for i in range(6)])
    # batches 0..2 of size 4 cover epoch 0 (6 items) and half of epoch 1; each epoch is a permutation
    idx = torch.cat([ds.indices(4, 7, s) for s in range(3)])
    assert sorted(idx[:6].tolist()) == list(range(6)) and len(set(idx[6:].tolist())) == 6
    assert torch.equal(ds.batch(4, 7, 2), TensorDataset(ds.x, "again").batch(4, 7, 2))  # a pure function of (seed, step)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(UsageError, match="different sizes"):
        load_dataset(str(tmp_path))
    assert load_dataset(str(tmp_path), image_size=8).shape == (1, 8, 8)


def test_toy_data_draws_the_exact_target():
    ds = ToyDataset("gaussian")
    x = torch.cat([ds.batch(4000, 0, s) for s in range(5)]).double()
    assert torch.allclose(x.mean(0), torch.tensor([1.0, -0.5], dtype=torch.float64), atol=0.03)
    assert torch.allclose(torch.cov(x.T), torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=torch.float64), atol=0.04)


# ----- the EDM objective -----

def test_edm_loss_of_the_optimal_denoiser_on_gaussian_data_is_the_dimension():
    """For x ~ N(0, s^2 I_D) the optimal denoiser is s^2/(s^2+sigma^2) x, whose squared error is
    D s^2 sigma^2/(s^2+sigma^2); times lambda(sigma) with sigma_data = s this is exactly D at every sigma."""
    s, dim, n = 0.7, 6, 200_000
    g = torch.Generator().manual_seed(0)
    x = s * torch.randn(n, dim, generator=g, dtype=torch.float64)
    eps = torch.randn(n, dim, generator=g, dtype=torch.float64)

    def optimal(xn, sigma):
        return (s**2 / (s**2 + sigma.reshape(-1, 1) ** 2)) * xn

    for sig in (0.01, 0.3, 2.0, 50.0):
        sigma = torch.full((n,), sig, dtype=torch.float64)
        assert float(edm_loss(optimal, x, sigma, eps, s).mean()) == pytest.approx(dim, rel=0.01)
        # the zero-score denoiser D = x has error D sigma^2: weighted D (s^2 + sigma^2)/s^2 > D
        assert float(edm_loss(lambda xn, _: xn, x, sigma, eps, s).mean()) == pytest.approx(
            dim * (s**2 + sig**2) / s**2, rel=0.01)
    assert float(edm_weight(torch.tensor(2.0), 0.5)) == pytest.approx((4 + 0.25) / (2 * 0.5) ** 2)


def test_trained_toy_score_beats_the_zero_score_baseline(tmp_path):
    """A short MLP run on the pentagon: on fresh data its EDM loss closes a large part of the gap between the
    preconditioning alone (F = 0, i.e. D = c_skip x: the exact denoiser of a Gaussian with the data's scale) and the
    exact mixture denoiser (the lower bound; 250 steps close about a quarter of it), and is well below the zero-score denoiser D = x."""
    from gpmcli.fields.score import EDMDenoiser, denoiser_from_component
    from gpmcli.fields.toy import load_toy
    from gpmcli.registry import load_component
    from gpmcli.train import train

    train("score", "pentagon", tmp_path / "s", steps=250, batch_size=256, lr=2e-3, seed=0,
          args={"hidden": 128, "depth": 3})
    den = denoiser_from_component(load_component(str(tmp_path / "s")))
    exact = load_toy("pentagon")
    sd = den.sigma_data
    g = torch.Generator().manual_seed(1)
    n = 20000
    x = exact.sample(n, g).float()
    sigma = torch.exp(0.3 * torch.randn(n, generator=g))  # around sigma = 1, where the mixture structure matters
    eps = torch.randn(n, 2, generator=g)
    f0 = EDMDenoiser(lambda xin, c: torch.zeros_like(xin), sd)
    with torch.no_grad():
        trained, best, pre = (float(edm_loss(d, x, sigma, eps, sd).mean()) for d in (den, exact, f0))
    zero = float(edm_loss(lambda xn, _: xn, x, sigma, eps, sd).mean())
    assert best < pre - 0.3 and best <= trained * 1.02
    assert trained < pre - 0.15 * (pre - best) and trained < 0.8 * zero


# ----- the loop through the CLI: round trip, sampling, resume -----

def test_score_cli_round_trip_samples_and_resume_is_exact(tmp_path, cli):
    from gpmcli.registry import load_component

    base = ["train", "score", "--data", "pentagon", *TINY_MLP, "-b", "32", "--lr", "1e-2", "--ema", "0.9",
            "--seed", "3"]
    code, _, err = cli(*base, "--steps", "6", "-o", tmp_path / "full")
    assert code == 0, err
    cfg = json.loads((tmp_path / "full" / "config.json").read_text())
    assert cfg["role"] == "score" and cfg["parameterization"]["type"] == "edm"
    assert cfg["provenance"]["command"].startswith("gpm train score --data pentagon")
    assert "--hidden 16" in cfg["provenance"]["command"] and "--steps 6" in cfg["provenance"]["command"]
    assert cfg["training"]["steps"] == 6 and cfg["training"]["ema"] == 0.9
    comp = load_component(str(tmp_path / "full"))
    assert comp.role == "score" and comp.config == cfg
    assert "library_name: gpm" in (tmp_path / "full" / "README.md").read_text()
    code, _, err = cli("sample", "--model", "edm", "-c", tmp_path / "full", "-n", "4", "--steps", "3",
                       "-o", tmp_path / "smp")
    assert code == 0, err
    assert np.isfinite(np.load(tmp_path / "smp" / "samples.npz")["samples"]).all()
    # 4 steps, then resume to 6: the same weights (and EMA) as the uninterrupted run
    assert cli(*base, "--steps", "4", "--save-every", "2", "-o", tmp_path / "part")[0] == 0
    assert json.loads((tmp_path / "part" / "config.json").read_text())["training"]["steps"] == 4
    code, _, err = cli(*base, "--steps", "6", "--resume", "-o", tmp_path / "part")
    assert code == 0, err
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    st = torch.load(tmp_path / "part" / "train_state.pt", weights_only=True)
    assert st["step"] == 6
    code, _, err = cli(*base, "--steps", "6", "--resume", "-o", tmp_path / "part")
    assert code == 2 and "already has 6 steps" in err


def test_resume_keeps_the_notes_below_the_marker_of_the_card(tmp_path, cli):
    """A run resumed across sessions rewrites its card's generated part (steps, wall time, losses) but keeps what a
    person wrote below the marker; without the marker the card is the generated one."""
    from gpmcli.train.common import KEEP_MARKER

    base = ["train", "score", "--data", "pentagon", *TINY_MLP, "-b", "16", "--seed", "1", "-o", tmp_path / "run"]
    assert cli(*base, "--steps", "2", "--save-every", "1")[0] == 0
    card = tmp_path / "run" / "README.md"
    first = card.read_text()
    assert KEEP_MARKER not in first and "**steps**: 2 of 2" in first
    card.write_text(first + f"\n{KEEP_MARKER}\n## Checks\nFD at step 2: 12.3 (a hand-written note)\n")
    code, _, err = cli(*base, "--steps", "4", "--resume")
    assert code == 0, err
    after = card.read_text()
    assert "**steps**: 4 of 4" in after and "**steps**: 2 of 2" not in after
    assert after.count(KEEP_MARKER) == 1 and after.rstrip().endswith("FD at step 2: 12.3 (a hand-written note)")


def test_max_minutes_stops_resumably_and_each_run_is_recorded(tmp_path, cli, monkeypatch):
    """``--max-minutes`` ends the run at the first step past the budget with a checkpoint and resume state at that
    step (the target stays ``--steps``); a resumed run with another batch size reaches the same target, and the
    config lists both runs with their own batch sizes and steps."""
    import time as _time

    from gpmcli.train import common

    clock = {"t": 0.0}

    def fake_clock():  # every call advances 1 s: a 0.05-minute budget (3 s) ends after a few steps
        clock["t"] += 1.0
        return clock["t"]

    monkeypatch.setattr(common.time, "perf_counter", fake_clock)
    base = ["train", "score", "--data", "pentagon", *TINY_MLP, "--seed", "2", "-o", tmp_path / "run"]
    code, _, err = cli(*base, "--steps", "50", "-b", "16", "--max-minutes", "0.05")
    assert code == 0, err
    assert "--max-minutes reached" in err
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    stopped = cfg["training"]["steps"]
    assert 0 < stopped < 50 and cfg["training"]["complete"] is False and cfg["training"]["target_steps"] == 50
    st = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    assert st["step"] == stopped
    monkeypatch.setattr(common.time, "perf_counter", _time.perf_counter)
    code, _, err = cli(*base, "--steps", "50", "-b", "8", "--resume")
    assert code == 0, err
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    runs = cfg["training"]["sessions"]
    assert cfg["training"]["steps"] == 50 and cfg["training"]["complete"] is True
    assert [r["steps"] for r in runs] == [[0, stopped], [stopped, 50]]
    assert [r["batch_size"] for r in runs] == [16, 8]
    assert "in 2 runs" in (tmp_path / "run" / "README.md").read_text()
    assert cli(*base, "--steps", "60", "--resume", "--max-minutes", "0")[0] == 2


@pytest.mark.parametrize("family", ["ve", "kl"])
def test_diffflow_discriminator_round_trip_sample_and_resume(tmp_path, cli, family):
    from gpmcli.registry import load_component

    base = ["train", "discriminator", "--for", "diffflow", "--family", family, "--data", "pentagon", *TINY_MLP,
            "--n-steps", "6", "--pool", "64", "--sim-batch", "32", "--refresh-every", "3", "-b", "32",
            "--sigma-min", "0.05", "--sigma-max", "5", "--lr", "1e-2"]
    if family == "ve":
        base += ["--score", "toy:pentagon"]
    assert cli(*base, "--steps", "5", "-o", tmp_path / "full")[0] == 0
    cfg = load_component(str(tmp_path / "full"), "discriminator").config
    t = cfg["time"]
    assert cfg["loss"] == "vanilla" and cfg["output"] == "logit" and t["kind"] == "sigma" and t["family"] == family
    assert len(t["sigmas"]) == t["n_steps"] == 6 and t["sigmas"][0] == pytest.approx(5.0)
    assert t["sigmas"][-1] == pytest.approx(0.05) and (family == "ve") == ("etas" not in t)
    assert "--for diffflow" in cfg["provenance"]["command"]
    # the sampler reads the training grid from the config
    code, _, err = cli("sample", "--model", "diffflow", "-c", tmp_path / "full", "--score", "toy:pentagon",
                       "--lambda", "0.5", "-n", "3", "-o", tmp_path / "smp", "--json")
    assert code == 0, err
    run = json.loads((tmp_path / "smp" / "run.json").read_text())
    assert run["params"]["sigmas"][:6] == pytest.approx(t["sigmas"]) and run["params"]["family"] == family
    assert run["params"]["grid"] == "discriminator config"
    # resume across a pool refresh (and, for kl, a discriminator-dependent simulation)
    assert cli(*base, "--steps", "2", "-o", tmp_path / "part")[0] == 0
    assert cli(*base, "--steps", "5", "--resume", "-o", tmp_path / "part")[0] == 0
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    # --init continues from a trained discriminator: its weights (one step of a vanishing lr keeps them) and its grid
    grid_free = [x for x in base if x not in ("--n-steps", "6", "--sigma-min", "0.05", "--sigma-max", "5")]
    assert len(grid_free) == len(base) - 6
    code, _, err = cli(*grid_free, "--init", tmp_path / "full", "--steps", "1", "--lr", "1e-20", "--eta", "0.7",
                       "-o", tmp_path / "ini")
    assert code == 0, err
    c = _weights(tmp_path / "ini")
    assert max(float((a[k] - c[k]).abs().max()) for k in a) <= 1e-7
    cfg2 = load_component(str(tmp_path / "ini"), "discriminator").config
    assert cfg2["time"]["sigmas"] == t["sigmas"] and cfg2["objective"]["init"]
    assert cfg2["time"].get("etas") == t.get("etas")  # kl: the step sizes come from --init too, not from --eta
    code, _, err = cli(*grid_free, "--init", tmp_path / "full", "--n-steps", "7", "--steps", "1", "-o", tmp_path / "x")
    assert code == 2 and "has 6 noise levels" in err
    other = "kl" if family == "ve" else "ve"
    code, _, err = cli(*[other if x == family else x for x in grid_free], "--score", "toy:pentagon", "--init",
                       tmp_path / "full", "--steps", "1", "-o", tmp_path / "y")
    assert code == 2 and f"is a --family {family} discriminator" in err


def test_ve_lam_fakes_are_states_of_the_l_sampler_with_the_current_discriminator(tmp_path, cli):
    """``--lam L`` (ve): the pool holds states of the l = L DiffFlow step with the current discriminator's gradient,
    recomputed here step by step from the library step function; at ``--lam 1`` the pool does not depend on the
    discriminator. Bad combinations are usage errors."""
    from gpmcli.data import load_dataset
    from gpmcli.samplers.diffflow import diffflow_ve_step
    from gpmcli.train import get_role
    from gpmcli.train.common import Loop, TrainOptions

    spec = get_role("discriminator:diffflow")
    args = {o.name: o.default for o in spec.options}
    args.update(family="ve", score="toy:pentagon", n_steps=5, sigma_min=0.05, sigma_max=5.0, hidden=16, depth=1,
                pool=16, sim_batch=8, lam=0.5)
    loop = Loop(spec.trainer, "discriminator:diffflow", args, load_dataset("pentagon"), TrainOptions(steps=1),
                tmp_path / "x")
    tr = loop.trainer
    pool = tr.simulate(16, torch.Generator().manual_seed(5))
    # the same trajectories by hand: prior, then diffflow_ve_step with score + current disc gradient, same draws
    g = torch.Generator().manual_seed(5)
    grid = tr.sigmas + [0.0]
    for lo in (0, 8):
        x = tr.prior_std * torch.randn(8, 2, generator=g)
        for k, sig in enumerate(tr.sigmas):
            assert torch.allclose(pool[k, lo:lo + 8], x, atol=1e-5)
            if k == len(tr.sigmas) - 1:
                break
            xi = torch.randn(8, 2, generator=g)
            x, _ = diffflow_ve_step(x, tr.den.score(x, sig).float(), tr._disc_grad(x, sig), sig**2 - grid[k + 1] ** 2,
                                    0.5, xi)
    with torch.no_grad():  # another discriminator: other fake particles at lam < 1 ...
        for p in tr.net.parameters():
            p.add_(0.5)
    assert not torch.allclose(tr.simulate(16, torch.Generator().manual_seed(5))[-1], pool[-1], atol=1e-4)
    tr.lam = 1.0  # ... and the same ones at lam = 1
    a = tr.simulate(16, torch.Generator().manual_seed(5))
    for p in tr.net.parameters():
        torch.nn.init.zeros_(p)
    assert torch.equal(tr.simulate(16, torch.Generator().manual_seed(5)), a)
    base = ["train", "discriminator", "--for", "diffflow", "--data", "pentagon", "--score", "toy:pentagon",
            "--steps", "1", "-o", tmp_path / "bad"]
    assert cli(*base, "--lam", "1.5")[0] == 2
    assert cli(*base, "--lam", "0.5", "--fake", "samples")[0] == 2
    code, _, err = cli(*base, "--lam", "0.5", "--family", "kl")
    assert code == 2 and "--lam" in err


def test_diffflow_discriminator_learns_the_log_ratio_sign():
    """kl family from a wide prior: after a short run the discriminator ranks data above prior draws at the smallest
    noise level (it estimates log q / p_0 > 0 on data)."""
    from gpmcli.train import train
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        train("discriminator", "gaussian", d, target="diffflow", steps=150, batch_size=128, lr=3e-3,
              args={"family": "kl", "n_steps": 4, "sigma_min": 0.1, "sigma_max": 1.0, "prior_std": 4.0,
                    "hidden": 32, "depth": 2, "pool": 256, "eta": 1e-4, "refresh_every": 1000})
        from gpmcli.fields.discriminator import discriminator_from_component
        from gpmcli.fields.toy import load_toy
        from gpmcli.registry import load_component

        disc = discriminator_from_component(load_component(d))
        g = torch.Generator().manual_seed(0)
        real = load_toy("gaussian").sample(2000, g, sigma=0.1).float()
        fake = 4.0 * torch.randn(2000, 2, generator=g)
        with torch.no_grad():
            r, f = disc.realness(real, sigma=0.1), disc.realness(fake, sigma=0.1)
    assert float((r > 0).float().mean()) > 0.9 and float(f.mean()) < float(r.mean()) - 1.0


def test_unet_score_on_an_image_folder_in_bf16(tmp_path, cli):
    from PIL import Image

    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    code, _, err = cli("train", "score", "--data", tmp_path, "--ch", "4", "--mults", "1,2", "--steps", "2", "-b", "4",
                       "--precision", "bf16", "-o", tmp_path / "u")
    assert code == 0, err
    cfg = json.loads((tmp_path / "u" / "config.json").read_text())
    assert cfg["arch"]["name"] == "unet" and cfg["data"]["shape"] == [1, 8, 8] and cfg["training"]["precision"] == "bf16"
    code, _, err = cli("sample", "--model", "edm", "-c", tmp_path / "u", "-n", "2", "--steps", "2", "-o", tmp_path / "s")
    assert code == 0, err
    assert (tmp_path / "s" / "000001.png").is_file()


# ----- bad input -----

@pytest.mark.parametrize("args,msg", [
    (["score", "--data", "nope", "-o", "X"], "unknown --data 'nope'"),
    (["score", "--data", "mnist", "--data-dir", "/no/such/dir", "-o", "X"], "--data-dir /no/such/dir: no such folder"),
    (["score", "--data", "pentagon", "--widht", "3", "-o", "X"], "unknown option '--widht'"),
    (["score", "--data", "pentagon"], "needs -o OUT"),
    (["discriminator", "--data", "pentagon", "-o", "X"], "needs --for"),
    (["discriminator", "--for", "diffflow", "--data", "pentagon", "-o", "X"], "pass --score"),
    (["critic", "--data", "pentagon", "-o", "X"], "unknown role 'critic'"),
    (["score", "--data", "pentagon", "--ema", "1.5", "-o", "X"], "--ema must be a decay"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, cli, monkeypatch, args, msg):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("train", *args)
    assert code == 2
    assert msg in err and "Traceback" not in err
    assert len([ln for ln in err.strip().splitlines() if ln.startswith("error")]) == 1


def test_missing_mnist_everywhere_is_a_usage_error(tmp_path, monkeypatch):
    import gpmcli.data as data

    monkeypatch.delenv("GPM_DATA", raising=False)
    monkeypatch.setattr(data, "_repo_root", lambda: tmp_path)
    with pytest.raises(UsageError, match="MNIST not found"):
        load_dataset("mnist")
    monkeypatch.setenv("GPM_DATA", str(tmp_path))
    with pytest.raises(UsageError, match=r"\$GPM_DATA"):
        load_dataset("mnist")
    assert math.isfinite(1.0)


def test_ema_warm_up_forgets_the_initialisation():
    """decay_t = min(decay, (1 + t) / (10 + t)): after 300 steps of a constant target, the weight left on the initial
    value is prod_t decay_t (a closed form), far below the 0.999^300 = 0.74 a fixed decay would leave."""
    from torch import nn

    from gpmcli.train.common import EMA

    m = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(0.0)
    ema = EMA(m, 0.999)
    with torch.no_grad():
        m.weight.fill_(1.0)
    left = 1.0
    for t in range(300):
        ema.update(m, t)
        left *= min(0.999, (1 + t) / (10 + t))
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(10**6) == 0.999
    assert float(ema.shadow.weight) == pytest.approx(1.0 - left, abs=1e-6) and left < 1e-6


def test_diffflow_discriminator_on_noised_samples_learns_the_closed_form_ratio(tmp_path):
    """``--fake samples`` (Discriminator Guidance): data N(0, I) in 2-D, the score of N(0, s^2 I) with s = 0.5, so the
    l = 1 sampler's final samples are (close to) N(0, s_f^2 I) and, noised to sigma, the ideal logit is
    log N(x; 0, (1 + sigma^2) I) - log N(x; 0, (s_f^2 + sigma^2) I) = c + |x|^2 / 2 (1/(s_f^2 + sigma^2) - 1/(1 + sigma^2)).
    The trained logit must follow that closed form (s_f measured on the pool), and the card must carry the held-out
    accuracy per sigma band."""
    from gpmcli.fields.discriminator import discriminator_from_component
    from gpmcli.registry import load_component
    from gpmcli.train import train

    (tmp_path / "data.json").write_text(json.dumps({"weights": [1], "means": [[0, 0]], "covs": [1.0]}))
    (tmp_path / "narrow.json").write_text(json.dumps({"weights": [1], "means": [[0, 0]], "covs": [0.25]}))
    out = tmp_path / "d"
    train("discriminator", f"toy:{tmp_path / 'data.json'}", out, target="diffflow", steps=300, batch_size=256,
          lr=3e-3, args={"family": "ve", "fake": "samples", "score": f"toy:{tmp_path / 'narrow.json'}",
                         "n_steps": 24, "sigma_min": 0.05, "sigma_max": 5.0, "hidden": 32, "depth": 2,
                         "pool": 2048, "sim_batch": 2048, "eval_pool": 512})
    comp = load_component(str(out))
    disc = discriminator_from_component(comp)
    sig = comp.config["time"]["sigmas"]
    # the fake law: the same l = 1 sampler, exact score of N(0, 0.25 I) (its finals' spread, measured)
    from gpmcli.fields.toy import load_toy
    from gpmcli.samplers.diffflow import diffflow_ve

    from gpmcli.noise import BatchNoise

    g = torch.Generator().manual_seed(1)
    narrow = load_toy(str(tmp_path / "narrow.json"))
    x0 = sig[0] * torch.randn(4096, 2, generator=g)
    fin, _ = diffflow_ve(narrow, None, x0, sig + [0.0], BatchNoise(1, range(4096)), lam=1.0)
    sf2 = float(fin.var(0).mean())
    assert 0.15 < sf2 < 0.4
    for k in (len(sig) - 1, len(sig) // 2):
        s = sig[k]
        x = math.sqrt(0.5 * (1 + sf2) + s * s) * torch.randn(4000, 2, generator=g)
        with torch.no_grad():
            d = disc.realness(x, sigma=s).reshape(-1)
        q = 0.5 * x.square().sum(1)
        slope = float(((d - d.mean()) * (q - q.mean())).sum() / (q - q.mean()).square().sum())
        ideal = 1 / (sf2 + s * s) - 1 / (1 + s * s)
        corr = float(torch.corrcoef(torch.stack([d, q]))[0, 1])
        assert corr > 0.9 and abs(slope / ideal - 1) < 0.35, (s, corr, slope, ideal)
    ev = comp.config["evaluation"]
    assert sum(b["levels"] for b in ev["accuracy_by_sigma"]) == 24 and ev["fake"] == "samples"
    low = ev["accuracy_by_sigma"][0]
    assert low["sigma"][0] == pytest.approx(0.05) and low["accuracy"] > 0.6
    card = (out / "README.md").read_text()
    assert "Held-out accuracy per noise band" in card and "final samples of the l = 1 sampler" in card
