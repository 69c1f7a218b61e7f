"""Several processes (accelerate launch / torchrun on CPU), --precision and --compile.

The 2-process runs start real launchers (gloo on CPU), so they take a few seconds each; everything else runs in-process.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
N, B, STEPS, SEED = 10, 3, 3, 5  # 4 global batches (3, 3, 3, 1): rank 0 gets two, rank 1 two; the last is short


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GPM_FAIL_AT", "WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", **extra)
    return env


def _accelerate(*args, **env) -> subprocess.CompletedProcess:
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "-m", "gpmcli", *map(str, args)]
    return subprocess.run(cmd, env=_env(**env), capture_output=True, text=True, timeout=300)


def _torchrun(*args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "gpmcli",
           *map(str, args)]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def unet_ckpt(tmp_path_factory):
    """A tiny random diffusers UNet converted to a gpm eps checkpoint (an image sampler on 1x8x8)."""
    diffusers = pytest.importorskip("diffusers")
    from gpmcli.cli import app
    from typer.testing import CliRunner

    d = tmp_path_factory.mktemp("unet")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D")).eval()
    with torch.no_grad():
        unet.conv_out.weight.mul_(0.1)
    sched = diffusers.DDPMScheduler(num_train_timesteps=20, beta_start=2e-3, beta_end=0.2, beta_schedule="linear")
    unet.save_pretrained(d / "repo" / "unet")
    sched.save_pretrained(d / "repo" / "scheduler")
    res = CliRunner().invoke(app, ["-q", "convert", str(d / "repo"), "--from", "diffusers", "-o", str(d / "ck")])
    assert res.exit_code == 0, res.output
    return d / "ck"


def _sample_args(ck, out, *extra):
    return ["-q", "sample", "--model", "edm", "-c", ck, "--steps", STEPS, "-n", N, "-b", B, "--seed", SEED, "-o", out,
            *extra]


@pytest.fixture(scope="module")
def one_process(unet_ckpt, tmp_path_factory):
    """The reference: the same run in one process (in-process CLI)."""
    out = tmp_path_factory.mktemp("one") / "out"
    from gpmcli.cli import app
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, [str(a) for a in _sample_args(unet_ckpt, out)])
    assert res.exit_code == 0, res.output
    return out


def _files(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def _assert_same_samples(one: Path, two: Path):
    a, b = np.load(one / "samples.npz")["samples"], np.load(two / "samples.npz")["samples"]
    assert a.shape == b.shape == (N, 1, 8, 8)
    assert np.abs(a - b).max() <= 1e-5
    for i in range(N):  # per-sample PNGs: the same pixels (at most one grey level where a value sits on a rounding edge)
        pa = np.asarray(Image.open(one / f"{i:06d}.png"), dtype=int)
        pb = np.asarray(Image.open(two / f"{i:06d}.png"), dtype=int)
        assert np.abs(pa - pb).max() <= 1
    assert np.abs(np.asarray(Image.open(one / "grid.png"), dtype=int)
                  - np.asarray(Image.open(two / "grid.png"), dtype=int)).max() <= 1


def test_two_processes_write_the_files_of_one(unet_ckpt, one_process, tmp_path):
    out = tmp_path / "two"
    r = _accelerate(*_sample_args(unet_ckpt, out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert _files(out) == _files(one_process)  # NNNNNN.png x N, grid.png, samples.npz, run.json, .gpm-parts
    # parts merged, no temp files; the manifest (for --resume) and the writer's lock file stay
    assert sorted(p.name for p in (out / ".gpm-parts").iterdir()) == ["lock", "manifest.json"]
    _assert_same_samples(one_process, out)
    run = json.loads((out / "run.json").read_text())
    assert run["processes"] == 2 and len(run["wall_seconds_per_rank"]) == 2 and run["nfe_per_sample"] == 5


def test_failing_rank_stops_every_rank_then_resume_completes(unet_ckpt, one_process, tmp_path):
    out = tmp_path / "two"
    # sample 4 is in global batch 1 (samples 3..5), which is rank 1's: rank 1 fails in the first round
    r = _accelerate(*_sample_args(unet_ckpt, out), GPM_FAIL_AT="4")
    assert r.returncode != 0
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: rank 1 of 2: unexpected RuntimeError: injected failure at index 4 (GPM_FAIL_AT); every "
                      "rank stopped"], r.stderr[-3000:]
    assert not (out / "run.json").exists() and not (out / "samples.npz").exists() and not (out / "grid.png").exists()
    assert not list(out.rglob(".*.tmp"))
    written = sorted(int(p.stem) for p in out.glob("[0-9]*.png"))
    assert written == [0, 1, 2]  # rank 0 finished batch 0 in the same round; nothing of batch 1 or later
    for i in written:  # complete files only
        Image.open(out / f"{i:06d}.png").load()

    r = _accelerate(*_sample_args(unet_ckpt, out, "--resume"))
    assert r.returncode == 0, r.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["generated_this_run"] == N - 3 and run["resumed"] is True
    assert _files(out) == _files(one_process)
    _assert_same_samples(one_process, out)


def test_fid_two_processes_equals_one(assets, cli):
    mnist = assets / "mnist"
    args = ["fid", mnist / "train-images-idx3-ubyte.gz", mnist / "t10k-images-idx3-ubyte.gz", "--features", "lenet",
            "-n", 300, "-b", 64, "--workers", 0, "--json"]  # 5 batches per side: the last round is rank 0's alone
    code, out, err = cli(*args)
    assert code == 0, err
    one = json.loads(out)
    r = _torchrun(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1  # rank 0 alone prints
    two = json.loads(lines[0])
    assert two["processes"] == 2 and two["n_gen"] == one["n_gen"] == 300
    assert abs(two["fd_lenet"] - one["fd_lenet"]) <= 1e-6
    assert one["fd_lenet"] > 1.0  # train vs test digits with 300 images: a real, non-zero distance


# ---- precision and compilation (in-process, on the pentagon written as a network) ----

@pytest.fixture(scope="module")
def pentagon_ckpt(tmp_path_factory):
    from gpmcli.checkpoint import save_checkpoint
    from gpmcli.nets.mixture import pentagon_net

    net, config = pentagon_net()
    return save_checkpoint(tmp_path_factory.mktemp("pent") / "ck", net, config)


def _toy_run(cli, ck, out, *extra):
    code, _, err = cli("-q", "sample", "--model", "edm", "-c", ck, "-n", 1000, "-b", 1000, "-o", out, *extra)
    assert code == 0, err
    return np.load(out / "samples.npz")["samples"], json.loads((out / "run.json").read_text())


def test_bf16_differs_from_fp32_by_less_than_the_seed_noise(cli, pentagon_ckpt, tmp_path):
    from gpmcli.metrics.sliced import sliced_wasserstein

    x32, run32 = _toy_run(cli, pentagon_ckpt, tmp_path / "fp32", "--seed", 0)
    xbf, runbf = _toy_run(cli, pentagon_ckpt, tmp_path / "bf16", "--seed", 0, "--precision", "bf16")
    xs1, _ = _toy_run(cli, pentagon_ckpt, tmp_path / "seed1", "--seed", 1)
    assert run32["precision"] == "fp32" and runbf["precision"] == "bf16"
    assert runbf["network_dtype"] == "bfloat16" and runbf["particle_dtype"] == "float32" and runbf["networks"] == ["score"]
    assert xbf.dtype == np.float32
    assert np.abs(xbf - x32).max() > 1e-4  # autocast really ran the network in bf16
    g = torch.Generator().manual_seed(0)
    sw_prec = sliced_wasserstein(xbf, x32, 512, generator=g)
    sw_seed = sliced_wasserstein(xs1, x32, 512, generator=torch.Generator().manual_seed(0))
    assert sw_prec < 0.5 * sw_seed, (sw_prec, sw_seed)


def test_fp16_on_cpu_is_refused_with_one_line(cli, pentagon_ckpt, tmp_path):
    code, _, err = cli("sample", "--model", "edm", "-c", pentagon_ckpt, "-n", 4, "--precision", "fp16",
                       "--device", "cpu", "-o", tmp_path / "o")
    assert code == 2 and "fp16 needs a CUDA device" in err and "bf16" in err
    assert not (tmp_path / "o" / "run.json").exists()


def test_compile_pads_the_last_batch_instead_of_recompiling(cli, pentagon_ckpt, tmp_path, monkeypatch):
    import gpmcli.precision as prec

    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(tuple(tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor)))
        return gm.forward

    monkeypatch.setattr(prec, "compile_backend", lambda: counting_backend)
    torch._dynamo.reset()
    args = ("-q", "sample", "--model", "edm", "-c", pentagon_ckpt, "--steps", 4, "-b", 4, "--format", "npz")
    assert cli(*args, "-n", 4, "--compile", "-o", tmp_path / "one_batch")[0] == 0  # one full batch
    one_batch = len(graphs)
    assert one_batch >= 1
    torch._dynamo.reset()
    graphs.clear()
    code, _, err = cli(*args, "-n", 7, "--compile", "-o", tmp_path / "c")  # batches of 4 and 3 (padded to 4)
    assert code == 0, err
    assert len(graphs) == one_batch, graphs  # the short batch reused the graph of the full one
    code, _, err = cli(*args, "-n", 7, "-o", tmp_path / "e")
    assert code == 0, err
    a, b = np.load(tmp_path / "c" / "samples.npz")["samples"], np.load(tmp_path / "e" / "samples.npz")["samples"]
    assert np.abs(a - b).max() <= 1e-5
    run = json.loads((tmp_path / "c" / "run.json").read_text())
    from gpmcli.precision import net_chunk

    assert run["compile"] is True and run["fixed_batch"] == net_chunk("cpu")  # the graph sees fixed chunks


# ---- memory layout: conv networks run in channels_last; the layout changes float rounding only ----

@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("rgb")
    for i in range(8):
        img = np.random.default_rng(i).integers(0, 255, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(img).save(d / f"{i}.png")
    return d


def _unet_args(data, out, *extra):
    return ["-q", "train", "score", "--data", data, "--ch", "8", "--mults", "1,2", "--steps", "3", "-b", "4",
            "--lr", "1e-3", "--device", "cpu", "-o", out, *extra]


def test_channels_last_matches_the_contiguous_layout(cli, rgb_folder, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.setenv("GPM_CHANNELS_LAST", "0")
    assert cli(*_unet_args(rgb_folder, tmp_path / "nchw"))[0] == 0
    monkeypatch.setenv("GPM_CHANNELS_LAST", "1")
    code, _, err = cli(*_unet_args(rgb_folder, tmp_path / "cl"))
    assert code == 0, err
    w0, w1 = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("nchw", "cl"))
    assert w0.keys() == w1.keys()
    for k in w0:  # three Adam steps of lr 1e-3 (up to 3e-3 each) in either layout: the same weights up to rounding
        assert w1[k].is_contiguous() and torch.allclose(w0[k], w1[k], rtol=1e-4, atol=1e-4), k

    runs = {}
    for cl, b in (("0", 5), ("1", 5), ("1", 2)):
        monkeypatch.setenv("GPM_CHANNELS_LAST", cl)
        out = tmp_path / f"s{cl}{b}"
        code, _, err = cli("-q", "sample", "--model", "edm", "-c", tmp_path / "cl", "--steps", 3, "-n", 5, "-b", b,
                           "--seed", 3, "--format", "npz", "-o", out)
        assert code == 0, err
        runs[cl, b] = (np.load(out / "samples.npz")["samples"], json.loads((out / "run.json").read_text()))
    assert runs["1", 5][1]["channels_last"] is True and runs["0", 5][1]["channels_last"] is False
    assert np.abs(runs["1", 5][0] - runs["0", 5][0]).max() <= 1e-4
    assert np.array_equal(runs["1", 5][0], runs["1", 2][0])  # still independent of --batch-size


def test_bad_channels_last_setting_is_one_line(cli, pentagon_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("GPM_CHANNELS_LAST", "yes")
    code, _, err = cli("sample", "--model", "edm", "-c", pentagon_ckpt, "-n", 4, "-o", tmp_path / "o")
    assert code == 2 and "GPM_CHANNELS_LAST='yes'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "run.json").exists()


# ---- host allocator: gpm keeps freed activation buffers instead of faulting them in again ----

_FAULTS = r"""
import resource
from gpmcli.hostmem import tune_malloc
tuned = tune_malloc()
import torch
torch.set_num_threads(1)
net = torch.nn.Sequential(*[m for _ in range(4) for m in (torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.SiLU())])
x = torch.randn(16, 32, 32, 32)  # a 16-row chunk of 2 MB activations, as the samplers feed a UNet on CPU
def rounds():
    with torch.no_grad():
        for _ in range(20):
            net(x)
rounds()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds()
print(int(tuned), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc thresholds")
def test_tuned_malloc_reuses_buffers_instead_of_page_faulting():
    def faults(**env):
        e = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        out = subprocess.run([sys.executable, "-c", _FAULTS], env={**e, "PYTHONPATH": str(ROOT), **env},
                             capture_output=True, text=True, check=True).stdout.split()
        return int(out[0]), int(out[1])

    tuned, f_tuned = faults()
    if not tuned:
        pytest.skip("not glibc")
    off, f_off = faults(GPM_MALLOC_TUNE="0")
    assert off == 0 and f_off > 5000  # the activations are given back and faulted in again at every call
    assert f_tuned < 0.1 * f_off, (f_tuned, f_off)
    users, _ = faults(MALLOC_TRIM_THRESHOLD_="1000000")
    assert users == 0  # the user's own malloc settings are left alone
