"""Misuse and failure: every case is one line on stderr with its documented exit code (never "unexpected"), and
nothing is left that a later run or ``--resume`` would misread."""

from __future__ import annotations

import json
import os
import re
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
from gpmcli.samplers import SampleResult, SamplerSpec, register_kind

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

import test_output  # noqa: E402  (registers the test-noisy kind)


class _Overshoot:
    """Images whose values reach beyond the data range [-1, 1] (1.5 tanh of Gaussian noise)."""

    def __init__(self, bundle, params):
        self.resolved = {}
        self.data_shape, self.data_range = (1, 6, 6), (-1.0, 1.0)

    def __call__(self, noise, trajectory=False):
        return SampleResult(1.5 * torch.tanh(noise.randn(*self.data_shape)), nfe=1)


register_kind(SamplerSpec("test-overshoot", (), _Overshoot, "test only"))

_CHILD = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
import test_output
test_output._PACING.update(delay={delay!r}, hold_from={hold!r})
release = {release!r}
if release:  # every batch waits until this file exists (the folder is locked by then)
    import os, time
    call = test_output._NoisyChain.__call__

    def waiting(self, noise, trajectory=False):
        while not os.path.exists(release):
            time.sleep(0.05)
        return call(self, noise, trajectory)

    test_output._NoisyChain.__call__ = waiting
from gpmcli.cli import main
sys.argv = ["gpm"] + {args!r}
main()
"""


def _child(args, delay=0.0, hold=None, release=None) -> subprocess.Popen:
    """``gpm ARGS`` in a real process that knows the test-only sampler kinds (``release``: a file whose creation lets
    its batches run)."""
    code = _CHILD.format(root=str(ROOT), tests=str(TESTS), delay=delay, hold=hold, args=[str(a) for a in args],
                         release=str(release) if release else None)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _gpm(*args, timeout=300, env=None):
    p = subprocess.run([sys.executable, "-m", "gpmcli", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    return p.returncode, p.stdout, p.stderr


def _one_line(err: str, pattern: str) -> str:
    """The stderr of a failed run: exactly one non-empty line, matching ``pattern``, never "unexpected"."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "unexpected" not in lines[0] and "Traceback" not in err, err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def _wait_for(cond, timeout=120.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"child ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError("timed out")


def _lock_pid(out: Path) -> int | None:
    try:
        return json.loads((out / ".gpm-parts" / "lock").read_text()).get("pid")
    except (OSError, ValueError):
        return None


# ---- one writer per folder ---------------------------------------------------------------------------------------

def test_second_writer_is_refused_and_the_folder_holds_one_run(tmp_path):
    out = tmp_path / "cc"
    args = ["-q", "sample", "--model", "test-noisy", "-c", "toy:pentagon", "-n", 20, "-b", 4, "-o", out, "--seed"]
    release = tmp_path / "release"
    first = _child(args + [1], release=release)  # holds the folder, then waits for `release` before each batch
    try:
        _wait_for(lambda: _lock_pid(out) == first.pid, proc=first)
        second = _child(args + [2])
        _, err = second.communicate(timeout=300)
        assert first.poll() is None  # the first run was still writing when the second was refused
        assert second.returncode == 2
        _one_line(err, rf"folder in use by pid {first.pid}\b")
        release.touch()
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        for p in (first, locals().get("second")):
            if p is not None and p.poll() is None:
                p.kill()
    ref = tmp_path / "ref"
    api.sample("test-noisy", checkpoint="toy:pentagon", n=20, batch_size=20, seed=1, out_dir=ref, device="cpu")
    assert test_output._files(out) == test_output._files(ref)  # every file of seed 1, none of seed 2
    assert json.loads((out / "run.json").read_text())["seed"] == 1


