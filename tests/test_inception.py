"""FID Inception-v3: weight layout and feature parity with pytorch-fid; the TF1 resize rule."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from gpmcli.metrics.resize import resize_tf1
from gpmcli.nets.inception import InceptionV3FID

REF_SCRIPT = Path(__file__).parent / "ref" / "pytorch_fid_features.py"


@pytest.fixture(scope="module")
def fid_sd():
    return _random_fid_state_dict(3)


def _random_fid_state_dict(seed=0):
    """Random weights in the layout of pt_inception-2015-12-05-6726825d.pth (with the 1008-way fc head)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in InceptionV3FID().state_dict().items():
        if k.endswith("conv.weight"):
            fan_in = v[0].numel()
            sd[k] = torch.randn(v.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif k.endswith("bn.weight"):
            sd[k] = torch.rand(v.shape, generator=g) * 0.6 + 0.7
        elif k.endswith("bn.bias") or k.endswith("running_mean"):
            sd[k] = torch.randn(v.shape, generator=g) * 0.1
        elif k.endswith("running_var"):
            sd[k] = torch.rand(v.shape, generator=g) * 0.6 + 0.7
        elif k.endswith("num_batches_tracked"):
            continue
        else:
            raise AssertionError(k)
    sd["fc.weight"] = torch.randn(1008, 2048, generator=g) * 0.01
    sd["fc.bias"] = torch.zeros(1008)
    return sd


def _tf1_resize_reference(img: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """TF1 resize_bilinear(align_corners=False, half_pixel_centers=False), per output pixel, written from the rule:
    scale = in / out and source position i * scale, both float32 as in TF's kernel; lower = floor, upper clamped."""
    h, w = img.shape
    out = np.zeros((oh, ow))
    sy, sx = np.float32(h) / np.float32(oh), np.float32(w) / np.float32(ow)
    for i in range(oh):
        fy = float(np.float32(i) * sy)
        y0 = int(np.floor(fy))
        y1 = min(y0 + 1, h - 1)
        dy = fy - y0
        for j in range(ow):
            fx = float(np.float32(j) * sx)
            x0 = int(np.floor(fx))
            x1 = min(x0 + 1, w - 1)
            dx = fx - x0
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * dx
            bot = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * dx
            out[i, j] = top + (bot - top) * dy
    return out


@pytest.mark.parametrize("hw,out", [((28, 28), (299, 299)), ((32, 20), (45, 61)), ((400, 331), (299, 299)),
                                     ((7, 9), (7, 9))])
def test_tf1_resize_matches_rule(hw, out):
    rng = np.random.default_rng(hw[0])
    img = rng.integers(0, 256, size=hw).astype(np.float64)
    want = _tf1_resize_reference(img, *out)
    got = resize_tf1(torch.from_numpy(img).float()[None, None], out)[0, 0].double().numpy()
    assert np.abs(got - want).max() < 2e-3  # float32 arithmetic on 0..255 values
    if hw == out:
        assert np.array_equal(got, img)
    # and it is not the half-pixel (torch) convention
    if hw[0] < out[0]:
        half = torch.nn.functional.interpolate(torch.from_numpy(img)[None, None], size=out, mode="bilinear",
                                               align_corners=False)[0, 0].numpy()
        assert np.abs(half - want).max() > 1.0


def test_weight_layout_and_fusion(fid_sd):
    net = InceptionV3FID()
    net.load_fid_state_dict(fid_sd)
    x = torch.randn(2, 3, 299, 299)
    with torch.no_grad():
        a = net.eval()(x)
        b = net.fuse()(x)
    assert a.shape == (2, 2048)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    bad = dict(fid_sd)
    bad.pop("Mixed_7c.branch_pool.conv.weight")
    with pytest.raises(ValueError, match="missing"):
        net.load_fid_state_dict(bad)
    bad = dict(fid_sd, **{"Mixed_9.conv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected"):
        net.load_fid_state_dict(bad)
    bad = dict(fid_sd, **{"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 1, 3, 3)})
    with pytest.raises(ValueError, match="shape"):
        net.load_fid_state_dict(bad)


def test_pipeline_scaling_conventions():
    from gpmcli.metrics.features import inception_preprocess, pipeline_id

    imgs = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    assert pipeline_id("inception", "tf1") != pipeline_id("inception", "torch-bilinear")
    x = inception_preprocess(imgs, "tf1")
    assert x.shape == (2, 3, 299, 299)
    # tf1: (v - 128) / 128 of the TF1-resized 0..255 image; pixel (0, 0) is exactly the source pixel
    assert float(x[0, 0, 0, 0]) == pytest.approx((float(imgs[0, 0, 0, 0]) - 128) / 128, abs=1e-6)
    want = (resize_tf1(imgs[:, :1].float(), (299, 299)) - 128) / 128
    assert torch.allclose(x[:, 2:3], want, atol=1e-6)
    y = inception_preprocess(imgs, "torch-bilinear")
    full = torch.full((1, 3, 40, 40), 255, dtype=torch.uint8)
    assert torch.allclose(inception_preprocess(full, "torch-bilinear"), torch.ones(1, 3, 299, 299))
    assert torch.allclose(inception_preprocess(full, "tf1"), torch.full((1, 3, 299, 299), 127 / 128))
    assert not torch.allclose(x, y, atol=1e-2)


@pytest.mark.skipif(not os.environ.get("GPM_REF_PYTHON"),
                    reason="GPM_REF_PYTHON not set: run scripts/make_ref_venv.sh and export "
                           "GPM_REF_PYTHON=.venv-ref/bin/python for the pytorch-fid parity test")
def test_parity_with_pytorch_fid(tmp_path, fid_sd):
    from gpmcli.metrics.features import InceptionPipeline

    wpath = tmp_path / "pt_inception-random.pth"
    torch.save(fid_sd, wpath)
    rng = np.random.default_rng(0)
    # RGB and grayscale, sizes below and above 299, and 299 itself
    sets = {"rgb32": rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8),
            "gray28": rng.integers(0, 256, (2, 1, 28, 28), dtype=np.uint8),
            "rgb320": rng.integers(0, 256, (1, 3, 320, 300), dtype=np.uint8),
            "rgb299": rng.integers(0, 256, (1, 3, 299, 299), dtype=np.uint8)}
    np.savez(tmp_path / "images.npz", **sets)
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([os.environ["GPM_REF_PYTHON"], str(REF_SCRIPT), str(wpath), str(tmp_path / "images.npz"),
                        str(tmp_path / "ref.npz")], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    ref = np.load(tmp_path / "ref.npz")
    # gpm loads the same file through its own safe loader; the default (batch-norm folded) network is compared
    pipe = InceptionPipeline(str(wpath), resize_mode="torch-bilinear", device="cpu")
    for name, imgs in sets.items():
        got = pipe(torch.from_numpy(imgs)).double().numpy()
        assert ref[name].shape == got.shape == (len(imgs), 2048)
        assert np.abs(ref[name]).max() > 0.05  # the random network is not degenerate
        assert np.abs(got - ref[name]).max() <= 1e-4, name
