"""gpm fid / gpm stats: sources, statistics files, pipeline checks and user errors (small LeNet runs)."""

import json

import numpy as np
import pytest
from PIL import Image

LENET = "csinva-mnist-lenet/lenet_epoch=12_test_acc=0.991.pth"


@pytest.fixture(scope="module")
def digits():
    from tests.conftest import ASSETS

    if not ASSETS.is_dir():
        pytest.skip(f"shared assets not found at {ASSETS}")
    from gpmcli.metrics.sources import read_idx_images

    return read_idx_images(ASSETS / "mnist" / "t10k-images-idx3-ubyte.gz")[:600]


def _folder(path, imgs, rgb=False):
    path.mkdir()
    for i, im in enumerate(imgs):
        a = im[0]
        Image.fromarray(np.stack([a] * 3, -1) if rgb else a).save(path / f"{i:05d}.png")
    return path


def test_stats_and_fid_roundtrip(cli, tmp_path, assets, digits):
    from gpmcli.metrics.api import fid
    from gpmcli.metrics.sources import load_stats

    w = str(assets / LENET)
    gen = _folder(tmp_path / "gen", digits[:300])
    ref = tmp_path / "ref" / "samples.npz"
    ref.parent.mkdir()
    # float samples in [-1, 1] with a run.json telling the range, as gpm sample writes them
    np.savez(ref, samples=(digits[300:].astype(np.float32) / 255 * 2 - 1))
    (ref.parent / "run.json").write_text(json.dumps({"data_range": [-1, 1]}))
    code, _, _ = cli("stats", str(ref), "-o", str(tmp_path / "ref.npz"), "--features", "lenet", "--lenet-weights", w)
    assert code == 0
    st = load_stats(tmp_path / "ref.npz")
    assert st.n == 300 and st.dim == 84 and st.pipeline.startswith("lenet5") and len(st.weights_sha256) == 64
    # folder (with decoding workers) vs stats file == library call on the raw arrays
    code, out, _ = cli("fid", str(gen), str(tmp_path / "ref.npz"), "--features", "lenet", "--lenet-weights", w,
                       "--workers", "2", "-b", "64", "--json")
    assert code == 0
    res = json.loads(out)
    direct = fid(digits[:300], digits[300:], features="lenet", lenet_weights=w, workers=0)
    assert res["fd_lenet"] == pytest.approx(direct["fd_lenet"], rel=1e-6)  # float32 features, other batching
    assert res["n_gen"] == 300 and res["n_ref"] == 300 and res["pipeline"] == st.pipeline
    assert res["weights_sha256"] == st.weights_sha256
    # RGB PNGs of the same digits give the same features (luma of equal channels)
    rgb = _folder(tmp_path / "rgb", digits[:300], rgb=True)
    code, out, _ = cli("fid", str(rgb), str(tmp_path / "ref.npz"), "--features", "lenet", "--lenet-weights", w,
                       "--workers", "0", "--json")
    assert json.loads(out)["fd_lenet"] == pytest.approx(res["fd_lenet"], rel=1e-5, abs=1e-6)
    # -n caps both sides; --kid / --prdc report alongside
    code, out, _ = cli("fid", str(gen), str(ref), "--features", "lenet", "--lenet-weights", w, "-n", "200",
                       "--kid", "--prdc", "--json")
    r2 = json.loads(out)
    assert code == 0 and r2["n_gen"] == 200 and r2["kid_subset_size"] == 200
    assert 0.0 <= r2["precision"] <= 1.0 and 0.0 <= r2["coverage"] <= 1.0 and r2["density"] > 0.5


def test_gpm_sample_folder_layout(tmp_path, digits):
    """A gpm sample folder: per-sample PNGs count, grid.png does not; samples.npz (if present) gives the same images."""
    from gpmcli.metrics.sources import open_source
    from gpmcli.output import grid_image, png_bytes, to_uint8

    x = digits[:20].astype(np.float32) / 255 * 2 - 1
    d = tmp_path / "run"
    d.mkdir()
    imgs = to_uint8(x, (-1.0, 1.0))
    for i, im in enumerate(imgs):
        (d / f"{i:06d}.png").write_bytes(png_bytes(im))
    (d / "grid.png").write_bytes(png_bytes(grid_image(imgs)))
    (d / "run.json").write_text(json.dumps({"data_range": [-1, 1]}))
    src = open_source(d)
    a = np.concatenate([b.numpy() for b in src.batches(7, workers=0)])
    assert len(src) == 20 and np.array_equal(a, digits[:20])
    np.savez(d / "samples.npz", samples=x)
    src = open_source(d)
    assert type(src).__name__ == "ArraySource"
    assert np.array_equal(np.concatenate([b.numpy() for b in src.batches(7)]), a)


def _gpm(capsys, *args):
    """Run the real entry point in-process (GpmTyper turns errors into one line + exit code)."""
    from gpmcli.cli import app

    capsys.readouterr()
    try:
        app(args=[str(a) for a in args], prog_name="gpm")
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err


