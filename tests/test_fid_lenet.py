"""FD-LeNet on real MNIST: train vs test is near zero; corrupting the test set raises it monotonically."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gpmcli.metrics.frechet import feature_moments, frechet_distance

N = 3000


@pytest.fixture(scope="module")
def mnist_lenet(assets_dir):
    from gpmcli.metrics.features import LeNetPipeline
    from gpmcli.metrics.sources import read_idx_images

    train = read_idx_images(assets_dir / "mnist" / "train-images-idx3-ubyte.gz")
    test = read_idx_images(assets_dir / "mnist" / "t10k-images-idx3-ubyte.gz")
    pipe = LeNetPipeline(assets_dir / "csinva-mnist-lenet" / "lenet_epoch=12_test_acc=0.991.pth", device="cpu")
    return torch.from_numpy(train[:2 * N].copy()), torch.from_numpy(test[:N].copy()), pipe


@pytest.fixture(scope="module")
def assets_dir():
    from tests.conftest import ASSETS

    if not ASSETS.is_dir():
        pytest.skip(f"shared assets not found at {ASSETS}")
    return ASSETS


def _fd(pipe, a, b):
    fa, fb = pipe(a).double().numpy(), pipe(b).double().numpy()
    m1, s1 = feature_moments(fa)
    m2, s2 = feature_moments(fb)
    return frechet_distance(m1, s1, m2, s2, warn=False), float(np.trace(s1))


def test_lenet_classifies_mnist(mnist_lenet):
    from gpmcli.metrics.sources import read_idx_images  # noqa: F401  (labels read below)
    import gzip

    from tests.conftest import ASSETS

    _, test, pipe = mnist_lenet
    with gzip.open(ASSETS / "mnist" / "t10k-labels-idx1-ubyte.gz", "rb") as fh:
        labels = np.frombuffer(fh.read(), dtype=np.uint8, offset=8)[:N]
    with torch.no_grad():
        pred = pipe.net(pipe.preprocess(test)).argmax(1).numpy()
    assert (pred == labels).mean() > 0.98  # the converted input convention reproduces csinva's 99.1 %


def test_fd_lenet_near_zero_and_monotone(mnist_lenet):
    train, test, pipe = mnist_lenet
    fd_tt, tr = _fd(pipe, train[:N], test)
    fd_split, _ = _fd(pipe, train[:N], train[N:2 * N])  # same-distribution floor at this N
    assert fd_tt < 0.02 * tr  # near zero on the scale of the feature spread
    assert fd_split < fd_tt < 5 * fd_split  # train/test shift is of the order of the sampling floor

    g = torch.Generator().manual_seed(0)
    noise = torch.randn(test.shape, generator=g)
    fds = [fd_tt]
    for s in (0.05, 0.1, 0.2, 0.4):
        noisy = (test.float() + 255 * s * noise).round().clamp(0, 255).to(torch.uint8)
        fds.append(_fd(pipe, train[:N], noisy)[0])
    assert all(b > a for a, b in zip(fds, fds[1:])), fds

    fds = [fd_tt]
    for sigma in (0.6, 1.0, 1.5, 2.5):
        r = np.arange(-4, 5)
        k = np.exp(-r ** 2 / (2 * sigma ** 2))
        k = torch.tensor(k / k.sum(), dtype=torch.float32)
        x = test.float()
        x = F.conv2d(F.pad(x, (4, 4, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, 4, 4), mode="reflect"), k.view(1, 1, -1, 1))
        fds.append(_fd(pipe, train[:N], x.round().clamp(0, 255).to(torch.uint8))[0])
    assert all(b > a for a, b in zip(fds, fds[1:])), fds
