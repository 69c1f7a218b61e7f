"""Sample output: byte-identical files for any batch size, resume after SIGKILL, atomic files, run.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gpmcli import api
from gpmcli.errors import UsageError
from gpmcli.samplers import SampleResult, SamplerSpec, param, register_kind

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


class _NoisyChain:
    """A few noisy contraction steps, every draw through BatchNoise; elementwise only, so rows are bitwise
    independent of the batch they share."""

    def __init__(self, bundle, params):
        self.resolved = {}
        self.steps = param(params, "steps", 3, self.resolved)
        self.data_shape = tuple(params.get("shape") or (1, 8, 8))
        self.data_range = (-1.0, 1.0) if len(self.data_shape) == 3 else None
        # pacing only (set by _run, not sampler params: they do not change the samples or the run's identity)
        self.delay = _PACING["delay"]
        self.hold_from = _PACING["hold_from"]  # block (until killed) on the batch that starts at this index
        self.resolved["shape"] = list(self.data_shape)

    def __call__(self, noise, trajectory=False):
        x = 2.0 * noise.randn(*self.data_shape)
        for _ in range(self.steps):
            x = 0.7 * x + 0.3 * noise.randn(*self.data_shape)
        if self.data_range:
            x = torch.tanh(x)
        if self.delay:
            time.sleep(self.delay)
        if self.hold_from is not None and noise.indices[0] >= self.hold_from:
            time.sleep(600)
        return SampleResult(x, nfe=self.steps, diagnostics={"mean": float(x.mean())})


register_kind(SamplerSpec("test-noisy", (), _NoisyChain, "test only"))


_PACING = {"delay": 0.0, "hold_from": None}


def _run(out, n=20, b=7, resume=False, delay=0.0, hold_from=None, **params):
    _PACING.update(delay=delay, hold_from=hold_from)
    return api.sample("test-noisy", checkpoint="toy:pentagon", n=n, batch_size=b, seed=3, params=params,
                      out_dir=out, resume=resume, device="cpu", command="test")


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file() and p.name != "run.json"}


def test_same_bytes_for_batch_sizes_1_7_64(tmp_path):
    outs = {}
    for b in (1, 7, 64):
        _run(tmp_path / f"b{b}", n=20, b=b)
        outs[b] = _files(tmp_path / f"b{b}")
    assert set(outs[1]) == {f"{i:06d}.png" for i in range(20)} | {"grid.png", "samples.npz"}
    assert outs[1] == outs[7] == outs[64]
    x = np.load(tmp_path / "b7" / "samples.npz")["samples"]
    assert x.shape == (20, 1, 8, 8) and x.dtype == np.float32
    # the PNG of sample i is sample i of the npz, mapped from the data range [-1, 1] to 0..255
    img = np.asarray(Image.open(tmp_path / "b7" / "000013.png"))
    assert np.abs(img.astype(float) - (x[13, 0] + 1) / 2 * 255).max() <= 0.5 + 1e-3
    # and rows are truly different samples drawn from (seed, i)
    assert not np.allclose(x[0], x[1])
    assert not (tmp_path / "b7" / ".gpm-parts").exists() or not list((tmp_path / "b7" / ".gpm-parts").glob("b*"))


def test_run_json_content(tmp_path):
    s = _run(tmp_path / "o", n=5, b=2, steps=4)
    info = json.loads((tmp_path / "o" / "run.json").read_text())
    assert info["status"] == "complete" and info["command"] == "test"
    assert info["params"]["steps"] == 4 and info["nfe_per_sample"] == 4 == s.nfe
    assert info["seed"] == 3 and "sample_seed" in info["seeding"]
    assert info["components"]["score"]["ref"] == "toy:pentagon"
    assert set(info["wall_seconds"]) == {"load", "sample", "write", "finish"}
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert {"python", "gpm", "torch", "numpy"} <= set(info["versions"])
    assert len(info["diagnostics"]) == 3 and info["n"] == 5 and info["generated_this_run"] == 5


def test_low_dimensional_data_gets_npz_and_scatter(tmp_path):
    _run(tmp_path / "o", n=50, b=16, shape=(2,))
    names = {p.name for p in (tmp_path / "o").iterdir() if p.is_file()}
    assert names == {"samples.npz", "scatter.png", "run.json"}
    x = np.load(tmp_path / "o" / "samples.npz")["samples"]
    assert x.shape == (50, 2)
    img = np.asarray(Image.open(tmp_path / "o" / "scatter.png"))
    assert img.shape == (512, 512, 3)
    blue = (img[..., 2] > 150) & (img[..., 0] < 100)
    grey = (img[..., 0] == 170) & (img[..., 1] == 170)
    assert blue.sum() > 50 and grey.sum() > 50  # the samples and the target (toy:pentagon) are both drawn


def test_resume_skips_written_and_refuses_other_runs(tmp_path):
    full = tmp_path / "full"
    _run(full, n=12, b=5)
    part = tmp_path / "part"
    _run(part, n=12, b=5)
    for i in (2, 3, 9):  # lose some samples, and the finished-run marker
        (part / f"{i:06d}.png").unlink()
    s = _run(part, n=12, b=4, resume=True)
    assert s.run_info["generated_this_run"] == 3
    assert _files(part) == _files(full)
    s = _run(part, n=16, b=4, resume=True)  # extending a finished run
    assert s.run_info["generated_this_run"] == 4
    _run(full, n=16, b=16)
    assert _files(part) == _files(full)
    with pytest.raises(UsageError, match="different run"):
        _run(part, n=16, b=4, resume=True, steps=5)
    with pytest.raises(UsageError, match="different run"):
        api.sample("test-noisy", checkpoint="toy:pentagon", n=16, batch_size=4, seed=4, out_dir=part, resume=True,
                   device="cpu")


def test_fresh_run_removes_stale_outputs(tmp_path):
    out = tmp_path / "o"
    _run(out, n=10, b=10)
    _run(out, n=4, b=10)
    assert sorted(p.name for p in out.glob("0*.png")) == [f"{i:06d}.png" for i in range(4)]
    assert np.load(out / "samples.npz")["samples"].shape[0] == 4


_CHILD = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
import test_output
test_output._run({out!r}, n=40, b=4, delay=0.05, hold_from=12)
"""