def test_a_killed_runs_lock_is_taken_over(tmp_path, caplog):
    out = tmp_path / "k"
    args = ["-q", "sample", "--model", "test-noisy", "-c", "toy:pentagon", "-n", 16, "-b", 4, "-o", out]
    child = _child(args, hold=8)  # writes two batches, then blocks until killed
    try:
        _wait_for(lambda: len(list((out / ".gpm-parts").glob("b*.npz"))) >= 2, proc=child)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert _lock_pid(out) == child.pid  # the dead run's lock file is still there
    caplog.set_level("INFO", logger="gpm")
    test_output._PACING.update(delay=0.0, hold_from=None)
    s = api.sample("test-noisy", checkpoint="toy:pentagon", n=16, batch_size=4, seed=0, out_dir=out, resume=True,
                   device="cpu")
    assert s.run_info["generated_this_run"] == 8
    assert f"taking over from pid {child.pid}" in caplog.text
    assert _lock_pid(out) == os.getpid()


# ---- bounded memory, Ctrl-C ----------------------------------------------------------------------------------------

_RSS_CHILD = """
import resource, sys
sys.path[:0] = [{root!r}, {tests!r}]
import test_output
from gpmcli import api
api.sample("test-noisy", checkpoint="toy:pentagon", n={n}, batch_size=64, params={{"shape": (1, 64, 64)}},
           out_dir={out!r}, formats=("npz",), device="cpu")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_rss_kib(out: Path, n: int) -> int:
    code = _RSS_CHILD.format(root=str(ROOT), tests=str(TESTS), n=n, out=str(out))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    return int(p.stdout.split()[-1])


def test_peak_memory_does_not_grow_with_n(tmp_path):
    """4,096 samples of 16 KiB (64 MiB of samples) take no more memory than 256: batches stream to parts and
    samples.npz is assembled a chunk at a time."""
    small = _peak_rss_kib(tmp_path / "small", 256)
    big = _peak_rss_kib(tmp_path / "big", 4096)
    x = np.load(tmp_path / "big" / "samples.npz", mmap_mode=None)["samples"]
    assert x.shape == (4096, 1, 64, 64)
    ref = tmp_path / "ref"  # the same rows as a run of one batch (assembly order is right)
    api.sample("test-noisy", checkpoint="toy:pentagon", n=300, batch_size=300, params={"shape": (1, 64, 64)},
               out_dir=ref, formats=("npz",), device="cpu")
    np.testing.assert_array_equal(x[:300], np.load(ref / "samples.npz")["samples"])
    data_mib = (4096 - 256) * 64 * 64 * 4 / 2**20  # 60 MiB more samples
    assert (big - small) / 1024 < data_mib / 3, (small, big)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_keeps_the_written_batches_and_says_how_to_continue(tmp_path, sig, code):
    """Ctrl-C, or a SIGTERM (a scheduler's time limit, ``kill``): one line saying what was kept, exit 130 / 143."""
    out = tmp_path / "huge"
    p = subprocess.Popen([sys.executable, "-m", "gpmcli", "-q", "sample", "--model", "edm", "-c", "toy:pentagon", "-n",
                          "100000000", "-b", "64", "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        _wait_for(lambda: len(list((out / ".gpm-parts").glob("b*.npz"))) >= 2, proc=p)  # -n 1e8 starts at once
        t = time.time()
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        stopped = time.time() - t
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == code, err
    line = _one_line(err, r"^interrupted: \d+ of 100000000 samples are kept in .*; run the same command with --resume "
                          r"to continue$")
    kept = int(line.split()[1])
    rows = sum(len(np.load(f)["indices"]) for f in (out / ".gpm-parts").glob("b*.npz"))
    assert kept == rows and kept % 64 == 0
    assert stopped < 10
    assert not list(out.glob(".*.tmp")) and not list((out / ".gpm-parts").glob(".*.tmp"))


# ---- batch size ----------------------------------------------------------------------------------------------------

def test_network_samples_do_not_depend_on_the_batch_size(tmp_path):
    """mnist-edm (a UNet: CPU conv kernels round differently per batch shape) gives identical samples for -b 1, 4, 6:
    the network always sees chunks of one shape. Without the chunks, -b 1 and -b 6 differed by up to 8e-5."""
    runs = []
    for b in (1, 4, 6):
        api.sample("edm", checkpoint="mnist-edm", n=6, batch_size=b, seed=5, params={"steps": 2}, out_dir=tmp_path / str(b),
                   formats=("npz",), device="cpu", clamp=False)
        runs.append(np.load(tmp_path / str(b) / "samples.npz")["samples"])
    np.testing.assert_array_equal(runs[0], runs[2])
    np.testing.assert_array_equal(runs[1], runs[2])


# ---- the data range --------------------------------------------------------------------------------------------

def test_samples_are_clipped_to_the_data_range_unless_raw(cli, tmp_path):
    args = ("-q", "sample", "--model", "test-overshoot", "-c", "toy:pentagon", "-n", 50, "-b", 16, "--json")
    code, out, err = cli(*args, "-o", tmp_path / "c")
    assert code == 0, err
    code, out_raw, err = cli(*args, "-o", tmp_path / "r", "--raw")
    assert code == 0, err
    clipped = np.load(tmp_path / "c" / "samples.npz")["samples"]
    raw = np.load(tmp_path / "r" / "samples.npz")["samples"]
    outside = (raw < -1) | (raw > 1)
    assert 0.05 < outside.mean() < 0.95  # the raw values do overshoot
    np.testing.assert_array_equal(clipped, np.clip(raw, -1, 1))
    for text, clamped in ((out, True), (out_raw, False)):
        rec = json.loads(text)["out_of_range"]
        assert rec["values"] == int(outside.sum()) and rec["fraction"] == pytest.approx(outside.mean())
        assert rec["clamped"] is clamped and rec["range"] == [-1.0, 1.0]
    for name in ("000000.png", "grid.png"):  # the PNGs are the same either way
        assert (tmp_path / "c" / name).read_bytes() == (tmp_path / "r" / name).read_bytes()
    code, _, err = cli(*args, "-o", tmp_path / "r", "--resume")  # raw and clipped samples never mix
    assert code == 2 and "different run" in err


def test_a_real_kind_reports_the_clipped_fraction(cli, tmp_path):
    code, out, err = cli("-q", "sample", "--model", "gan", "-n", 8, "-o", tmp_path / "g", "--json")
    assert code == 0, err
    x = np.load(tmp_path / "g" / "samples.npz")["samples"]
    lo, hi = json.loads(out)["data_range"]
    assert x.min() >= lo and x.max() <= hi
    assert 0.0 <= json.loads(out)["out_of_range"]["fraction"] <= 1.0


# ---- bad arguments: one line, before any progress bar ------------------------------------------------------------

@pytest.mark.parametrize("args, pattern", [
    (("--seed", "-1"), r"--seed must be an integer from 0 to 2\*\*64 - 1"),
    (("--seed", str(2**64)), r"--seed must be an integer"),
    (("--snr", "nan"), r"--snr must be a finite number, not nan"),
    (("--sigma-max", "inf"), r"--sigma-max must be a finite number"),
    (("--device", "mps"), r"--device mps was asked for, but no MPS"),
    (("-c", "no-such-bundle"), r"checkpoint not found: no-such-bundle"),
])
def test_bad_arguments_are_one_line_before_any_progress(tmp_path, args, pattern):
    if "mps" in args and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        pytest.skip("this machine has an MPS device")
    base = ["sample", "--model", "pc", "-c", "toy:pentagon", "-n", 4, "-o", tmp_path / "o"]
    code, _, err = _gpm(*base, *args)
    assert code == 2
    _one_line(err, pattern)  # one line: no empty progress bar before it


def test_lambda_nan_is_refused_up_front(cli, tmp_path):
    code, _, err = cli("sample", "--model", "diffflow", "-c", "toy:pentagon", "--lambda", "nan", "-o", tmp_path / "o")
    assert code == 2 and "--lambda must be a finite number, not nan" in err
    assert not (tmp_path / "o").exists()  # refused before anything was loaded or written


def test_output_path_problems(cli, tmp_path):
    (tmp_path / "afile").write_text("x")
    code, _, err = _gpm("sample", "--model", "pc", "-c", "toy:pentagon", "-n", 2, "-o", tmp_path / "afile" / "sub")
    assert code == 2
    _one_line(err, r"cannot create .*afile/sub")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        code, _, err = _gpm("sample", "--model", "pc", "-c", "toy:pentagon", "-n", 2, "-o", ro / "sub")
        assert code == 2
        _one_line(err, r"cannot create .*ro/sub")


def test_disk_full_is_one_line_and_resume_completes(cli, tmp_path, monkeypatch):
    import errno

    import gpmcli.output as output

    real = output.write_npz
    calls = {"n": 0}

    def full_after_two(path, **arrays):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, **arrays)

    out = tmp_path / "o"
    args = ("sample", "--model", "test-noisy", "-c", "toy:pentagon", "-n", 20, "-b", 4, "-o", out, "--seed", 3)
    monkeypatch.setattr(output, "write_npz", full_after_two)
    code, _, err = cli("-q", *args)
    assert code == 2
    _one_line(err, r"no space left writing .*\.gpm-parts/b000008-000011-[0-9a-f]+\.npz; free some space and run the "
                   r"same command with --resume")
    assert len(list((out / ".gpm-parts").glob("b*.npz"))) == 2
    assert not list(out.glob(".*.tmp")) and not list((out / ".gpm-parts").glob(".*.tmp"))
    monkeypatch.setattr(output, "write_npz", real)
    real_stream = output.write_npz_stream

    def full(path, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output, "write_npz_stream", full)  # full again when samples.npz is assembled
    code, _, err = cli("-q", *args, "--resume")
    assert code == 2
    _one_line(err, r"no space left writing .*/samples\.npz")
    assert not (out / "run.json").exists() and len(list((out / ".gpm-parts").glob("b*.npz"))) == 5
    monkeypatch.setattr(output, "write_npz_stream", real_stream)
    code, out_json, err = cli("-q", *args, "--resume", "--json")
    assert code == 0, err
    assert json.loads(out_json)["generated_this_run"] == 0
    ref = tmp_path / "ref"
    test_output._run(ref, n=20, b=20)
    assert test_output._files(out) == test_output._files(ref)


# ---- resume ------------------------------------------------------------------------------------------------------

def test_resume_with_a_smaller_n_is_refused(cli, tmp_path):
    out = tmp_path / "o"
    args = ("-q", "sample", "--model", "test-noisy", "-c", "toy:pentagon", "-b", 4, "-o", out)
    assert cli(*args, "-n", 10)[0] == 0
    code, _, err = cli(*args, "-n", 6, "--resume")
    assert code == 2 and "already holds samples up to index 9; pass -n 10 or more" in err
    assert np.load(out / "samples.npz")["samples"].shape[0] == 10  # nothing was cut
    assert (out / "run.json").is_file()


def test_corrupt_part_is_redone_and_corrupt_manifest_is_named(cli, tmp_path, caplog):
    ref = tmp_path / "ref"
    test_output._run(ref, n=12, b=12)
    out = tmp_path / "o"
    test_output._PACING.update(delay=0.0, hold_from=None)
    with pytest.raises(Exception):  # a run killed after three of its batches
        os.environ["GPM_FAIL_AT"] = "9"
        try:
            test_output._run(out, n=12, b=3)
        finally:
            del os.environ["GPM_FAIL_AT"]
    parts = sorted((out / ".gpm-parts").glob("b*.npz"))
    assert len(parts) == 3
    parts[1].write_bytes(b"PK\x03\x04 not a zip")
    caplog.set_level("WARNING", logger="gpm")
    s = test_output._run(out, n=12, b=3, resume=True)
    assert parts[1].name in caplog.text and "made again" in caplog.text
    assert s.run_info["generated_this_run"] == 6  # the bad part's three samples and the three never written
    assert test_output._files(out) == test_output._files(ref)
    (out / ".gpm-parts" / "manifest.json").write_text("{ not json")
    code, _, err = cli("-q", "sample", "--model", "test-noisy", "-c", "toy:pentagon", "-n", 12, "-b", 3, "--seed", 3,
                       "-o", out, "--resume")
    assert code == 2 and "manifest.json is unreadable" in err


def test_parts_are_removed_after_a_finished_run(tmp_path):
    out = tmp_path / "o"
    test_output._run(out, n=9, b=4)
    assert sorted(p.name for p in (out / ".gpm-parts").iterdir()) == ["lock", "manifest.json"]


# ---- checkpoints, metrics, convert ---------------------------------------------------------------------------------

def test_checkpoint_with_wrong_shapes_is_one_line(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from gpmcli.checkpoint import save_checkpoint
    from gpmcli.nets.mixture import pentagon_net

    net, config = pentagon_net()
    ck = save_checkpoint(tmp_path / "ck", net, config)
    w = ck / "model.safetensors"
    with safe_open(str(w), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    shaped = [k for k, v in state.items() if v.ndim >= 1 and v.shape[0] > 1]
    for k in shaped[:2]:  # two tensors cut short
        state[k] = state[k][:-1].clone()
    save_file(state, str(w), metadata=meta)
    code, _, err = _gpm("-q", "sample", "--model", "edm", "-c", ck, "-n", 2, "-o", tmp_path / "o")
    assert code == 2
    names = "|".join(re.escape(k) for k in shaped[:2])
    _one_line(err, rf"weights do not fit architecture .*: ({names}) has shape \[\d+.*\] in the file but "
                   rf"\[\d+.*\] in the architecture \(2 of {len(state)} tensors differ in shape\)")


def _pngs(folder: Path, n: int, shape, seed: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def test_corrupt_image_in_fid_is_named(tmp_path):
    a = _pngs(tmp_path / "a", 4, (28, 28), 0)
    b = _pngs(tmp_path / "b", 4, (28, 28), 1)
    (a / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, _, err = _gpm("fid", a, b, "--features", "lenet", "--workers", 0)
    assert code == 2
    _one_line(err, r"x\.png: not a readable image")


def test_fid_warns_when_the_two_sides_differ_in_size_or_channels(tmp_path):
    a = _pngs(tmp_path / "a", 6, (64, 64, 3), 0)
    b = _pngs(tmp_path / "b", 6, (28, 28), 1)
    code, out, err = _gpm("fid", a, b, "--features", "lenet", "--workers", 0, "--json")
    assert code == 0, err
    warnings = json.loads(out)["warnings"]
    assert any("GEN images are 3x64x64 and REF images 1x28x28" in w for w in warnings)
    assert "GEN images are 3x64x64" in err
    code, out, _ = _gpm("fid", b, b, "--features", "lenet", "--workers", 0, "--json")
    assert not any("GEN images" in w for w in json.loads(out)["warnings"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["fid", "stats"])
def test_metrics_on_a_missing_cuda_device(tmp_path, command):
    a = _pngs(tmp_path / "a", 3, (28, 28), 0)
    args = (a, a) if command == "fid" else (a, "-o", tmp_path / "s.npz")
    code, _, err = _gpm(command, *args, "--features", "lenet", "--device", "cuda")
    assert code == 2
    _one_line(err, r"--device cuda was asked for, but no CUDA device is available")


@pytest.mark.parametrize("preset, shapes, pattern", [
    ("csinva-mlp-gan-g", [(8, 784), (8, 8), (1, 8)], r"1 output unit .* a csinva-mlp-gan-d \(discriminator\) layout"),
    ("csinva-mlp-gan-d", [(8, 16), (8, 8), (784, 8)], r"784 output units: a csinva-mlp-gan-g \(generator\) layout"),
])
def test_mlp_gan_presets_check_the_files_layout(tmp_path, preset, shapes, pattern):
    sd = {}
    for i, (o, n_in) in zip((0, 2, 4), shapes):
        sd[f"{i}.weight"], sd[f"{i}.bias"] = torch.randn(o, n_in), torch.randn(o)
    torch.save(sd, tmp_path / "w.ckpt")
    code, _, err = _gpm("convert", tmp_path / "w.ckpt", "--from", preset, "-o", tmp_path / "out")
    assert code == 2
    _one_line(err, pattern)
    assert not (tmp_path / "out").exists()


# ---- references --------------------------------------------------------------------------------------------------

def test_parse_ref_kinds(tmp_path, monkeypatch):
    from gpmcli.errors import UsageError
    from gpmcli.refs import parse_ref

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ck").mkdir()
    assert (parse_ref("toy-pentagon").kind, parse_ref("toy:8gaussians").kind) == ("bundle", "toy")
    for text in ("org/name", "hf:org/name", "org/name@v1/sub", "hf:org/name@v1/sub/"):
        r = parse_ref(text)
        assert r.kind == "hf" and r.value == "hf:" + text.removeprefix("hf:").rstrip("/")
    assert parse_ref("org/name@abc").hf.revision == "abc"
    assert parse_ref("ck").kind == "path" and parse_ref("ck").path == Path("ck")
    for bad in ("nothing-here", "", "toy:", "hf:org"):
        with pytest.raises(UsageError):
            parse_ref(bad)


def test_every_models_subcommand_takes_the_same_reference_forms(cli, hub_server, tmp_path):
    from hub_fixtures import files_of_dir

    from gpmcli.checkpoint import save_checkpoint
    from gpmcli.nets.mlp import MLP

    arch = {"name": "mlp", "kwargs": {"in_dim": 2, "out_dim": 2, "hidden": 8, "depth": 1}}
    ckpt = save_checkpoint(tmp_path / "ck", MLP(**arch["kwargs"]), {"role": "score", "arch": arch})
    hub_server.add_revision("org/s", files_of_dir(ckpt), tags=("v1",))
    results = {}
    for form in ("org/s@v1", "hf:org/s@v1"):
        for sub in ("pull", "info", "verify"):
            code, out, err = cli("models", sub, form, "--json")
            assert code == 0, (sub, form, err)
            results[sub, form] = json.loads(out)
    for sub in ("pull", "info", "verify"):
        assert results[sub, "org/s@v1"] == results[sub, "hf:org/s@v1"], sub
    assert results["verify", "org/s@v1"][0]["status"] == "ok"
    for sub in ("pull", "info", "verify"):  # and the same refusal for what is none of the forms
        code, _, err = cli("models", sub, "no-such-thing")
        assert code == 2 and "is not a registry bundle, an existing file or folder" in err, sub


def test_train_refuses_non_finite_numbers_and_negative_seeds(cli, tmp_path):
    for args, text in ((("--lr", "nan"), "--lr must be a finite number"), (("--ema", "inf"), "--ema must be a finite"),
                       (("--seed", "-3"), "--seed must be an integer")):
        code, _, err = cli("-q", "train", "score", "--data", "pentagon", "-o", tmp_path / "o", "--steps", 1, *args)
        assert code == 2 and text in err, err
        assert not (tmp_path / "o").exists()


def test_ctrl_c_before_sampling_and_while_gpm_starts(cli, tmp_path, monkeypatch, capsys):
    import builtins

    from gpmcli import entry

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "_prepare", interrupt)
    code, _, err = cli("-q", "sample", "--model", "pc", "-c", "toy:pentagon", "-o", tmp_path / "o")
    assert code == 130 and "interrupted before sampling started; nothing was written" in err
    real_import = builtins.__import__

    def slow_import(name, *a, **k):
        if name == "gpmcli.cli":
            raise KeyboardInterrupt
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", slow_import)
    with pytest.raises(SystemExit) as e:
        entry.main()
    assert e.value.code == 130 and capsys.readouterr().err == "interrupted\n"


@pytest.mark.parametrize("argv, needle", [
    (["sample", "-n", "abc"], "'-n' / '--num-samples'"),
    (["sample", "--bogus"], "No such option: --bogus"),
    (["nonexistent"], "No such command 'nonexistent'"),
    (["fid"], "Missing argument"),
])
def test_command_line_parse_errors_are_one_line_and_exit_2(argv, needle):
    """The command line's own errors (bad value, unknown option or command, missing argument) read like gpm's: one
    'error:' line naming the help to read, exit 2, no framed box, nothing on stdout."""
    r = subprocess.run([sys.executable, "-m", "gpmcli", *argv], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, COLUMNS="100"))
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "--help" in lines[0] and "╭" not in r.stderr and "unexpected" not in r.stderr and r.stdout == ""