def test_refusals(cli, capsys, tmp_path, assets, digits):
    from gpmcli.metrics.sources import Stats, save_stats

    w = str(assets / LENET)
    rng = np.random.default_rng(0)
    save_stats(tmp_path / "a.npz", Stats(np.zeros(84), np.eye(84), 100, "lenet5-mnist/f6/32px-bilinear", "ab" * 32))
    save_stats(tmp_path / "b.npz", Stats(np.zeros(2048), np.eye(2048), 100, "inception-v3-fid/pool3/tf1", "cd" * 32))
    save_stats(tmp_path / "c.npz", Stats(np.zeros(84), np.eye(84), 100, "other/f6", "ab" * 32))
    save_stats(tmp_path / "d.npz", Stats(rng.standard_normal(84), np.eye(84), 100, "lenet5-mnist/f6/32px-bilinear",
                                         "ef" * 32))
    cases = [
        (("fid", tmp_path / "a.npz", tmp_path / "b.npz", "--features", "lenet"), "feature sizes differ"),
        (("fid", tmp_path / "a.npz", tmp_path / "c.npz", "--features", "lenet"), "pipelines differ"),
        (("fid", tmp_path / "a.npz", tmp_path / "d.npz", "--features", "lenet"), "weights differ"),
        (("fid", tmp_path / "a.npz", tmp_path / "a.npz", "--features", "inception"), "pipelines differ"),
        (("fid", tmp_path / "b.npz", tmp_path / "b.npz", "--resize", "torch-bilinear"), "pipelines differ"),
        (("fid", tmp_path / "a.npz", tmp_path / "a.npz", "--features", "lenet", "--kid"), "statistics file"),
        (("fid", tmp_path / "nope", tmp_path / "a.npz"), "no such file"),
        (("stats", tmp_path / "a.npz", "-o", tmp_path / "x.npz", "--features", "lenet", "--lenet-weights", w),
         "already holds statistics"),
        (("stats", assets / "mnist" / "t10k-images-idx3-ubyte.gz", "-o", tmp_path / "x.txt"), ".npz"),
        (("fid", assets / "mnist" / "t10k-images-idx3-ubyte.gz", tmp_path / "b.npz", "--inception-weights",
          tmp_path / "missing.pth"), "not found"),
        (("fid", tmp_path / "a.npz", tmp_path / "a.npz", "--features", "clip"), "--features must be"),
    ]
    for args, msg in cases:
        code, err = _gpm(capsys, *args)
        assert code == 2, (args, code, err)
        assert msg in err and "Traceback" not in err, (args, msg, err)
    # stats vs stats needs no network at all; the same file gives 0
    code, out, _ = cli("fid", tmp_path / "a.npz", tmp_path / "a.npz", "--features", "lenet", "--json")
    assert code == 0 and json.loads(out)["fd_lenet"] == pytest.approx(0.0, abs=1e-9)
    # mixed image sizes in one folder are refused
    d = _folder(tmp_path / "mixed", digits[:3])
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(d / "00009.png")
    code, err = _gpm(capsys, "stats", d, "-o", tmp_path / "m.npz", "--features", "lenet", "--lenet-weights", w,
                     "--workers", "0")
    assert code == 2 and "differs from the first image" in err and not (tmp_path / "m.npz").exists()


def test_inception_weights_hint(cli, tmp_path, monkeypatch, digits):
    monkeypatch.delenv("GPM_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("GPM_CACHE", str(tmp_path / "gpm-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from gpmcli.errors import DownloadError, UsageError
    from gpmcli.metrics.features import make_pipeline

    # no weights given: pytorch-fid's file is fetched into gpm's cache; offline and uncached, the error names it
    with pytest.raises(DownloadError, match="pt_inception-2015-12-05-6726825d.pth"):
        make_pipeline("inception")
    bad = tmp_path / "bad.pth"
    import torch

    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(UsageError, match="not FID Inception-v3 weights"):
        make_pipeline("inception", inception_weights=str(bad))


def test_hf_weights_reference(monkeypatch, tmp_path):
    import huggingface_hub

    from gpmcli.errors import DownloadError, UsageError
    from gpmcli.metrics.features import resolve_weights_file

    calls = []

    def fake(repo_id, filename, revision=None, **kw):
        calls.append((repo_id, filename, revision))
        if repo_id == "org/missing":
            raise OSError("404 not found")
        p = tmp_path / "w.pth"
        p.write_bytes(b"x")
        return str(p)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    assert resolve_weights_file("hf:org/name@abc123/sub/pt_inception.pth") == tmp_path / "w.pth"
    assert resolve_weights_file("hf:org/name/w.pth").is_file()
    assert calls == [("org/name", "sub/pt_inception.pth", "abc123"), ("org/name", "w.pth", None)]
    with pytest.raises(DownloadError, match="download failed"):
        resolve_weights_file("hf:org/missing/w.pth")
    with pytest.raises(UsageError, match="expected hf:ORG/NAME"):
        resolve_weights_file("hf:org/name")