def test_killed_run_resumes_to_identical_files(tmp_path):
    out = tmp_path / "killed"
    ref = tmp_path / "ref"
    _run(ref, n=40, b=40)
    child = subprocess.Popen([sys.executable, "-c", _CHILD.format(root=str(ROOT), tests=str(TESTS), out=str(out))],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    try:
        while time.time() < deadline and child.poll() is None:
            parts = list((out / ".gpm-parts").glob("b*.npz")) if out.is_dir() else []
            if len(parts) >= 3:  # three batches of 4 are written; the fourth blocks
                break
            time.sleep(0.05)
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    written = sorted(out.glob("0*.png"))
    assert len(written) == 12
    assert not (out / "run.json").exists() and not (out / "samples.npz").exists()
    for p in written:  # every file under a final name is complete
        Image.open(p).load()
        assert p.read_bytes() == (ref / p.name).read_bytes()
    s = _run(out, n=40, b=6, resume=True)
    assert s.run_info["generated_this_run"] == 28
    assert _files(out) == _files(ref)
    assert not list(out.glob(".*.tmp"))
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_write_npz_is_reproducible(tmp_path):
    from gpmcli.output import write_npz

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_npz(tmp_path / "a.npz", samples=a)
    time.sleep(1.1)
    write_npz(tmp_path / "b.npz", samples=a)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    np.testing.assert_array_equal(np.load(tmp_path / "a.npz")["samples"], a)


def test_cli_sample_format_and_resume(cli, tmp_path):
    out = tmp_path / "o"
    args = ("sample", "--model", "test-noisy", "-c", "toy:pentagon", "-n", "6", "-b", "4", "-o", str(out), "--json")
    code, stdout, err = cli(*args, "--format", "npz")
    assert code == 0, err
    info = json.loads(stdout)
    assert info["n"] == 6 and info["generated_this_run"] == 6 and info["formats"] == ["npz"]
    assert {p.name for p in out.iterdir() if p.is_file()} == {"samples.npz", "grid.png", "run.json"}
    code, stdout, err = cli(*args, "--format", "npz", "--resume")
    assert code == 0 and json.loads(stdout)["generated_this_run"] == 0
    code, _, err = cli(*args, "--format", "gif")
    assert code == 2 and "--format" in err


def test_atomic_open_never_exposes_a_partial_file(tmp_path):
    from gpmcli.checkpoint import atomic_open

    target = tmp_path / "x.png"
    target.write_bytes(b"old complete file")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write(b"half of the new")
            assert target.read_bytes() == b"old complete file"  # not visible while being written
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old complete file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_hub_checkpoint_is_recorded_in_run_json(hub_server, tmp_path):
    from hub_fixtures import files_of_dir

    from gpmcli.checkpoint import save_checkpoint, sha256_file
    from gpmcli.nets.mlp import MLP

    arch = {"name": "mlp", "kwargs": {"in_dim": 2, "out_dim": 2, "hidden": 8, "depth": 1}}
    ckpt = save_checkpoint(tmp_path / "ck", MLP(**arch["kwargs"]), {"role": "score", "arch": arch})
    hub_server.add_revision("org/s", files_of_dir(ckpt), tags=("v1",))
    s = api.sample("test-noisy", checkpoint="hf:org/s@v1", n=2, batch_size=2, out_dir=tmp_path / "o", device="cpu")
    comp = json.loads((tmp_path / "o" / "run.json").read_text())["components"]["score"]
    assert comp == {"ref": "hf:org/s@v1", "sha256": sha256_file(ckpt / "model.safetensors"), "role": "score"}
    assert s.run_info["components"]["score"] == comp
